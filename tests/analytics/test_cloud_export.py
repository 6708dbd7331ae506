"""The events export written to a cloud storage (``location=cloud_storage``), as CVAT's: S3 on
moto, through the dataset exports' write path and permission check. On SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from cvat_ray.actors.analytics import EventsSink, chdb_path
from cvat_ray.analytics.store import forget_store
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.services.events import export_file
from tests.analytics.test_events_api import _csv, _post_client_events
from tests.cloud_servers import StorageServer
from tests.conftest import Account
from tests.factories import wait


@pytest.fixture(autouse=True)
def _one_store(engine: str, settings: Settings) -> Any:
    if engine != "chdb":
        pytest.skip("the export reads both stores alike (test_events_api covers both)")
    settings.media.remote_allowlist = "127.0.0.1/32"
    yield
    forget_store(settings.analytics, chdb_path(settings))


def _get(server: StorageServer, key: str) -> bytes:
    s3 = boto3.client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    return s3.get_object(Bucket=server.bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]


async def _storage(api: Any, server: StorageServer, bucket: str | None = None) -> int:
    body = {
        "provider_type": server.provider,
        "resource": bucket or server.bucket,
        "display_name": "events",
        **server.fields,
    }
    r = await api.post("/api/cloudstorages", json=body)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def test_export_to_s3(
    client_for: Any,
    alice: Account,
    bob: Account,
    db: Database,
    settings: Settings,
    s3_server: StorageServer,
) -> None:
    api = client_for(alice)
    await _post_client_events(api, 3)
    await _post_client_events(client_for(bob), 2)
    EventsSink(db, settings).drain()
    storage_id = await _storage(api, s3_server)

    r = await api.post(
        "/api/events/export",
        params={"location": "cloud_storage", "cloud_storage_id": storage_id,
                "filename": "exports/events.csv"},
    )  # fmt: skip
    assert r.status_code == 202, r.text
    rq_id = r.json()["rq_id"]
    done = await wait(api, rq_id)
    assert done["status"] == "finished", done
    assert done["result_url"] is None  # the file is in the bucket, not here
    rows = _csv(_get(s3_server, "exports/events.csv").decode())
    drawn = [row["user_name"] for row in rows if row["scope"] == "draw:object"]
    assert drawn == ["alice"] * 3  # alice's own events only, as for a local export
    assert not export_file(settings, rq_id).exists()
    assert not export_file(settings, rq_id).with_name(f"{rq_id}.csv.part").exists()
    r = await api.get(f"/api/events/download?rq_id={rq_id}")
    assert r.status_code == 400 and "cloud storage" in r.text

    # the name defaults to CVAT's logs_<time>.csv
    r = await api.post(
        "/api/events/export", params={"location": "cloud_storage", "cloud_storage_id": storage_id}
    )
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    s3 = boto3.client(
        "s3", endpoint_url=s3_server.endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_server.bucket)["Contents"]]
    assert any(k.startswith("logs_") and k.endswith(".csv") for k in keys), keys


async def test_cloud_export_refusals(
    client_for: Any, alice: Account, bob: Account, db: Database, s3_server: StorageServer
) -> None:
    api = client_for(alice)
    storage_id = await _storage(api, s3_server)
    cloud = {"location": "cloud_storage", "cloud_storage_id": storage_id}
    # another user's storage: the same check as dataset exports (view on the storage)
    r = await client_for(bob).post("/api/events/export", params=cloud)
    assert r.status_code == 403, r.text
    r = await api.post("/api/events/export", params={"location": "cloud_storage"})
    assert r.status_code == 400 and "cloud_storage_id" in r.text
    r = await api.post("/api/events/export", params={**cloud, "cloud_storage_id": 999_999})
    assert r.status_code == 400 and "does not exist" in r.text
    for name in ("../up.csv", "a//b.csv", ".hidden.csv", "a\\b.csv", "exports/../x.csv"):
        r = await api.post("/api/events/export", params={**cloud, "filename": name})
        assert r.status_code == 400, name
    # a local export's name names no folder
    r = await api.post("/api/events/export", params={"filename": "exports/events.csv"})
    assert r.status_code == 400
    # the deprecated flow has no cloud storage (as CVAT's)
    r = await api.get("/api/events", params={**cloud, "query_id": "9c7b4f0e-9a55-4b4e-9d0e-1"})
    assert r.status_code == 400
    r = await api.get(
        "/api/events",
        params={**cloud, "query_id": "9c7b4f0e-9a55-4b4e-9d0e-6f3a2b1c0d9e"},
    )
    assert r.status_code == 400 and "cloud storage" in r.text


async def test_a_failed_cloud_write_fails_the_request(
    client_for: Any, alice: Account, db: Database, settings: Settings, s3_server: StorageServer
) -> None:
    api = client_for(alice)
    await _post_client_events(api, 2)
    EventsSink(db, settings).drain()
    storage_id = await _storage(api, s3_server)
    # the bucket goes away after the storage was attached
    s3 = boto3.client(
        "s3", endpoint_url=s3_server.endpoint, aws_access_key_id="testing",
        aws_secret_access_key="testing", region_name="us-east-1",
    )  # fmt: skip
    s3.create_bucket(Bucket="gone")
    gone_id = await _storage(api, s3_server, bucket="gone")
    s3.delete_bucket(Bucket="gone")
    r = await api.post(
        "/api/events/export",
        params={"location": "cloud_storage", "cloud_storage_id": gone_id, "filename": "e.csv"},
    )
    assert r.status_code == 202, r.text
    rq_id = r.json()["rq_id"]
    done = await wait(api, rq_id)
    assert done["status"] == "failed" and "Events export failed" in str(done["message"]), done
    assert not export_file(settings, rq_id).with_name(f"{rq_id}.csv.part").exists()
    assert not export_file(settings, rq_id).exists()
    # the working storage still takes exports
    r = await api.post(
        "/api/events/export",
        params={"location": "cloud_storage", "cloud_storage_id": storage_id, "filename": "e.csv"},
    )
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    rows = _csv(_get(s3_server, "e.csv").decode())
    assert [row["scope"] for row in rows].count("draw:object") == 2
