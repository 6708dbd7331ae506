"""The Ray path: media worker actors process uploads; a worker that dies leaves no request
hanging (its restart, or the launcher, fails it); lost hand-overs are swept up."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from cvat_ray.actors.launcher import RayLauncher
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import BackgroundRequest, utcnow
from cvat_ray.storage.services.data_upload import upload_area
from tests.conftest import Account
from tests.media_files import image_bytes
from tests.serve_apps.test_task_data import images, new_task, upload, wait

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def launcher(ray_cluster: None, settings: Settings, db: Database) -> Iterator[RayLauncher]:
    """Workers of this test only (own names), reading this test's database and data dir;
    ended after the test so the next test's workers find free CPUs."""
    settings.media.worker_num_cpus = 0.25
    env = {"CVAT_RAY_DATA_DIR": str(settings.data_dir), "CVAT_RAY_DATABASE__URL": db.url}
    launcher = RayLauncher(
        settings, db, prefix=f"test-{uuid.uuid4().hex[:8]}", runtime_env={"env_vars": env}
    )
    yield launcher
    launcher.kill_workers()


@pytest.fixture
def ray_app(settings: Settings, db: Database, launcher: RayLauncher):  # type: ignore[no-untyped-def]
    return build_app(settings, db, launcher=launcher)


@pytest.fixture
async def api(ray_app, alice: Account):  # type: ignore[no-untyped-def]
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=ray_app),
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


def _wait_row(db: Database, request_id: str, timeout: float = 120) -> BackgroundRequest:
    deadline = time.monotonic() + timeout
    while True:
        row = _row(db, request_id)
        if row.status in ("finished", "failed"):
            return row
        assert time.monotonic() < deadline, (row.status, row.message)
        time.sleep(0.2)


async def test_upload_processed_by_a_ray_actor(
    api: Any, launcher: RayLauncher, db: Database
) -> None:
    task_id = await new_task(api)
    r = await upload(api, task_id, images(3))
    assert r.status_code == 202, r.text
    rq = await wait(api, r.json()["rq_id"], timeout=180)
    assert rq["status"] == "finished", rq
    assert _row(db, str(rq["id"])).worker == launcher.worker_name(0)
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=2&quality=original")
    assert r.status_code == 200 and r.content == images(3)["img_02.jpg"]


def _started_row(db: Database, worker: str, task_id: int | None = None) -> str:
    request_id = str(uuid.uuid4())
    with db.session() as session:
        session.add(
            BackgroundRequest(
                id=request_id,
                operation_type="create:task",
                target="task",
                task_id=task_id,
                status="started" if worker else "queued",
                worker=worker or None,
                created_date=utcnow(),
                started_date=utcnow() if worker else None,
            )
        )
    return request_id


def test_a_restarted_worker_fails_what_its_dead_process_left(
    launcher: RayLauncher, db: Database
) -> None:
    import ray

    launcher.start()
    name = launcher.worker_name(0)
    request_id = _started_row(db, name)
    handle = launcher.handle(0)
    ray.kill(handle, no_restart=False)
    row = _wait_row(db, request_id)
    assert row.status == "failed" and "died" in row.message, row.message
    # restarted: a call that reaches the actor while Ray restarts it fails with
    # ActorUnavailableError ("may or may not have been executed"), so ask again
    deadline = time.monotonic() + 120
    while True:
        try:
            assert ray.get(handle.ping.remote(), timeout=120) == name
            break
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_dead_worker_call_fails_the_request(launcher: RayLauncher, db: Database) -> None:
    import ray

    launcher.start()
    ray.kill(launcher.handle(0), no_restart=True)
    time.sleep(1)
    request_id = _started_row(db, "")
    launcher.submit(request_id)
    row = _wait_row(db, request_id)
    assert row.status == "failed" and "media worker stopped" in row.message, row.message


async def test_lost_hand_over_is_swept_up(
    api: Any, launcher: RayLauncher, db: Database, settings: Settings
) -> None:
    import ray

    task_id = await new_task(api)
    area = upload_area(settings, task_id)
    area.start()
    (area.files / "a.jpg").write_bytes(image_bytes())
    request_id = _started_row(db, "", task_id=task_id)
    with db.session() as session:
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        row.params = {"source": "local", "data": {"image_quality": 70}}
        row.created_date = utcnow() - timedelta(hours=1)
    found: Any = await asyncio.to_thread(ray.get, launcher.handle(0).sweep.remote(), timeout=120)
    assert int(found) >= 1
    assert _row(db, request_id).status == "finished"
    task = (await api.get(f"/api/tasks/{task_id}")).json()
    assert task["size"] == 1
