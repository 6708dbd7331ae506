"""The events sink: drains the events outbox into ClickHouse, runs events exports, and answers
the built-in analytics page's queries.

It is the ``analytics`` family of the background registry (:mod:`cvat_ray.actors.registry`):
under Ray the named, detached ``events-sink-0`` runner (restarted by Ray), without Ray a
thread of the API process. The runner runs :func:`run_sink` in a thread of its own as long
as it lives; ``export:events`` requests and the page's queries run in the same process,
which is the only one that opens the embedded ClickHouse (chdb).

Nothing is lost: a batch is deleted from the outbox only after ClickHouse acknowledged its
insert. While ClickHouse is away the outbox grows; past ``analytics.outbox_cap`` the oldest
client events are dropped (and a ``drop:events`` server event records how many), never
server events. A crash between the acknowledgement and the delete sends that batch again
(delivery is at least once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cvat_ray.analytics import queries
from cvat_ray.analytics.schema import retention_sql
from cvat_ray.analytics.store import EventStore, forget_store, open_store
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.events import outbox
from cvat_ray.storage.services import events as event_service

logger = logging.getLogger("cvat_ray.analytics")

RETENTION_EVERY_S = 3600.0


class Context(Protocol):
    """What the runner hands over (``cvat_ray.actors.registry.Context``)."""

    @property
    def db(self) -> Database: ...

    @property
    def settings(self) -> Settings: ...

    @property
    def worker(self) -> str: ...


def chdb_path(settings: Settings) -> Path:
    return settings.analytics_dir / "chdb"


def store_for(settings: Settings) -> EventStore:
    return open_store(settings.analytics, chdb_path(settings))


@dataclass
class SinkStats:
    shipped: int = 0
    batches: int = 0
    dropped: int = 0
    failures: int = 0
    last_error: str | None = None
    errors: list[str] = field(default_factory=list)


class EventsSink:
    """One drain of the outbox at a time (:meth:`drain`); :func:`run_sink` repeats it."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.stats = SinkStats()
        self._lock = threading.Lock()
        self._retention_at = 0.0

    def drain(self) -> int:
        """Ship batches until the outbox is empty; the number of events shipped. When
        ClickHouse fails, the batch stays, the cap is enforced, and the error is raised."""
        s = self.settings.analytics
        shipped = 0
        with self._lock:
            while True:
                with self.db.session() as session:
                    batch = outbox.read_batch(session, s.batch_size)
                if not batch:
                    break
                try:
                    store_for(self.settings).insert([row for _, row in batch])
                except Exception as exc:
                    self._failed(exc)
                    raise
                with self.db.session() as session:
                    outbox.delete_up_to(session, [i for i, _ in batch])
                shipped += len(batch)
                self.stats.shipped += len(batch)
                self.stats.batches += 1
                if len(batch) < s.batch_size:
                    break
        return shipped

    def _failed(self, exc: Exception) -> None:
        forget_store(self.settings.analytics, chdb_path(self.settings))
        self.stats.failures += 1
        self.stats.last_error = str(exc).splitlines()[0][:300] if str(exc) else repr(exc)
        with self.db.session() as session:
            dropped = outbox.enforce_cap(session, self.settings.analytics.outbox_cap)
        self.stats.dropped += dropped

    def retention(self) -> None:
        """The periodic delete that stands in for a TTL on servers without one."""
        now = time.monotonic()
        if now - self._retention_at < RETENTION_EVERY_S:
            return
        self._retention_at = now
        store = store_for(self.settings)
        sql = retention_sql(store.database, store.flavor, self.settings.analytics.ttl_days)
        if sql:
            store.execute(sql)


def run_sink(ctx: Context, stop: threading.Event) -> None:
    """The sink's loop: drain every ``analytics.flush_interval_s`` until ``stop`` is set."""
    settings = ctx.settings
    if not settings.analytics.enabled:
        return
    sink = EventsSink(ctx.db, settings)
    _sinks[id(ctx.db)] = sink
    failing = False
    while True:
        try:
            sink.drain()
            sink.retention()
            if failing:
                logger.warning("events sink: ClickHouse is back, the outbox drained")
            failing = False
        except Exception as exc:
            if not failing:
                logger.warning("events sink: ClickHouse unavailable (%s); events wait", exc)
            failing = True
        if stop.wait(settings.analytics.flush_interval_s):
            break
    try:
        sink.drain()  # what is left, before the process goes
    except Exception:
        logger.info("events sink: ClickHouse unavailable, events stay in the outbox")


_sinks: dict[int, EventsSink] = {}


def sink_of(db: Database) -> EventsSink | None:
    """The sink running for this database in this process (tests, the page's status)."""
    return _sinks.get(id(db))


def export_request(ctx: Context, request_id: str) -> None:
    """Run an ``export:events`` request: the CSV from ClickHouse into the request's file."""

    def produce(params: dict[str, Any]) -> Iterator[bytes]:
        # what was shipped so far is in ClickHouse; drain first so the export sees it all
        sink = sink_of(ctx.db)
        if sink is not None:
            sink.drain()
        store = store_for(ctx.settings)
        f = queries.EventFilter.from_dict(params)
        return queries.export_csv(store, f, ctx.settings.analytics.export_max_rows)

    event_service.run_export(ctx.db, ctx.settings, request_id, ctx.worker, produce)


def dashboard(ctx: Context, params: dict[str, Any]) -> dict[str, Any]:
    """The built-in page's data for one filter."""
    if not ctx.settings.analytics.enabled:
        return {"enabled": False}
    sink = sink_of(ctx.db)
    if sink is not None:
        try:
            sink.drain()
        except Exception:
            logger.info("dashboard: ClickHouse unavailable", exc_info=True)
    store = store_for(ctx.settings)
    bucket = int(params.pop("bucket_ms", 0) or 0)
    f = queries.EventFilter.from_dict(params)
    if not bucket:
        span = (f.to_ms or int(time.time() * 1000)) - (f.from_ms or 0)
        bucket = max(60_000, span // 120)
    answer = queries.dashboard(store, f, bucket)
    answer["enabled"] = True
    with ctx.db.session() as session:
        answer["outbox"] = outbox.pending(session)
    return answer
