"""A running export can be cancelled (CVAT cancels non-mutating exports): its worker stops at
its next progress report and leaves no file; the request stays failed as cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.services import datasets
from tests.conftest import Account
from tests.factories import Deferred, add_frames, new_task, wait


@pytest.fixture
def launcher(settings: Settings, db: Database) -> Deferred:
    held = Deferred(settings, db)
    held.held_types = (datasets.EXPORT_ANNOTATIONS,)
    return held


@pytest.fixture
def app(settings: Settings, db: Database, launcher: Deferred):  # type: ignore[no-untyped-def]
    return build_app(settings, db, launcher)


async def test_cancel_a_running_export(
    client_for: Any,
    alice: Account,
    db: Database,
    settings: Settings,
    launcher: Deferred,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task_id = await new_task(api)
    add_frames(db, task_id, 600)  # several pages of frames
    r = await api.post(f"/api/tasks/{task_id}/dataset/export", params={"format": "COCO 1.0"})
    assert r.status_code == 202
    rq_id = r.json()["rq_id"]
    assert launcher.submitted == [rq_id]
    real = datasets._reporter
    cancelled: list[int] = []

    def reporter(db_: Database, request_id: str, every_s: float = 1.0) -> Any:
        report = real(db_, request_id, every_s=0)

        def on_page(share: float) -> None:
            if not cancelled:  # the user cancels while the first pages are written
                loop.call_soon_threadsafe(cancelled.append, 1)
                future = asyncio.run_coroutine_threadsafe(
                    api.post(f"/api/requests/{rq_id}/cancel"), loop
                )
                assert future.result(30).status_code == 200
            report(share)

        return on_page

    loop = asyncio.get_running_loop()
    monkeypatch.setattr(datasets, "_reporter", reporter)
    await asyncio.to_thread(datasets.run_export, db, settings, rq_id, "test-worker")
    body = await wait(api, rq_id)
    assert body["status"] == "failed" and body["message"] == "Cancelled by the user."
    assert not list(settings.exports_dir.iterdir())
    # a queued-or-finished request: cancelling a finished export is refused
    r = await api.post(f"/api/requests/{rq_id}/cancel")
    assert r.status_code == 409
