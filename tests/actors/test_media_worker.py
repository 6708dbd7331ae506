"""The Ray path of ``create:task``: the media runner actor processes uploads; a runner that
dies leaves no request hanging (its restart, the launcher or the sweep fails it, or it is run
again); lost hand-overs are swept up by the sweeper actor."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, text

from cvat_ray.actors.registry import MEDIA
from cvat_ray.actors.runners import RayLauncher
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import BackgroundRequest, utcnow
from cvat_ray.storage.services.data_upload import CREATE_TASK, upload_area
from tests.conftest import Account
from tests.factories import images, new_task, upload, wait
from tests.media_files import image_bytes

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def launcher(ray_cluster: None, settings: Settings, db: Database) -> Iterator[RayLauncher]:
    """Runners and a sweeper of this test only (own names), reading this test's database and
    data dir; ended after the test so the next test's actors find free CPUs."""
    settings.media.worker_num_cpus = 0.25
    env = {"CVAT_RAY_DATA_DIR": str(settings.data_dir), "CVAT_RAY_DATABASE__URL": db.url}
    launcher = RayLauncher(
        settings, db, prefix=f"test-{uuid.uuid4().hex[:8]}-", runtime_env={"env_vars": env}
    )
    yield launcher
    launcher.kill()
    launcher.close()


@pytest.fixture
def ray_app(settings: Settings, db: Database, launcher: RayLauncher):  # type: ignore[no-untyped-def]
    return build_app(settings, db, launcher)


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


def _media_runner(launcher: RayLauncher) -> str:
    return MEDIA.actor_name(0, launcher.prefix)


async def test_upload_processed_by_a_ray_runner(
    api: Any, launcher: RayLauncher, db: Database
) -> None:
    task_id = await new_task(api)
    r = await upload(api, task_id, images(3))
    assert r.status_code == 202, r.text
    rq = await wait(api, r.json()["rq_id"], timeout=180)
    assert rq["status"] == "finished", rq
    assert _row(db, str(rq["id"])).worker == _media_runner(launcher)
    r = await api.get(f"/api/tasks/{task_id}/data/?type=frame&number=2&quality=original")
    assert r.status_code == 200 and r.content == images(3)["img_02.jpg"]


def _add_row(
    db: Database, *, worker: str | None = None, task_id: int | None = None, age_s: float = 0
) -> str:
    """A ``create:task`` row: ``started`` by ``worker`` when given, else queued."""
    request_id = str(uuid.uuid4())
    with db.session() as session:
        session.add(
            BackgroundRequest(
                id=request_id,
                operation_type=CREATE_TASK,
                target="task",
                task_id=task_id,
                status="started" if worker else "queued",
                worker=worker,
                created_date=utcnow() - timedelta(seconds=age_s),
                started_date=utcnow() if worker else None,
                params={"source": "local", "data": {"image_quality": 70}},
            )
        )
    return request_id


async def _uploaded_task(api: Any, settings: Settings) -> int:
    """A task with one uploaded file, waiting for a ``create:task`` request."""
    task_id = await new_task(api)
    area = upload_area(settings, task_id)
    area.start()
    (area.files / "a.jpg").write_bytes(image_bytes())
    return task_id


def test_a_restarted_runner_fails_what_its_dead_process_left(
    launcher: RayLauncher, db: Database
) -> None:
    import ray

    name = _media_runner(launcher)
    handle = launcher.handle(name)
    assert ray.get(handle.ping.remote(), timeout=120) == name
    request_id = _add_row(db, worker=name)
    ray.kill(handle, no_restart=False)
    row = _wait_row(db, request_id)
    assert row.status == "failed" and row.message == MEDIA.lost_reason
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


async def test_a_runner_killed_for_good_is_replaced(
    api: Any, launcher: RayLauncher, db: Database, settings: Settings
) -> None:
    """The launcher's handle points to a runner that is gone: the request is not failed,
    it goes to a new runner of the same name."""
    import ray

    name = _media_runner(launcher)
    handle = launcher.handle(name)
    ray.get(handle.ping.remote(), timeout=120)
    ray.kill(handle, no_restart=True)
    task_id = await _uploaded_task(api, settings)
    request_id = _add_row(db, task_id=task_id)
    launcher.submit(request_id, CREATE_TASK)
    row = await asyncio.to_thread(_wait_row, db, request_id, 180)
    assert row.status == "finished", row.message
    assert row.worker == name


async def test_runner_killed_mid_request(
    api: Any, launcher: RayLauncher, db: Database, settings: Settings
) -> None:
    """The runner's process dies while it processes an upload: the request ends failed with
    the family's reason (its restarted runner fails it), and the task can be given data
    again. Mid-request for sure: the test holds a lock that keeps the data table from being
    written, so the runner waits in its last step (PostgreSQL; SQLite has no such locks)."""
    import ray

    if db.dialect != "postgresql":
        pytest.skip("needs table locks")
    task_id = await new_task(api)
    with db.engine.connect() as conn:
        lock = conn.begin()
        conn.execute(text("LOCK TABLE data IN EXCLUSIVE MODE"))  # reads pass, writes wait
        try:
            r = await upload(api, task_id, images(2))
            assert r.status_code == 202, r.text
            request_id = r.json()["rq_id"]
            deadline = time.monotonic() + 120
            while _row(db, request_id).message != "Saving the frame list":
                assert time.monotonic() < deadline, _row(db, request_id).message
                await asyncio.sleep(0.1)
            assert _row(db, request_id).status == "started"
            ray.kill(launcher.handle(_media_runner(launcher)), no_restart=False)
            row = await asyncio.to_thread(_wait_row, db, request_id)
        finally:
            lock.rollback()
    assert row.status == "failed" and row.message == MEDIA.lost_reason
    rq = await wait(api, (await upload(api, task_id, images(2))).json()["rq_id"], timeout=180)
    assert rq["status"] == "finished", rq


async def test_the_sweeper_picks_up_lost_and_dead_requests(
    api: Any, launcher: RayLauncher, db: Database, settings: Settings
) -> None:
    """One sweep: a queued row whose hand-over was lost is processed; a started row whose
    runner is gone is failed with the reason; a started row of a live runner is left."""
    import ray

    task_id = await _uploaded_task(api, settings)
    lost = _add_row(db, task_id=task_id, age_s=3600)
    fresh = _add_row(db, age_s=0)  # just committed; its hand-over may be on its way
    dead = _add_row(db, worker=f"{launcher.prefix}gone-runner-0")
    live_name = _media_runner(launcher)
    ray.get(launcher.handle(live_name).ping.remote(), timeout=120)
    live = _add_row(db, worker=live_name)
    requeued, failed = await asyncio.to_thread(
        ray.get, launcher.sweeper().sweep.remote(), timeout=180
    )
    assert lost in requeued and fresh not in requeued
    assert failed == [dead]
    assert _row(db, dead).message == MEDIA.lost_reason
    assert _row(db, live).status == "started"
    row = await asyncio.to_thread(_wait_row, db, lost, 180)
    assert row.status == "finished", row.message
    task = (await api.get(f"/api/tasks/{task_id}")).json()
    assert task["size"] == 1
    with db.session() as session:  # nothing else was touched
        rows = session.execute(select(BackgroundRequest.id, BackgroundRequest.status))
        statuses = {r.id: r.status for r in rows}
    assert statuses[fresh] == "queued" and statuses[live] == "started"
