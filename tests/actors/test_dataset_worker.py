"""The Ray path of exports and imports: the named ``dataset-worker`` actor runs them (its
imports parsed in a forked process, its exports' pages made by forked ones), and a worker
that dies leaves its request failed with the family's reason. COCO imports on PostgreSQL are
read in shares by several forked processes there."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cvat_ray.actors.registry import DATASETS
from cvat_ray.actors.runners import RayLauncher
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import BackgroundRequest, utcnow
from cvat_ray.storage.services.datasets import EXPORT_ANNOTATIONS
from tests.conftest import Account
from tests.factories import export_dataset, images, import_file, labelled_task

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def launcher(ray_cluster: None, settings: Settings, db: Database) -> Iterator[RayLauncher]:
    settings.media.worker_num_cpus = 0.25
    settings.datasets.worker_num_cpus = 0.25
    env = {
        "CVAT_RAY_DATA_DIR": str(settings.data_dir),
        "CVAT_RAY_DATABASE__URL": db.url,
        # every import parses in a forked process, here inside the Ray actor
        "CVAT_RAY_DATASETS__FORK_READER_FROM_BYTES": "0",
        # and every export on PostgreSQL makes its pages in forked processes
        "CVAT_RAY_DATASETS__FORK_EXPORT_FROM_FRAMES": "0",
    }
    launcher = RayLauncher(
        settings, db, prefix=f"test-{uuid.uuid4().hex[:8]}-", runtime_env={"env_vars": env}
    )
    yield launcher
    launcher.kill()
    launcher.close()


@pytest.fixture
async def api(settings: Settings, db: Database, launcher: RayLauncher, alice: Account):  # type: ignore[no-untyped-def]
    app = build_app(settings, db, launcher)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
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


async def test_export_and_import_run_on_the_dataset_worker(
    api: Any, launcher: RayLauncher, db: Database
) -> None:
    task = await labelled_task(api, images(2))
    cat = task["labels_by_name"]["cat"]["id"]
    r = await api.put(
        f"/api/tasks/{task['id']}/annotations/",
        json={
            "shapes": [{"type": "rectangle", "frame": 1, "label_id": cat, "points": [1, 2, 3, 4]}]
        },
    )
    assert r.status_code == 200
    data = await export_dataset(api, "task", task["id"], "CVAT for images 1.1")
    body = await import_file(api, "task", task["id"], "CVAT 1.1", "a.zip", data)
    assert body["status"] == "finished", body
    assert _row(db, str(body["id"])).worker == DATASETS.actor_name(0, launcher.prefix)
    shapes = (await api.get(f"/api/tasks/{task['id']}/annotations/")).json()["shapes"]
    assert [(s["frame"], s["points"]) for s in shapes] == [(1, [1, 2, 3, 4])]
    # COCO on PostgreSQL is read in shares, one forked process each, inside the actor
    data = await export_dataset(api, "task", task["id"], "COCO 1.0")
    body = await import_file(api, "task", task["id"], "COCO 1.0", "c.zip", data)
    assert body["status"] == "finished", body
    shapes = (await api.get(f"/api/tasks/{task['id']}/annotations/")).json()["shapes"]
    assert [(s["frame"], s["points"]) for s in shapes] == [(1, [1, 2, 3, 4])]


def test_a_dead_dataset_worker_fails_its_request(launcher: RayLauncher, db: Database) -> None:
    import ray

    name = DATASETS.actor_name(0, launcher.prefix)
    handle = launcher.handle(name)
    assert ray.get(handle.ping.remote(), timeout=120) == name
    request_id = str(uuid.uuid4())
    with db.session() as session:
        session.add(
            BackgroundRequest(
                id=request_id, operation_type=EXPORT_ANNOTATIONS, target="task",
                status="started", worker=name, created_date=utcnow(), started_date=utcnow(),
                format="COCO 1.0", params={},
            )
        )  # fmt: skip
    ray.kill(handle, no_restart=False)
    deadline = time.monotonic() + 120
    while (row := _row(db, request_id)).status == "started":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert row.status == "failed" and row.message == DATASETS.lost_reason
