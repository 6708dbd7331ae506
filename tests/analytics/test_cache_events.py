"""CVAT's ``create:cache_item`` and ``read:cache_item``: recorded by the media cache off the read
path (an append; a thread writes them to the outbox), shipped like every event, never a
reason for a read to fail. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from cvat_ray.actors.analytics import EventsSink, chdb_path, store_for
from cvat_ray.analytics.schema import table
from cvat_ray.analytics.store import forget_store
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.events.deferred import DeferredEvents
from tests.analytics.test_events_api import pending_rows
from tests.conftest import Account
from tests.factories import images, new_task, upload, wait


@pytest.fixture(autouse=True)
def _one_store(engine: str, settings: Settings) -> Any:
    if engine != "chdb":
        pytest.skip("the events are the same on both stores (the sink's tests cover both)")
    yield
    forget_store(settings.analytics, chdb_path(settings))


async def _task_with_job(api: Any, frames: int = 3) -> tuple[int, int]:
    task_id = await new_task(api)
    r = await upload(api, task_id, images(frames))
    assert r.status_code == 202, r.text
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    jobs = (await api.get(f"/api/jobs?task_id={task_id}&org=")).json()["results"]
    return task_id, jobs[0]["id"]


def cache_rows(db: Database) -> list[dict[str, Any]]:
    return [r for r in pending_rows(db) if r["scope"].endswith(":cache_item")]


async def test_chunk_reads_record_cache_item_events(
    client_for: Any, alice: Account, app: Any, db: Database, settings: Settings
) -> None:
    api = client_for(alice)
    task_id, job_id = await _task_with_job(api)
    url = f"/api/jobs/{job_id}/data?type=chunk&index=0&quality=compressed"
    rids = [str(uuid.uuid4()), str(uuid.uuid4())]
    first = await api.get(url, headers={"X-Request-Id": rids[0]})
    second = await api.get(url, headers={"X-Request-Id": rids[1]})
    assert first.status_code == second.status_code == 200
    r = await api.get(f"/api/tasks/{task_id}/data?type=chunk&number=0&quality=original")
    assert r.status_code == 200

    events: DeferredEvents = app.state.media.events
    assert cache_rows(db) == []  # nothing written on the read path itself
    assert events.flush() == 3
    created, read, task_chunk = cache_rows(db)
    assert (created["scope"], read["scope"]) == ("create:cache_item", "read:cache_item")
    for row, rid in ((created, rids[0]), (read, rids[1])):
        payload = json.loads(row["payload"])
        assert payload["cache_item"]["size"] == len(first.content)
        assert payload["cache_item"]["kind"] == "chunk" and row["obj_name"] == "chunk"
        assert payload["request"] == {"id": rid}
        assert (row["job_id"], row["task_id"]) == (job_id, task_id)
        assert (row["user_id"], row["user_name"]) == (alice.id, "alice")
        assert row["user_email"] == "alice@example.com" and row["source"] == "server"
        assert row["count"] == 1
    assert created["obj_val"] == read["obj_val"]  # the same cache item
    assert task_chunk["scope"] == "create:cache_item" and task_chunk["job_id"] is None
    assert task_chunk["task_id"] == task_id
    assert json.loads(task_chunk["payload"])["cache_item"]["size"] == len(r.content)

    # shipped: the Monitoring dashboard's throughput reads payload.cache_item.size
    EventsSink(db, settings).drain()
    store = store_for(settings)
    sizes = store.execute(
        f"SELECT scope, sum(JSONExtractUInt(payload, 'cache_item', 'size')) "
        f"FROM {table(store.database)} WHERE scope LIKE '%:cache_item' GROUP BY scope "
        "ORDER BY scope"
    )
    assert sizes == [
        ("create:cache_item", len(first.content) + len(r.content)),
        ("read:cache_item", len(first.content)),
    ]


async def test_previews_and_frames_are_cache_items_too(
    client_for: Any, alice: Account, app: Any, db: Database
) -> None:
    api = client_for(alice)
    _, job_id = await _task_with_job(api, frames=2)
    for _ in range(2):
        assert (await api.get(f"/api/jobs/{job_id}/preview")).status_code == 200
        r = await api.get(f"/api/jobs/{job_id}/data?type=frame&number=1&quality=original")
        assert r.status_code == 200
    app.state.media.events.flush()
    seen = [(row["scope"], row["obj_name"]) for row in cache_rows(db)]
    assert seen == [
        ("create:cache_item", "preview"),
        ("create:cache_item", "frame"),
        ("read:cache_item", "preview"),
        ("read:cache_item", "frame"),
    ]


async def test_a_failing_events_database_never_fails_a_read(
    client_for: Any, alice: Account, app: Any, db: Database, tmp_path: Path
) -> None:
    api = client_for(alice)
    _, job_id = await _task_with_job(api)
    events: DeferredEvents = app.state.media.events
    # the events' database has no tables: every write fails
    broken = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    events.db = broken
    try:
        url = f"/api/jobs/{job_id}/data?type=chunk&index=0&quality=compressed"
        for _ in range(2):
            assert (await api.get(url)).status_code == 200
        with pytest.raises(OperationalError):
            events.flush()
        events.close()  # logs, drops what it could not write, does not raise
    finally:
        broken.dispose()
    assert cache_rows(db) == []


@pytest.fixture
def analytics_off(settings: Settings) -> Settings:
    settings.analytics.enabled = False
    return settings


async def test_analytics_off_records_no_cache_events(
    analytics_off: Settings, client_for: Any, alice: Account, app: Any, db: Database
) -> None:
    assert app.state.media.events is None
    api = client_for(alice)
    _, job_id = await _task_with_job(api)
    url = f"/api/jobs/{job_id}/data?type=chunk&index=0&quality=compressed"
    assert (await api.get(url)).status_code == 200
    assert cache_rows(db) == []


def test_a_full_buffer_drops_and_counts(db: Database) -> None:
    from cvat_ray.storage.changes import Actor, Scope

    events = DeferredEvents(db, interval_s=3600, cap=2)
    for _ in range(3):
        events.cache_item("read:cache_item", Actor(user_id=None), Scope(task_id=1), "chunk", "k", 5)
    assert events.dropped == 1
    events.close()
    assert len(cache_rows(db)) == 2
