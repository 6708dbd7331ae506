"""``cvat-ray backup create|restore``: an instance filled through the API, backed up while it
serves, restored into an empty data dir and database (SQLite and PostgreSQL, and across
them), answers every API read the same; a non-empty target is refused unless --force."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cvat_ray.cli import main
from cvat_ray.cluster.settings import Settings, reset_settings_cache
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.migrate import current_revision, head_revision, upgrade
from tests.cloud_servers import StorageServer, put_object
from tests.conftest import Account, drop_pg_database, make_account, new_pg_database
from tests.factories import LABELS, images, upload, wait
from tests.media_files import image_bytes


class Instance:
    """A data dir and a database, with the API app over them."""

    def __init__(self, data_dir: Path, url: str | None) -> None:
        self.settings = Settings(data_dir=data_dir)
        if url is not None:
            self.settings.database.url = url
        self.settings.media.remote_allowlist = "127.0.0.1/32"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.url = self.settings.database_url
        self.db = Database(self.url, pool_size=2)

    def client(self, account: Account) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=build_app(self.settings, self.db)),
            base_url="http://testserver",
            headers={"Authorization": f"Token {account.token}"},
        )


@pytest.fixture
def urls(request: pytest.FixtureRequest, pg_server_url: str) -> Iterator[dict[str, str | None]]:
    """Source and target database URLs for a parametrized pair of kinds."""
    made: list[str] = []

    def url(kind: str) -> str | None:
        if kind == "sqlite":
            return None
        made.append(new_pg_database(pg_server_url))
        return made[-1]

    source, target = request.param
    yield {"source": url(source), "target": url(target)}
    for u in made:
        drop_pg_database(u)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the CLI writes its flags into the environment (for Ray workers): undone after the test
    monkeypatch.setenv("CVAT_RAY_DATA_DIR", "unset")
    monkeypatch.delenv("CVAT_RAY_DATABASE__URL", raising=False)
    yield
    reset_settings_cache()


async def _fill(instance: Instance, s3: StorageServer) -> tuple[Account, Account]:
    upgrade(instance.db.engine)
    admin = make_account(instance.db, "root", ("admin",))
    alice = make_account(instance.db, "alice", ("user",))
    async with instance.client(alice) as api:
        r = await api.post("/api/organizations", json={"slug": "lab", "name": "Lab"})
        assert r.status_code == 201, r.text
        r = await api.post("/api/projects", json={"name": "proj", "labels": LABELS})
        project_id = r.json()["id"]
        for i in range(2):
            r = await api.post("/api/tasks", json={"name": f"t{i}", "project_id": project_id})
            task_id = r.json()["id"]
            r = await upload(api, task_id, images(4 + i))
            assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
        labels = (await api.get(f"/api/labels?project_id={project_id}&org=")).json()["results"]
        cat = next(lbl for lbl in labels if lbl["name"] == "cat")
        r = await api.put(
            f"/api/tasks/{task_id}/annotations",
            json={"shapes": [{"type": "rectangle", "frame": 1, "label_id": cat["id"],
                              "points": [1, 2, 3, 4]}],
                  "tags": [{"frame": 0, "label_id": cat["id"]}]},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        key = "instance/a.jpg"
        put_object(s3, key, image_bytes(20, 20))
        r = await api.post(
            "/api/cloudstorages",
            json={"provider_type": s3.provider, "resource": s3.bucket, "display_name": "b",
                  **s3.fields},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        r = await api.post("/api/tasks", json={"name": "lonely", "labels": [{"name": "x"}]})
        assert r.status_code == 201, r.text
    return admin, alice


async def dump(instance: Instance, accounts: list[Account]) -> dict[str, Any]:
    """Every read the API answers about projects, tasks, jobs, annotations, users,
    organizations and cloud storages, as each account sees them."""
    out: dict[str, Any] = {}
    for account in accounts:
        async with instance.client(account) as api:

            async def get(path: str) -> Any:
                r = await api.get(path)
                assert r.status_code == 200, (path, r.text)
                if r.headers.get("content-type", "").startswith("application/json"):
                    return r.json()
                return r.content

            seen: dict[str, Any] = {}
            for path in (
                "/api/users?page_size=100", "/api/users/self", "/api/organizations",
                "/api/memberships?page_size=100", "/api/projects?page_size=100",
                "/api/tasks?page_size=100", "/api/jobs?page_size=100",
                "/api/labels?page_size=100", "/api/cloudstorages?page_size=100",
            ):  # fmt: skip
                seen[path] = await get(path)
            for task in seen["/api/tasks?page_size=100"]["results"]:
                tid = task["id"]
                seen[f"task {tid}"] = await get(f"/api/tasks/{tid}")
                seen[f"annotations {tid}"] = await get(f"/api/tasks/{tid}/annotations")
                if task["size"]:
                    seen[f"meta {tid}"] = await get(f"/api/tasks/{tid}/data/meta")
                    for n in range(task["size"]):
                        seen[f"frame {tid} {n}"] = await get(
                            f"/api/tasks/{tid}/data?type=frame&number={n}&quality=original"
                        )
            for job in seen["/api/jobs?page_size=100"]["results"]:
                seen[f"job {job['id']}"] = await get(f"/api/jobs/{job['id']}/annotations")
            for storage in seen["/api/cloudstorages?page_size=100"]["results"]:
                # needs the cloud credential key: it came with the archive
                seen[f"storage {storage['id']}"] = await get(
                    f"/api/cloudstorages/{storage['id']}/status"
                )
            out[account.username] = seen
    return out


@pytest.mark.parametrize(
    "urls",
    [("sqlite", "sqlite"), ("postgresql", "postgresql"), ("sqlite", "postgresql")],
    indirect=True,
    ids=["sqlite", "postgresql", "sqlite-to-postgresql"],
)
async def test_backup_and_restore_give_the_same_api(
    urls: dict[str, str | None],
    tmp_path: Path,
    s3_server: StorageServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = Instance(tmp_path / "source", urls["source"])
    admin, alice = await _fill(source, s3_server)
    before = await dump(source, [admin, alice])
    assert before["alice"]["storage 1"] == "AVAILABLE"

    archive = tmp_path / "instance.tar"
    if urls["source"]:
        monkeypatch.setenv("CVAT_RAY_DATABASE__URL", urls["source"])
    assert (
        main(["backup", "create", str(archive), "--data-dir", str(source.settings.data_dir)]) == 0
    )
    assert "schema revision " + head_revision() in capsys.readouterr().out
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["revision"] == head_revision() and manifest["tables"]["tasks"] == 3
    assert "files/secrets/cloud.key" in names
    assert any(n.startswith("files/media/data/") for n in names)
    assert "files/cvat.db" not in names

    target_dir = tmp_path / "target"
    if urls["target"]:
        monkeypatch.setenv("CVAT_RAY_DATABASE__URL", urls["target"])
    else:
        monkeypatch.delenv("CVAT_RAY_DATABASE__URL", raising=False)
    assert main(["backup", "restore", str(archive), "--data-dir", str(target_dir)]) == 0
    target = Instance(target_dir, urls["target"])
    assert current_revision(target.db.engine) == head_revision()
    after = await dump(target, [admin, alice])
    assert after.keys() == before.keys()
    for who in before:
        for key in before[who]:
            assert after[who][key] == before[who][key], (who, key)
    # new objects get new ids after the restored ones (sequences moved on)
    async with target.client(alice) as api:
        r = await api.post("/api/tasks", json={"name": "new", "labels": [{"name": "y"}]})
        assert r.status_code == 201, r.text
        assert r.json()["id"] == 4

    # a second restore onto it is refused, unless forced
    assert main(["backup", "restore", str(archive), "--data-dir", str(target_dir)]) == 1
    assert "not empty" in capsys.readouterr().err
    args = ["backup", "restore", str(archive), "--data-dir", str(target_dir), "--force"]
    assert main(args) == 0
    forced = Instance(target_dir, urls["target"])
    assert (await dump(forced, [alice]))["alice"] == before["alice"]
    for inst in (source, target, forced):
        inst.db.dispose()


async def test_an_older_archive_is_migrated_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive taken at revision 0001 restores into this version's schema."""
    old = Instance(tmp_path / "old", None)
    upgrade(old.db.engine, "0001")
    with old.db.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO users (id, username, email, password_hash, first_name, last_name, "
            "is_active, is_staff, is_superuser, auth_source, date_joined) VALUES "
            "(7, 'olduser', 'o@example.com', NULL, 'Old', 'User', 1, 0, 0, 'local', "
            "'2024-01-02 03:04:05.000000')"
        )
    archive = tmp_path / "old.tar"
    assert main(["backup", "create", str(archive), "--data-dir", str(old.settings.data_dir)]) == 0
    with tarfile.open(archive) as tar:
        assert json.load(tar.extractfile("manifest.json"))["revision"] == "0001"  # type: ignore[arg-type]
    new_dir = tmp_path / "new"
    assert main(["backup", "restore", str(archive), "--data-dir", str(new_dir)]) == 0
    new = Instance(new_dir, None)
    assert current_revision(new.db.engine) == head_revision()
    admin = make_account(new.db, "root", ("admin",))
    async with new.client(admin) as api:
        users = (await api.get("/api/users?username=olduser")).json()["results"]
    assert [(u["username"], u["first_name"], u["date_joined"][:19]) for u in users] == [
        ("olduser", "Old", "2024-01-02T03:04:05")
    ]
    old.db.dispose()
    new.db.dispose()
