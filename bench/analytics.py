"""Analytics: what events cost the API, how fast they reach ClickHouse, how fast they export.

    python bench/analytics.py [--events 100000] [--seconds 5] [--rounds 3]
                              [--clickhouse auto|none|HOST:PORT] [--database-url URL]

1. **Write load, analytics on vs off, same run**: annotation saves (PUT of a job's shapes:
   ``create:shapes``/``create:tags`` events), task renames and label renames (``update:label``)
   through the real app (in-process ASGI, one client), alternating rounds: analytics on with
   the sink draining beside it (its own process for a server, as the actor), on with the sink
   idle (the cost inside the API's transactions alone), and off. Prints writes/s for each and
   the ratios to off (goal >= 0.9).
2. **Ingest**: ``--events`` client events (``--events 1000000`` for the issue's figure) sent
   through ``POST /api/events`` in batches of 5,000 while the sink drains the outbox into
   ClickHouse; prints events/s into the outbox, out of it into ClickHouse, and end to end
   (goal >= 20,000/s into the server).
3. **Export**: the CSV export of all of them (``analytics.queries.export_csv``, streamed)
   against a raw ``clickhouse-driver`` SELECT of the same rows; prints both times,
   ``ratio = raw / export`` (goal >= 0.5), and the export's peak memory growth.

``--clickhouse auto`` (the default) starts Debian's clickhouse-server on a free port (as the
tests do); ``none`` uses the embedded chdb (phase 3 then streams chdb's rows for the raw
figure); ``HOST:PORT`` uses a running server (user ``default``, no password).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 5000


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _drain_loop(sink: Any, stop: Any) -> None:
    """What ``run_sink`` does: drain until empty, then wait ``analytics.flush_interval_s``."""
    while not stop.is_set():
        try:
            sink.drain()
        except Exception as exc:  # keep going, as the sink does
            print("  drain failed:", exc)
        stop.wait(sink.settings.analytics.flush_interval_s)


def _drain_process(settings: Any, stop: Any, ready: Any) -> None:
    """The sink in a process of its own, as the ``events-sink`` actor runs it."""
    from cvat_ray.actors.analytics import EventsSink, store_for
    from cvat_ray.storage.db import Database

    db = Database(settings.database_url, pool_size=2)
    store_for(settings)
    ready.set()
    _drain_loop(EventsSink(db, settings), stop)
    db.dispose()


class Drainer:
    """The events sink's loop while a phase runs: in a process of its own for a ClickHouse
    server (as the ``events-sink`` actor), in a thread for chdb (only one process may open
    its folder, and this one already has)."""

    def __init__(self, sink: Any, settings: Any) -> None:
        import multiprocessing as mp

        self.worker: Any
        if settings.analytics.host:
            ctx = mp.get_context("spawn")
            self.stop: Any = ctx.Event()
            self.ready: Any = ctx.Event()
            self.worker = ctx.Process(target=_drain_process, args=(settings, self.stop, self.ready))
        else:
            self.stop = threading.Event()
            self.ready = threading.Event()
            self.ready.set()
            self.worker = threading.Thread(target=_drain_loop, args=(sink, self.stop))

    def __enter__(self) -> Drainer:
        """Start it and wait until it runs (its start-up is not part of what is timed)."""
        self.worker.start()
        self.ready.wait(120)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.worker.join()


async def write_load(app: Any, token: str, task: dict[str, Any], seconds: float) -> int:
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bench",
        headers={"Authorization": f"Token {token}"},
    ) as api:
        label = task["label_id"]
        shapes = {
            "version": 0,
            "tags": [{"frame": 0, "label_id": label, "group": None}],
            "shapes": [
                {
                    "type": "rectangle",
                    "frame": f % 10,
                    "label_id": label,
                    "points": [1, 2, 3 + f, 4],
                }
                for f in range(20)
            ],
            "tracks": [],
        }
        done = 0
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            r1 = await api.put(f"/api/jobs/{task['job_id']}/annotations", json=shapes)
            r2 = await api.patch(f"/api/tasks/{task['id']}", json={"name": f"t{done}"})
            r3 = await api.patch(f"/api/labels/{label}", json={"name": f"cat{done}"})
            for r in (r1, r2, r3):
                if r.status_code >= 400:
                    raise RuntimeError(f"{r.request.url}: {r.status_code} {r.text[:200]}")
            done += 3
        return done


def client_batches(events: int) -> list[bytes]:
    """The bodies the UI would send, made before the clock starts (the client's work is not
    the server's ingest)."""
    import json

    now = datetime.now(UTC)
    bodies = []
    sent = 0
    while sent < events:
        n = min(BATCH, events - sent)
        base = now - timedelta(milliseconds=events - sent)
        batch = [
            {
                "scope": "draw:object" if i % 7 else "change:frame",
                "timestamp": (base + timedelta(milliseconds=i)).isoformat(),
                "job_id": 1 + (sent + i) % 50,
                "task_id": 1,
                "duration": 40 if i % 7 == 0 else 0,
                "payload": '{"client_id":1,"is_active":true}',
            }
            for i in range(n)
        ]
        bodies.append(json.dumps({"events": batch, "timestamp": now.isoformat()}).encode())
        sent += n
    return bodies


async def ingest(app: Any, token: str, bodies: list[bytes]) -> float:
    import httpx

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bench",
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        timeout=300,
    ) as api:
        start = time.perf_counter()
        for body in bodies:
            r = await api.post("/api/events", content=body)
            if r.status_code != 201:
                raise RuntimeError(f"POST /api/events: {r.status_code} {r.text[:300]}")
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000, help="phase 2/3 size")
    parser.add_argument("--seconds", type=float, default=5, help="per write-load round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating on/off rounds")
    parser.add_argument("--clickhouse", default="auto", help="auto | none | HOST:PORT")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()

    from sqlalchemy import select

    from cvat_ray.actors.analytics import EventsSink, store_for
    from cvat_ray.analytics import queries
    from cvat_ray.analytics.schema import table
    from cvat_ray.cluster.runtime import free_port
    from cvat_ray.cluster.settings import AnalyticsSettings, Settings
    from cvat_ray.serve_apps.app import build_app
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.events import outbox
    from cvat_ray.storage.migrate import upgrade
    from cvat_ray.storage.models import Job, Label, Task
    from cvat_ray.storage.services.authn import start_session
    from cvat_ray.storage.services.task_data import FrameInfo, attach_data
    from cvat_ray.storage.services.users import create_user

    workdir = Path(tempfile.mkdtemp(prefix="cvat-bench-analytics-"))
    server = None
    analytics = AnalyticsSettings(database=f"bench_{uuid.uuid4().hex[:8]}", batch_size=50_000)
    if args.clickhouse == "auto":
        from tests.analytics import clickhouse

        server = clickhouse.start(workdir / "clickhouse", free_port(), free_port())
        analytics = analytics.model_copy(update={"host": "127.0.0.1", "port": server.port})
    elif args.clickhouse != "none":
        host, _, port = args.clickhouse.rpartition(":")
        analytics = analytics.model_copy(update={"host": host, "port": int(port)})
    settings = Settings(data_dir=workdir / "data", analytics=analytics)
    if args.database_url:
        settings.database.url = args.database_url
    db = Database(settings.database_url, pool_size=4)
    upgrade(db.engine)
    with db.session() as session:
        user = create_user(
            session,
            username=f"bench{uuid.uuid4().hex[:6]}",
            password="Bench-pass-1",
            groups=("admin",),
            is_superuser=True,
        )
        task = Task(name="bench", owner_id=user.id, segment_size=10)
        session.add(task)
        session.flush()
        session.add(Label(task_id=task.id, name="cat", color="#ff0000", type="any"))
        attach_data(session, task, [FrameInfo(f"{i}.jpg", 640, 480) for i in range(10)])
        token = start_session(session, user, 3600, "token").key
        session.flush()
        job_id = session.scalar(select(Job.id).where(Job.task_id == task.id))
        label_id = session.scalar(select(Label.id).where(Label.task_id == task.id))
        task_info = {"id": task.id, "job_id": job_id, "label_id": label_id}

    engine = f"ClickHouse server {args.clickhouse}" if analytics.host else "chdb"
    print(f"database: {db.dialect}; events store: {engine}")
    app = build_app(settings, db)
    sink = EventsSink(db, settings)
    store = store_for(settings)
    print(
        f"engine version: {store.flavor.version} ({'current' if store.flavor.modern else 'legacy'} table)"
    )
    try:
        # ------------------------------------------------------------- 1. write load
        modes = {"on": True, "on, sink idle": True, "off": False}
        ops_of = dict.fromkeys(modes, 0)
        time_of = dict.fromkeys(modes, 0.0)
        asyncio.run(write_load(app, token, task_info, 0.5))  # warm up
        for rnd in range(args.rounds):
            for mode, enabled in modes.items():
                outbox.install(enabled)
                if mode == "on":
                    with Drainer(sink, settings):
                        start = time.perf_counter()
                        ops = asyncio.run(write_load(app, token, task_info, args.seconds))
                        took = time.perf_counter() - start
                else:
                    start = time.perf_counter()
                    ops = asyncio.run(write_load(app, token, task_info, args.seconds))
                    took = time.perf_counter() - start
                ops_of[mode] += ops
                time_of[mode] += took
                print(f"  round {rnd + 1} analytics {mode:13}: {ops / took:8.1f} writes/s")
            outbox.install(True)
            sink.drain()  # the idle round's events, before the next round
        rate = {mode: ops_of[mode] / time_of[mode] for mode in modes}
        print(
            f"write load: on {rate['on']:.1f} writes/s (sink draining beside it), "
            f"on {rate['on, sink idle']:.1f} (sink idle), off {rate['off']:.1f}; "
            f"ratio on/off = {rate['on'] / rate['off']:.3f}, "
            f"idle sink on/off = {rate['on, sink idle'] / rate['off']:.3f} (goal >= 0.9)"
        )

        # ------------------------------------------------------------- 2. ingest
        before = int(store.execute(f"SELECT count() FROM {table(store.database)}")[0][0])
        bodies = client_batches(args.events)
        with Drainer(sink, settings):
            start = time.perf_counter()
            post_s = asyncio.run(ingest(app, token, bodies))
            while True:
                with db.session() as session:
                    if outbox.pending(session) == 0:
                        break
                time.sleep(0.02)
            total_s = time.perf_counter() - start
        after = int(store.execute(f"SELECT count() FROM {table(store.database)}")[0][0])
        stored = after - before
        print(
            f"ingest: {args.events} client events ({stored} rows with working time) posted in "
            f"{post_s:.2f} s ({args.events / post_s:,.0f} events/s into the outbox); in "
            f"ClickHouse after {total_s:.2f} s: {stored / total_s:,.0f} events/s end to end "
            "(goal >= 20,000/s)"
        )
        # the sink alone: a backlog drained
        outbox.install(True)
        backlog = min(args.events, 200_000)
        from cvat_ray.storage.events.rows import empty_row, now_ms

        t0 = now_ms()
        with db.session() as session:
            outbox.add_rows(
                session, [empty_row("draw:object", "client", t0 + i) for i in range(backlog)]
            )
        start = time.perf_counter()
        sink.drain()
        drain_s = time.perf_counter() - start
        print(
            f"sink: a backlog of {backlog} events drained into ClickHouse in {drain_s:.2f} s "
            f"({backlog / drain_s:,.0f} events/s)"
        )

        # ------------------------------------------------------------- 3. export
        f = queries.EventFilter()
        limit = 100_000_000
        sql = queries.export_sql(store.database, store.flavor, f, limit)
        rows = int(
            store.execute(
                f"SELECT count() FROM {table(store.database)} WHERE scope != 'send:exception'"
            )[0][0]
        )
        start = time.perf_counter()
        n = sum(1 for _ in store.stream(sql))
        raw_s = time.perf_counter() - start
        _reset_peak()
        base_kib = _peak_kib()
        out = workdir / "events.csv"
        start = time.perf_counter()
        with out.open("wb") as fh:
            for chunk in queries.export_csv(store, f, limit):
                fh.write(chunk)
        export_s = time.perf_counter() - start
        peak = _peak_kib() - base_kib
        print(
            f"export: {rows} rows; raw SELECT {raw_s:.2f} s ({n} rows), CSV export {export_s:.2f} s "
            f"({out.stat().st_size / 2**20:.1f} MiB), ratio raw/export = {raw_s / export_s:.3f} "
            f"(goal >= 0.5); peak memory growth {peak / 1024:.1f} MiB"
        )
    finally:
        from cvat_ray.actors.analytics import chdb_path
        from cvat_ray.analytics.store import forget_store

        forget_store(settings.analytics, chdb_path(settings))
        db.dispose()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
