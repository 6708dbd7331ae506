"""The events sink: nothing lost while ClickHouse is away, the cap drops only client events,
and under Ray it is the named, detached ``events-sink`` runner that owns the embedded store."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvat_ray.actors.analytics import EventsSink, chdb_path, store_for
from cvat_ray.actors.registry import ANALYTICS
from cvat_ray.analytics.schema import table
from cvat_ray.analytics.store import forget_store
from cvat_ray.cluster.runtime import free_port
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.events import outbox
from cvat_ray.storage.events.rows import empty_row, now_ms
from tests.analytics import clickhouse
from tests.analytics.conftest import server_settings


def add(db: Database, n: int, source: str, scope: str = "draw:object") -> None:
    with db.session() as session:
        outbox.add_rows(session, [empty_row(scope, source, now_ms() + i) for i in range(n)])


def pending(db: Database) -> int:
    with db.session() as session:
        return outbox.pending(session)


def count(settings: Settings, where: str = "1") -> int:
    store = store_for(settings)
    return int(store.execute(f"SELECT count() FROM {table(store.database)} WHERE {where}")[0][0])


@pytest.fixture
def down_then_up(
    clickhouse_server: clickhouse.ClickHouse, tmp_path: Path
) -> Iterator[tuple[Settings, Settings]]:
    """Settings of a server that does not answer, and of the live one (same database)."""
    live = server_settings(clickhouse_server)
    dead = live.model_copy(update={"port": free_port(), "connect_timeout_s": 0.5})
    yield (
        Settings(data_dir=tmp_path / "data", analytics=dead),
        Settings(data_dir=tmp_path / "data", analytics=live),
    )
    forget_store(live, tmp_path / "chdb")


def test_clickhouse_down_keeps_everything_and_drains_later(
    db: Database, down_then_up: tuple[Settings, Settings]
) -> None:
    dead, live = down_then_up
    add(db, 5, "server", "create:task")
    add(db, 7, "client")
    with pytest.raises(Exception, match=r"(?i)connect|refused|timed out"):
        EventsSink(db, dead).drain()
    assert pending(db) == 12  # nothing lost, nothing deleted
    sink = EventsSink(db, live)
    assert sink.drain() == 12
    assert pending(db) == 0
    assert count(live) == 12 and count(live, "source = 'server'") == 5


def test_over_the_cap_the_oldest_client_events_go_never_server_events(
    db: Database, down_then_up: tuple[Settings, Settings]
) -> None:
    dead, live = down_then_up
    # the cap's floor is 1000 for operators; a test sets a small one directly
    dead.analytics = dead.analytics.model_copy(update={"outbox_cap": 10})
    add(db, 4, "client", "zoom:image")  # the oldest client events
    add(db, 6, "server", "update:job")
    add(db, 5, "client", "draw:object")
    sink = EventsSink(db, dead)
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises when refused
        sink.drain()
    assert sink.stats.dropped == 5
    # 10 kept + the drop:events record
    assert pending(db) == 11
    assert EventsSink(db, live).drain() == 11
    assert count(live, "scope = 'update:job'") == 6  # every server event
    assert count(live, "scope = 'zoom:image'") == 0  # the oldest client events went first
    assert count(live, "scope = 'draw:object'") == 4
    store = store_for(live)
    assert store.execute(
        f"SELECT count, obj_val FROM {table(store.database)} WHERE scope = 'drop:events'"
    ) == [(5, "5")]


def test_a_batch_is_deleted_only_after_the_insert(db: Database, settings: Settings) -> None:
    """Rows written while a batch is in flight stay for the next one (ids, not a range)."""
    add(db, 3, "client")
    sink = EventsSink(db, settings)
    store = store_for(settings)
    inserted: list[int] = []
    real_insert = store.insert

    def insert(rows):  # type: ignore[no-untyped-def]
        add(db, 2, "server")  # committed meanwhile, by another request
        real_insert(rows)
        inserted.append(len(rows))

    store.insert = insert  # type: ignore[method-assign]
    try:
        sink.drain()
    finally:
        store.insert = real_insert  # type: ignore[method-assign]
    assert inserted == [3]
    assert count(settings) == 3
    assert pending(db) == 2  # written during the insert: not deleted with the batch
    sink.drain()
    assert pending(db) == 0
    forget_store(settings.analytics, chdb_path(settings))


@pytest.mark.ray
@pytest.mark.slow
def test_the_sink_is_a_named_detached_ray_actor(
    ray_cluster: None, db: Database, settings: Settings
) -> None:
    from cvat_ray.actors.runners import RayLauncher

    env = {
        "CVAT_RAY_DATA_DIR": str(settings.data_dir),
        "CVAT_RAY_DATABASE__URL": db.url,
        "CVAT_RAY_ANALYTICS__FLUSH_INTERVAL_S": "0.2",
        "CVAT_RAY_ANALYTICS__DATABASE": settings.analytics.database,
    }
    if settings.analytics.host:
        env["CVAT_RAY_ANALYTICS__HOST"] = settings.analytics.host
        env["CVAT_RAY_ANALYTICS__PORT"] = str(settings.analytics.port)
        env["CVAT_RAY_ANALYTICS__USER"] = settings.analytics.user
        env["CVAT_RAY_ANALYTICS__PASSWORD"] = clickhouse.PASSWORD
    settings.analytics.sink_num_cpus = 0.05
    launcher = RayLauncher(
        settings, db, prefix=f"test-{uuid.uuid4().hex[:8]}-", runtime_env={"env_vars": env}
    )
    try:
        launcher.open()
        import ray

        from cvat_ray.cluster.names import NAMESPACE

        name = ANALYTICS.actor_name(0, launcher.prefix)
        ray.get(ray.get_actor(name, namespace=NAMESPACE).ping.remote(), timeout=120)
        add(db, 25, "client", "draw:object")
        deadline = time.monotonic() + 60
        while pending(db):
            assert time.monotonic() < deadline, "the sink actor did not drain the outbox"
            time.sleep(0.2)
        # the actor's process answers the page's query from its own store
        answer = launcher.query("analytics", "dashboard", {"from_ms": 0})
        drawn = [s for s in answer["scopes"] if s["scope"] == "draw:object"]
        assert drawn[0]["count"] == 25
    finally:
        launcher.kill()
        launcher.close()
