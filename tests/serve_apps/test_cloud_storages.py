"""Cloud storages against real emulators (S3: moto, Azure Blob: Azurite, GCS: fake-gcs-server):
CRUD with encrypted credentials, status, content, preview, permissions, and tasks that read
their frames from a bucket on demand."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.media import cloud, cloud_listing
from cvat_ray.storage.media.cloud import CloudAccess
from cvat_ray.storage.models import CloudStorage
from tests.cloud_servers import StorageServer, put_object
from tests.conftest import Account
from tests.factories import new_task, service_account_key, wait
from tests.http_servers import Server, allowed, internal
from tests.media_files import image_bytes, write_video, zip_members

SERVERS = ["s3_server", "azure_server", "gcs_server"]
__all__ = ["allowed", "internal"]  # fixtures


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
    # one provider page at a time: ``next`` is the provider's continuation token
    pages: list[list[str]] = []
    token = None
    while len(pages) < 5:
        params = {
            "prefix": f"{prefix}/",
            "page_size": 1,
            **({"next_token": token} if token else {}),
        }
        r = await api.get(f"/api/cloudstorages/{sid}/content-v2", params=params)
        assert r.status_code == 200, r.text
        pages.append([e["name"] for e in r.json()["content"]])
        token = r.json()["next"]
        if not token:
            break
    assert {n for page in pages for n in page} == {"sub", "a.jpg"}, pages
    if server.provider != "GOOGLE_CLOUD_STORAGE":  # fake-gcs-server pages objects only
        assert pages == [["sub"], ["a.jpg"]] or pages == [["a.jpg"], ["sub"]], pages
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


# --- security: paths from bucket keys, outbound connections, provider errors, threads --------


async def test_bucket_keys_cannot_escape_the_task_folder(
    client_for, alice: Account, s3_server: StorageServer, settings: Settings, tmp_path: Path
) -> None:
    """A key like ``a/../../x`` names an object, not a place on the server's disk: the
    request fails with a clear message and nothing is written anywhere."""
    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    prefix = uuid.uuid4().hex[:8]
    put_object(s3_server, f"{prefix}/ok.jpg", image_bytes())
    put_object(s3_server, f"{prefix}/a/../../../../escape.jpg", image_bytes())
    storage = await _create(api, s3_server)
    for copy_data in (True, False):
        task_id = await new_task(api)
        r = await api.post(
            f"/api/tasks/{task_id}/data/",
            json={
                "cloud_storage_id": storage["id"],
                "server_files": [f"{prefix}/"],
                "copy_data": copy_data,
            },
        )
        assert r.status_code == 202, r.text
        rq = await wait(api, r.json()["rq_id"])
        assert rq["status"] == "failed", rq
        assert "key cannot be a file name" in str(rq["message"]) and "'..'" in str(rq["message"])
        task = (await api.get(f"/api/tasks/{task_id}")).json()
        assert task["size"] == 0 and task["data"] is None
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".jpg")]
    # naming the key directly is refused before any background work
    task_id = await new_task(api)
    r = await api.post(
        f"/api/tasks/{task_id}/data/",
        json={
            "cloud_storage_id": storage["id"],
            "server_files": [f"{prefix}/a/../../../../escape.jpg"],
        },
    )
    assert r.status_code == 400 and "server_files" in r.json(), r.text


async def test_azure_connection_string_keys_are_read_as_azure_reads_them(
    client_for, alice: Account, azure_server: StorageServer, settings: Settings
) -> None:
    """Azure reads connection string keys case-insensitively, and builds the endpoint from
    AccountName and EndpointSuffix when there is no BlobEndpoint: every form is checked."""
    api = client_for(alice)
    conn = azure_server.fields["connection_string"]
    forms = [
        conn.replace("BlobEndpoint=", "blobendpoint="),
        conn.replace("BlobEndpoint=", "BLOBENDPOINT="),
        "UseDevelopmentStorage=true",
    ]
    for form in forms:
        r = await api.post("/api/cloudstorages", json=_body(azure_server, connection_string=form))
        assert r.status_code == 400, (form, r.text)
        assert "connection_string" in r.json() and "private, loopback" in r.text, r.text
    assert (await api.get("/api/cloudstorages")).json()["count"] == 0
    settings.media.remote_allowlist = "127.0.0.1/32"
    r = await api.post("/api/cloudstorages", json=_body(azure_server, connection_string=forms[0]))
    assert r.status_code == 201, r.text


async def test_gcs_redirects_are_checked(
    client_for, alice: Account, settings: Settings, allowed: Server, internal: Server
) -> None:
    """An allowed endpoint that redirects to an internal address gets nowhere (gcsfs follows
    redirects itself; each hop is a new, checked connection)."""
    settings.media.remote_allowlist = "127.0.0.1/32"
    allowed.redirect_all = f"{internal.url}/computeMetadata/v1/"
    api = client_for(alice)
    r = await api.post(
        "/api/cloudstorages",
        json={
            "provider_type": "GOOGLE_CLOUD_STORAGE",
            "resource": "media",
            "display_name": "redirecting",
            "credentials_type": "ANONYMOUS_ACCESS",
            "specific_attributes": f"endpoint_url={allowed.url}&project_id=test",
        },
    )
    assert r.status_code == 400 and "127.0.0.2 is a private" in r.text, r.text
    assert allowed.hits and internal.hits == []


async def test_gcs_key_token_uri_is_checked(
    client_for,
    alice: Account,
    gcs_server: StorageServer,
    settings: Settings,
    allowed: Server,
    internal: Server,
) -> None:
    """A service account key names the URL its tokens are asked from: checked like an
    endpoint, and other key types (which make google-auth call URLs of their own) refused."""
    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    body = {
        **_body(gcs_server),
        "credentials_type": "KEY_FILE_PATH",
        "key_file": service_account_key(f"{internal.url}/token"),
    }
    r = await api.post("/api/cloudstorages", json=body)
    assert r.status_code == 400 and "key_file" in r.json(), r.text
    assert "127.0.0.2 is a private" in r.text
    # allowed at create time but redirecting: google-auth's token request is not followed
    body["key_file"] = service_account_key(f"{allowed.url}/redirect?to={internal.url}/token")
    r = await api.post("/api/cloudstorages", json=body)
    assert r.status_code == 400, r.text
    assert internal.hits == []
    external = {"type": "external_account", "credential_source": {"url": f"{internal.url}/"}}
    r = await api.post("/api/cloudstorages", json={**body, "key_file": json.dumps(external)})
    assert r.status_code == 400 and "service_account" in r.text, r.text
    assert internal.hits == []


MARKER = "internal-host-10-9-8-7.corp"


def _insert_storage(db: Database, owner: Account, endpoint: str, prefix: str = "") -> int:
    with db.session() as session:
        storage = CloudStorage(
            provider_type="AWS_S3_BUCKET",
            resource="media",
            display_name="erring",
            credentials_type="ANONYMOUS_ACCESS",
            credentials="",
            specific_attributes=f"endpoint_url={endpoint}&region=us-east-1"
            + (f"&prefix={prefix}" if prefix else ""),
            owner_id=owner.id,
            manifests=[],
        )
        session.add(storage)
        session.flush()
        return storage.id


async def test_provider_error_text_is_not_echoed(
    client_for, alice: Account, db: Database, settings: Settings, allowed: Server
) -> None:
    """What a provider says in an error stays in the server's log; clients get a fixed
    message."""
    settings.media.remote_allowlist = "127.0.0.1/32"
    allowed.answer = (
        403,
        "application/xml",
        (
            "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
            f"<Message>denied by {MARKER}</Message><RequestId>1</RequestId></Error>"
        ).encode(),
    )
    sid = _insert_storage(db, alice, allowed.url)
    api = client_for(alice)
    r = await api.get(f"/api/cloudstorages/{sid}/content-v2")
    assert r.status_code == 503 and "cannot be reached or refused" in r.text, r.text
    assert MARKER not in r.text
    assert (await api.get(f"/api/cloudstorages/{sid}/status")).json() == "FORBIDDEN"
    r = await api.get(f"/api/cloudstorages/{sid}/preview")
    assert r.status_code == 503 and MARKER not in r.text, r.text
    task_id = await new_task(api)
    r = await api.post(
        f"/api/tasks/{task_id}/data/", json={"cloud_storage_id": sid, "server_files": ["a.jpg"]}
    )
    rq = await wait(api, r.json()["rq_id"])
    assert rq["status"] == "failed" and MARKER not in str(rq["message"]), rq


async def test_filesystem_clients_are_replaced_not_added(
    client_for, alice: Account, s3_server: StorageServer, settings: Settings
) -> None:
    """Each PATCH changes the storage's version; its cached client is replaced."""
    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    storage = await _create(api, s3_server)
    cloud._fs_cache.clear()
    for i in range(5):
        r = await api.patch(f"/api/cloudstorages/{storage['id']}", json={"display_name": f"v{i}"})
        assert r.status_code == 200, r.text
        assert (await api.get(f"/api/cloudstorages/{storage['id']}/status")).json() == "AVAILABLE"
    assert len(cloud._fs_cache) == 1


async def test_provider_calls_stay_off_the_database_threads(
    client_for,
    alice: Account,
    s3_server: StorageServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Create, change, status, actions, content and preview reach the bucket from another
    thread pool than the API's database threads (``cvat-db-*``)."""
    from cvat_ray.storage.services import cloud_storages as service

    settings.media.remote_allowlist = "127.0.0.1/32"
    threads: list[str] = []

    def spy(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread().name)
            return fn(*args, **kwargs)

        return wrapper

    for module in (service, cloud, cloud_listing):
        for name in ("status", "read", "list_page", "iter_keys", "listing", "walk_files"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, spy(getattr(module, name)))
    api = client_for(alice)
    prefix = uuid.uuid4().hex[:8]
    put_object(s3_server, f"{prefix}/a.jpg", image_bytes())
    storage = await _create(api, s3_server)
    sid = storage["id"]
    r = await api.patch(
        f"/api/cloudstorages/{sid}",
        json={"specific_attributes": f"{server_attributes(s3_server)}&prefix={prefix}"},
    )
    assert r.status_code == 200, r.text
    assert (await api.get(f"/api/cloudstorages/{sid}/status")).json() == "AVAILABLE"
    assert (await api.get(f"/api/cloudstorages/{sid}/actions")).json() == ["read"]
    assert (await api.get(f"/api/cloudstorages/{sid}/content-v2")).status_code == 200
    assert (await api.get(f"/api/cloudstorages/{sid}/preview")).status_code == 200
    assert len(threads) >= 6, threads
    assert not [t for t in threads if t.startswith("cvat-db")], threads


def server_attributes(server: StorageServer) -> str:
    return server.fields.get("specific_attributes", "")


async def test_preview_looks_at_a_bounded_number_of_objects(
    client_for,
    alice: Account,
    s3_server: StorageServer,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cvat_ray.storage.services import cloud_storages as service

    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    prefix = uuid.uuid4().hex[:8]
    for i in range(4):
        put_object(s3_server, f"{prefix}/a{i}.txt", b"not an image")
    put_object(s3_server, f"{prefix}/b.jpg", image_bytes())
    storage = await _create(api, s3_server)
    r = await api.patch(
        f"/api/cloudstorages/{storage['id']}",
        json={"specific_attributes": f"{server_attributes(s3_server)}&prefix={prefix}"},
    )
    assert r.status_code == 200, r.text
    assert (await api.get(f"/api/cloudstorages/{storage['id']}/preview")).status_code == 200
    monkeypatch.setattr(service, "PREVIEW_SCAN", 3, raising=False)
    r = await api.get(f"/api/cloudstorages/{storage['id']}/preview")
    assert r.status_code == 404 and "no images" in r.text, r.text


async def test_preview_skips_broken_images(
    client_for, alice: Account, s3_server: StorageServer, settings: Settings
) -> None:
    """A broken image in the bucket is a 404 for the preview (or is skipped), never a 500."""
    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    prefix = uuid.uuid4().hex[:8]
    put_object(s3_server, f"{prefix}/a.jpg", b"not really a jpeg")
    storage = await _create(api, s3_server)
    url = f"/api/cloudstorages/{storage['id']}"
    attributes = f"{server_attributes(s3_server)}&prefix={prefix}"
    assert (await api.patch(url, json={"specific_attributes": attributes})).status_code == 200
    r = await api.get(f"{url}/preview")
    assert r.status_code == 404 and "no images" in r.text, r.text
    put_object(s3_server, f"{prefix}/b.jpg", image_bytes())
    assert (await api.get(f"{url}/preview")).status_code == 200


# (the GCS emulator's storages are anonymous: no credentials to keep)
@pytest.mark.parametrize("server", ["s3_server", "azure_server"], indirect=True)
async def test_credentials_never_travel_pickled(
    client_for,
    alice: Account,
    server: StorageServer,
    settings: Settings,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cloud access crosses to Ray's processes (a whole-task run's frame plan) sealed: the
    pickled bytes hold no credential, and the receiving process reads them from the database
    with its own settings, then reaches the bucket."""
    import pickle

    from ray import cloudpickle  # what Ray serializes task arguments with

    from cvat_ray.actors import stages  # registers the pipeline processes' loader
    from cvat_ray.cluster.settings import reset_settings_cache
    from cvat_ray.storage.media.sources import MediaSource
    from cvat_ray.storage.services.cloud_storages import access_for

    assert cloud.secret_loader is not None and stages is not None
    prefix = uuid.uuid4().hex[:8]
    put_object(server, f"{prefix}/a.jpg", image_bytes(30, 20))
    sid = int((await _create(client_for(alice), server))["id"])  # type: ignore[call-overload]
    with db.session() as session:
        row = session.get(CloudStorage, sid)
        assert row is not None
        access = access_for(row, settings)
    secrets = [v for v in access.secrets.values() if v]
    assert secrets
    for dump in (pickle.dumps, cloudpickle.dumps):
        data = dump(MediaSource(storage="cloud_storage", access=access))
        assert not any(s.encode() in data for s in secrets)
    moved: MediaSource = pickle.loads(
        pickle.dumps(MediaSource(storage="cloud_storage", access=access))
    )
    assert moved.access is not None and moved.access.sealed and moved.access.secrets == {}
    # the receiving process's own settings: its environment
    monkeypatch.setenv("CVAT_RAY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv(
        "CVAT_RAY_DATABASE__URL", db.engine.url.render_as_string(hide_password=False)
    )
    reset_settings_cache()
    try:
        assert moved.access.credentials() == access.secrets
        cloud.forget(sid)  # no client cached by the API side: build one from the sealed access
        assert moved.read(f"{prefix}/a.jpg") == image_bytes(30, 20)
    finally:
        reset_settings_cache()
    unnamed = CloudAccess("AWS_S3_BUCKET", "b", "KEY_SECRET_KEY_PAIR", secrets={"key": "k"})
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(unnamed)
