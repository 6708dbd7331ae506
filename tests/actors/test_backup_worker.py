"""The Ray path of backups: ``export:backup`` and ``import:backup`` run on the named
``backup-worker`` actor; a worker that dies mid-restore leaves a failed request with the
family's reason and nothing restored."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text

from cvat_ray.actors.registry import BACKUPS
from cvat_ray.actors.runners import RayLauncher
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import BackgroundRequest, Task
from tests.conftest import Account
from tests.factories import images, new_task, upload, wait

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def launcher(ray_cluster: None, settings: Settings, db: Database) -> Iterator[RayLauncher]:
    settings.media.worker_num_cpus = 0.25
    settings.backups.worker_num_cpus = 0.25
    env = {"CVAT_RAY_DATA_DIR": str(settings.data_dir), "CVAT_RAY_DATABASE__URL": db.url}
    launcher = RayLauncher(
        settings, db, prefix=f"test-{uuid.uuid4().hex[:8]}-", runtime_env={"env_vars": env}
    )
    yield launcher
    launcher.kill()
    launcher.close()


@pytest.fixture
async def api(settings: Settings, db: Database, launcher: RayLauncher, alice: Account):  # type: ignore[no-untyped-def]
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_app(settings, db, launcher)),
        base_url="http://testserver",
        headers={"Authorization": f"Token {alice.token}"},
    ) as client:
        yield client


def _row(db: Database, request_id: str) -> BackgroundRequest:
    with db.session() as session:
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        session.expunge(row)
        return row


async def _backup(api: Any) -> bytes:
    task_id = await new_task(api)
    r = await upload(api, task_id, images(3))
    assert (await wait(api, r.json()["rq_id"], timeout=180))["status"] == "finished"
    r = await api.post(f"/api/tasks/{task_id}/backup/export")
    done = await wait(api, r.json()["rq_id"], timeout=180)
    assert done["status"] == "finished", done
    return bytes((await api.get(str(done["result_url"]))).content)


async def test_backups_run_on_the_backup_worker(
    api: Any, launcher: RayLauncher, db: Database
) -> None:
    backup = await _backup(api)
    r = await api.post(
        "/api/tasks/backup/", files={"task_file": ("b.zip", backup, "application/zip")}
    )
    rq_id = r.json()["rq_id"]
    done = await wait(api, rq_id, timeout=180)
    assert done["status"] == "finished", done
    assert _row(db, rq_id).worker == BACKUPS.actor_name(0, launcher.prefix)
    r = await api.get(f"/api/tasks/{done['result_id']}/data/?type=frame&number=2&quality=original")
    assert r.content == images(3)["img_02.jpg"]


async def test_worker_killed_mid_restore(api: Any, launcher: RayLauncher, db: Database) -> None:
    """Mid-restore for sure: the test locks the tasks table, so the restore waits in its
    transaction (PostgreSQL; SQLite has no such locks)."""
    import ray

    if db.dialect != "postgresql":
        pytest.skip("needs table locks")
    backup = await _backup(api)
    with db.session() as session:
        tasks_before = session.scalar(select(func.count()).select_from(Task))
    with db.engine.connect() as conn:
        lock = conn.begin()
        conn.execute(text("LOCK TABLE tasks IN EXCLUSIVE MODE"))  # reads pass, writes wait
        try:
            r = await api.post(
                "/api/tasks/backup/", files={"task_file": ("b.zip", backup, "application/zip")}
            )
            rq_id = r.json()["rq_id"]
            deadline = time.monotonic() + 120
            while _row(db, rq_id).message != "Restoring":
                assert time.monotonic() < deadline, _row(db, rq_id).message
                await asyncio.sleep(0.1)
            ray.kill(launcher.handle(BACKUPS.actor_name(0, launcher.prefix)), no_restart=False)
            deadline = time.monotonic() + 120
            while _row(db, rq_id).status not in ("finished", "failed"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
        finally:
            lock.rollback()
    row = _row(db, rq_id)
    assert row.status == "failed" and row.message == BACKUPS.lost_reason
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Task)) == tasks_before
