"""Cloud storages against real emulators (S3: moto, Azure Blob: Azurite, GCS: fake-gcs-server):
CRUD with encrypted credentials, status, content, preview, permissions, and tasks that read
their frames from a bucket on demand."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import CloudStorage
from tests.cloud_servers import StorageServer, put_object
from tests.conftest import Account
from tests.factories import new_task, wait
from tests.media_files import image_bytes, write_video, zip_members

SERVERS = ["s3_server", "azure_server", "gcs_server"]


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, settings: Settings) -> StorageServer:
    settings.media.remote_allowlist = "127.0.0.1/32"
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


def _body(server: StorageServer, **extra: str) -> dict[str, str]:
    return {
        "provider_type": server.provider,
        "resource": server.bucket,
        "display_name": "media bucket",
        **server.fields,
        **extra,
    }


async def _create(api: httpx.AsyncClient, server: StorageServer) -> dict[str, object]:
    r = await api.post("/api/cloudstorages", json=_body(server))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_crud_status_content_preview(
    client_for, alice: Account, bob: Account, server: StorageServer, db: Database
) -> None:
    api = client_for(alice)
    prefix = uuid.uuid4().hex[:8]
    put_object(server, f"{prefix}/a.jpg", image_bytes(300, 200))
    put_object(server, f"{prefix}/sub/b.png", image_bytes(fmt="PNG"))
    storage = await _create(api, server)
    secrets = [
        v for k, v in server.fields.items() if k not in ("credentials_type", "specific_attributes")
    ]
    text = str(storage)
    assert all(s not in text for s in secrets)
    with db.session() as session:
        stored = session.scalar(select(CloudStorage.credentials))
    assert stored and all(s not in stored for s in secrets)  # encrypted at rest
    sid = storage["id"]
    assert (await api.get(f"/api/cloudstorages/{sid}/status")).json() == "AVAILABLE"
    assert (await api.get(f"/api/cloudstorages/{sid}/actions")).json() == ["read"]
    r = await api.get(f"/api/cloudstorages/{sid}/content-v2?prefix={prefix}/")
    assert r.status_code == 200, r.text
    assert r.json()["content"] == [
        {"name": "sub", "type": "DIR", "mime_type": "DIR"},
        {"name": "a.jpg", "type": "REG", "mime_type": "image"},
    ]
    r = await api.get(f"/api/cloudstorages/{sid}/content-v2?prefix={prefix}/&page_size=1")
    assert r.json()["next"] == "1" and len(r.json()["content"]) == 1
    r = await api.get(f"/api/cloudstorages/{sid}/preview")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    r = await api.get("/api/cloudstorages")
    assert [s["id"] for s in r.json()["results"]] == [sid]
    r = await api.patch(f"/api/cloudstorages/{sid}", json={"display_name": "renamed"})
    assert r.status_code == 200 and r.json()["display_name"] == "renamed"
    other = client_for(bob)
    assert (await other.get(f"/api/cloudstorages/{sid}")).status_code == 403
    assert (await other.get("/api/cloudstorages")).json()["count"] == 0
    assert (await other.delete(f"/api/cloudstorages/{sid}")).status_code == 403
    assert (await api.delete(f"/api/cloudstorages/{sid}")).status_code == 204
    assert (await api.get(f"/api/cloudstorages/{sid}")).status_code == 404


async def test_task_from_cloud_storage(client_for, alice: Account, server: StorageServer) -> None:
    api = client_for(alice)
    prefix = uuid.uuid4().hex[:8]
    files = {f"{prefix}/img_{i}.jpg": image_bytes(64, 48, (i * 50, 0, 0)) for i in range(3)}
    files[f"{prefix}/notes.txt"] = b"skip me"
    for key, data in files.items():
        put_object(server, key, data)
    storage = await _create(api, server)
    task_id = await new_task(api)
    r = await api.post(
        f"/api/tasks/{task_id}/data/",
        json={
            "cloud_storage_id": storage["id"],
            "server_files": [f"{prefix}/"],
            "filename_pattern": "*.jpg",
            "image_quality": 70,
            "chunk_size": 2,
        },
    )
    assert r.status_code == 202, r.text
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "finished", rq
    task = (await api.get(f"/api/tasks/{task_id}")).json()
    assert task["size"] == 3 and task["data_cloud_storage_id"] == storage["id"]
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    assert meta["storage"] == "cloud_storage"
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=1&quality=original")
    assert r.content == files[f"{prefix}/img_1.jpg"]
    r = await api.get(f"/api/tasks/{task_id}/data/?type=chunk&number=0&quality=original")
    assert zip_members(r.content) == [files[f"{prefix}/img_{i}.jpg"] for i in range(2)]
    # after the storage is gone, the task's frames cannot be read (a clear 404)
    await api.delete(f"/api/cloudstorages/{storage['id']}")
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=2&quality=original")
    assert r.status_code == 404 and "cloud storage" in r.text


async def test_bad_cloud_storages(
    client_for, alice: Account, server: StorageServer, settings: Settings
) -> None:
    api = client_for(alice)
    r = await api.post("/api/cloudstorages", json=_body(server, resource="no-such-bucket"))
    assert r.status_code == 400 and "resource" in r.json(), r.text
    r = await api.post(
        "/api/cloudstorages",
        json={
            **_body(server),
            "credentials_type": "KEY_FILE_PATH"
            if server.provider != "GOOGLE_CLOUD_STORAGE"
            else "CONNECTION_STRING",
        },
    )
    assert r.status_code == 400
    settings.media.remote_allowlist = ""
    r = await api.post("/api/cloudstorages", json=_body(server))
    assert r.status_code == 400 and "loopback" in r.text  # custom endpoints pass the SSRF guard
    settings.media.remote_allowlist = "127.0.0.1/32"
    storage = await _create(api, server)
    task_id = await new_task(api)
    r = await api.post(
        f"/api/tasks/{task_id}/data/",
        json={"cloud_storage_id": storage["id"], "server_files": ["missing/x.jpg"]},
    )
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "failed" and "x.jpg" in str(rq["message"]), rq


async def test_wrong_azure_key(
    client_for, alice: Account, azure_server: StorageServer, settings: Settings
) -> None:
    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    wrong = azure_server.fields["connection_string"].replace("AccountKey=Eby8", "AccountKey=AAAA")
    r = await api.post("/api/cloudstorages", json=_body(azure_server, connection_string=wrong))
    assert r.status_code == 400 and "credentials" in r.text, r.text


async def test_video_from_s3_read_on_demand(
    client_for, alice: Account, s3_server: StorageServer, settings: Settings, tmp_path: Path
) -> None:
    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    key = f"{uuid.uuid4().hex[:8]}/clip.mkv"
    put_object(s3_server, key, write_video(tmp_path / "clip.mkv", 20, fmt="matroska").read_bytes())
    storage = await _create(api, s3_server)
    task_id = await new_task(api)
    r = await api.post(
        f"/api/tasks/{task_id}/data/",
        json={"cloud_storage_id": storage["id"], "server_files": [key]},
    )
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "finished", rq
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=15&quality=compressed")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
