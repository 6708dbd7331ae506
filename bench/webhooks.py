"""Webhook delivery: throughput, commit-to-receive latency, and what it costs the API.

Starts the real API app under uvicorn in its own process, 20 receivers on loopback in
another process, and drives task and job updates through the API from this one. The sender
is a thread of the API process (``--sender thread``, a deployment without Ray) or the
``webhook-sender`` Ray actor on a local Ray head the bench starts, woken by the API's commits
(``--sender ray``, as in a Ray deployment):

- 20 projects, each with a task (and its jobs) and a project webhook on ``update:task`` and
  ``update:job`` pointing at its own receiver, so every update makes one delivery;
- rounds alternate: webhooks off (inactive) / on, the same number of updates each, with the
  same concurrency; the API's updates/s is measured in each;
- every delivery's arrival is timed against the commit of the update that made it (the API
  process notes each such commit's time, by the update's ``updated_date``, right after it):
  commit -> receive latency; and against the ``updated_date`` itself, written before the
  rest of the request (the read of the result, the commit): write -> receive, an upper bound.

    python bench/webhooks.py [--updates 10000 | --quick] [--sender thread|ray]
                             [--concurrency 8] [--database-url URL (an empty database)]

Prints deliveries/s, latency p50/p99, API updates/s with webhooks off and on, and the ratio
on/off (goals: >= 500 deliveries/s, p99 <= 200 ms, ratio >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WEBHOOKS = 20


# ----------------------------------------------------------------------------- receivers


def _receivers(count: int, ports: Any, stop: Any, out: Any) -> None:
    """``count`` HTTP/1.1 receivers; each arrival as (delivery id, event, updated_date, t)."""
    hits: list[tuple[str, str, str, float]] = []
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            now = time.time()
            payload = json.loads(body)
            subject = payload.get("task") or payload.get("job") or {}
            with lock:
                hits.append(
                    (
                        self.headers.get("X-Webhook-Delivery", ""),
                        payload.get("event", ""),
                        str(subject.get("updated_date", "")),
                        now,
                    )
                )
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    servers = []
    for _ in range(count):
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    ports.put([s.server_address[1] for s in servers])
    stop.wait()
    for s in servers:
        s.shutdown()
    with lock:
        out.put(hits)


# ----------------------------------------------------------------------------- the API


def _note_commits(path: str) -> None:
    """Instrumentation of the API process: each change that makes deliveries notes, right
    after its transaction commits, the time and the ``updated_date`` it wrote (which the
    receivers see in the payload)."""
    from cvat_ray.storage import changes
    from cvat_ray.storage.db import after_commit
    from cvat_ray.storage.webhooks import outbox

    out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process' life)
    lock = threading.Lock()

    def consume(session: Any, change: Any) -> None:
        stamp = str((change.subject or {}).get("updated_date", ""))

        def note() -> None:
            now = time.time()
            with lock:
                out.write(f"{stamp}\t{now}\n")

        after_commit(session, note)  # before the consumer's own hook: it wakes the sender
        outbox.consume(session, change)

    changes.register(outbox.CONSUMER, consume)


def app() -> Any:
    """The uvicorn factory (``--factory bench.webhooks:app``). With ``--sender ray`` the API
    process joins the bench's Ray cluster and its commits wake the ``webhook-sender`` actor
    (as an API replica's do); background requests still run on its threads."""
    from cvat_ray.serve_apps.app import build_app

    if os.environ.get("BENCH_WEBHOOK_SENDER") != "ray":
        application = build_app()
        _note_commits(os.environ["BENCH_COMMITS_FILE"])
        return application
    import ray

    from cvat_ray.actors.launcher import ThreadLauncher
    from cvat_ray.actors.registry import Registry, default_registry
    from cvat_ray.actors.runners import _wake_service_after_commits
    from cvat_ray.cluster.names import NAMESPACE
    from cvat_ray.cluster.settings import get_settings
    from cvat_ray.storage.db import Database

    ray.init(address=os.environ["RAY_ADDRESS"], namespace=NAMESPACE, log_to_driver=False)
    settings = get_settings()
    db = Database(settings.database_url, pool_size=settings.database.pool_size)
    every = default_registry()
    operations = Registry([every.operation(t) for t in every.types()])  # no sender thread
    application = build_app(settings, db, ThreadLauncher(settings, db, operations))
    application.state.waker = _wake_service_after_commits(db, "webhook-sender", settings)
    _note_commits(os.environ["BENCH_COMMITS_FILE"])
    return application


def _start_ray(workdir: Path, env: dict[str, str]) -> tuple[dict[str, str], Any]:
    """A local Ray head and the ``webhook-sender`` actor on it: (env to join it, launcher)."""
    from cvat_ray.actors.runners import RayLauncher
    from cvat_ray.cluster import ray_compat, runtime
    from cvat_ray.cluster.names import NAMESPACE
    from cvat_ray.cluster.settings import Settings
    from cvat_ray.storage.db import Database

    settings = Settings()
    token = runtime.configure_auth(settings)
    info = ray_compat.init_local_head(
        namespace=NAMESPACE,
        num_cpus=4,
        include_dashboard=False,
        temp_dir=Path("/tmp") / f"cvwb-{uuid.uuid4().hex[:6]}",
        agent_listen_port=runtime.free_port(),
    )
    join = {"RAY_ADDRESS": info.address_info["gcs_address"], "BENCH_WEBHOOK_SENDER": "ray"}
    if token is not None:
        join |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    actor_env = {k: v for k, v in env.items() if k.startswith("CVAT_RAY_")}
    launcher = RayLauncher(
        settings, Database(settings.database_url), runtime_env={"env_vars": actor_env}
    )
    import ray

    ray.get(launcher.service_handle("webhooks").ping.remote(), timeout=300)
    return join, launcher


def _prepare(url: str) -> tuple[str, list[int], list[int]]:
    """A user, 20 projects each with a task of one job: (token, task ids, job ids)."""
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.migrate import upgrade
    from cvat_ray.storage.models import Job, Project, Task
    from cvat_ray.storage.services.authn import start_session
    from cvat_ray.storage.services.task_data import FrameInfo, attach_data
    from cvat_ray.storage.services.users import create_user

    db = Database(url)
    upgrade(db.engine)
    tasks: list[int] = []
    jobs: list[int] = []
    with db.session() as session:
        user = create_user(session, username=f"wh{uuid.uuid4().hex[:6]}", password="Bench-pass-1")
        for i in range(WEBHOOKS):
            project = Project(name=f"p{i}", owner_id=user.id)
            session.add(project)
            session.flush()
            task = Task(name=f"t{i}", owner_id=user.id, project_id=project.id, segment_size=10)
            session.add(task)
            session.flush()
            attach_data(session, task, [FrameInfo(f"{f}.jpg", 64, 48) for f in range(10)])
            tasks.append(task.id)
            job = session.query(Job).filter_by(task_id=task.id).one()
            jobs.append(job.id)
        key = start_session(session, user, 24 * 3600, "token").key
    db.dispose()
    return key, tasks, jobs


async def _drive(
    base: str, token: str, tasks: list[int], jobs: list[int], count: int, concurrency: int
) -> tuple[float, int]:
    """``count`` updates (alternately a task's name, a job's state): (seconds, errors)."""
    import httpx

    errors = 0
    states = ("new", "in progress")
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            k = i % len(tasks)
            if i % 2:
                r = await client.patch(f"/api/tasks/{tasks[k]}", json={"name": f"t{k}-{i}"})
            else:
                r = await client.patch(f"/api/jobs/{jobs[k]}", json={"state": states[i // 2 % 2]})
            if r.status_code != 200:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Token {token}"}, limits=limits, timeout=60
    ) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, errors


def _set_hooks(base: str, token: str, ids: list[int], active: bool) -> None:
    import httpx

    with httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}) as client:
        for webhook_id in ids:
            r = client.patch(f"/api/webhooks/{webhook_id}", json={"is_active": active})
            r.raise_for_status()


def _drain(db: Any, timeout: float = 900) -> None:
    """Wait until no delivery is pending."""
    from cvat_ray.storage.models import WebhookDelivery

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.session() as session:
            if not session.query(WebhookDelivery).filter_by(status="pending").count():
                return
        time.sleep(0.2)
    raise RuntimeError("deliveries still pending")


def _backlog(db: Any, reads: list[dict[str, Any]], count: int) -> float:
    """``count`` task updates recorded in one transaction (through the hook, as a service
    records them); the time of the commit."""
    from cvat_ray.storage.changes import Actor, Change, Scope, record
    from cvat_ray.storage.webhooks import outbox

    outbox.install()
    with db.session() as session:
        for i in range(count):
            before = reads[i % len(reads)]
            after = {**before, "name": f"backlog-{i}"}
            scope = Scope(project_id=before["project_id"], task_id=before["id"])
            record(session, Change("update", "task", after, before, scope, Actor()))
    return time.time()


def _round(number: int, mode: str, began: float, rate: float) -> None:
    """A round's updates/s, with its wall-clock span (to line up with a CPU sampler)."""
    print(
        f"round {number + 1} webhooks {mode}: {rate:.0f} updates/s "
        f"({began:.1f} -> {time.time():.1f})",
        flush=True,
    )


def _percentile(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--updates", type=int, default=10_000, help="with webhooks on")
    parser.add_argument("--quick", action="store_true", help="a short run (500 updates)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument(
        "--sender",
        choices=("thread", "ray"),
        default="thread",
        help="the sender as a thread of the API process, or the webhook-sender Ray actor",
    )
    args = parser.parse_args()
    updates = 500 if args.quick else args.updates
    per_round = max(1, updates // args.rounds)

    workdir = Path(tempfile.mkdtemp(prefix="cvat-whbench-"))
    url = args.database_url or f"sqlite:///{workdir / 'cvat.db'}"
    env = {
        **os.environ,
        "CVAT_RAY_DATA_DIR": str(workdir),
        "CVAT_RAY_DATABASE__URL": url,
        "CVAT_RAY_BACKGROUND__LAUNCHER": "inprocess",
        "CVAT_RAY_OUTBOUND__ALLOWLIST": "127.0.0.1/32",
        # the backlog is written by this process: the API's sender finds it by sweeping
        "CVAT_RAY_WEBHOOKS__SWEEP_INTERVAL_S": "0.2",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "BENCH_COMMITS_FILE": str(workdir / "commits.tsv"),
    }
    os.environ.update({k: v for k, v in env.items() if k.startswith("CVAT_RAY_")})
    token, tasks, jobs = _prepare(url)
    launcher = None
    if args.sender == "ray":
        join, launcher = _start_ray(workdir, env)
        env |= join

    ctx = mp.get_context("spawn")
    ports_q, out_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    receivers = ctx.Process(target=_receivers, args=(WEBHOOKS, ports_q, stop, out_q))
    receivers.start()
    ports: list[int] = ports_q.get(timeout=60)

    from cvat_ray.cluster import runtime

    port = runtime.free_port()
    base = f"http://127.0.0.1:{port}"
    api = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.webhooks:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env=env,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/server/about", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.3)
        hook_ids = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}) as client:
            projects = [client.get(f"/api/tasks/{t}").json()["project_id"] for t in tasks]
            for project_id, rport in zip(projects, ports, strict=True):
                r = client.post(
                    "/api/webhooks",
                    json={
                        "target_url": f"http://127.0.0.1:{rport}/hook",
                        "type": "project",
                        "project_id": project_id,
                        "events": ["update:task", "update:job"],
                        "secret": "bench",
                        "is_active": False,
                    },
                )
                r.raise_for_status()
                hook_ids.append(r.json()["id"])
        from cvat_ray.storage.db import Database
        from cvat_ray.storage.models import WebhookDelivery

        db = Database(url)
        # warm up (connections, caches), webhooks off
        asyncio.run(_drive(base, token, tasks, jobs, 200, args.concurrency))
        off_s = on_s = 0.0
        errors = 0
        on_started: float | None = None
        for number in range(args.rounds):
            began = time.time()
            seconds, err = asyncio.run(
                _drive(base, token, tasks, jobs, per_round, args.concurrency)
            )
            off_s, errors = off_s + seconds, errors + err
            _round(number, "off", began, per_round / seconds)
            _set_hooks(base, token, hook_ids, True)
            began = time.time()
            on_started = on_started or began
            seconds, err = asyncio.run(
                _drive(base, token, tasks, jobs, per_round, args.concurrency)
            )
            on_s, errors = on_s + seconds, errors + err
            _round(number, "on", began, per_round / seconds)
            _drain(db)  # deactivating a webhook makes its pending deliveries dead
            _set_hooks(base, token, hook_ids, False)
        expected = per_round * args.rounds
        # every delivery of the "on" rounds must arrive
        _drain(db)
        # the sender alone: a backlog of `updates` deliveries committed at once
        _set_hooks(base, token, hook_ids, True)
        with httpx.Client(base_url=base, headers={"Authorization": f"Token {token}"}) as client:
            reads = [client.get(f"/api/tasks/{t}").json() for t in tasks]
        backlog_at = _backlog(db, reads, updates)
        _drain(db)
        with db.session() as session:
            by_status = {
                s: session.query(WebhookDelivery).filter_by(status=s).count()
                for s in ("pending", "delivered", "dead")
            }
        db.dispose()
    finally:
        api.terminate()
        api.wait(timeout=30)
        stop.set()
        if launcher is not None:
            import ray

            launcher.kill()
            ray.shutdown()
    every: list[tuple[str, str, str, float]] = out_q.get(timeout=60)
    receivers.join(timeout=30)
    hits = [h for h in every if h[3] < backlog_at]
    drained = [h for h in every if h[3] >= backlog_at]
    drain_rate = (
        len(drained) / (max(h[3] for h in drained) - backlog_at) if drained else float("nan")
    )

    commits: dict[str, float] = {}
    with open(workdir / "commits.tsv") as lines:
        for line in lines:
            stamp, _, at = line.rstrip("\n").partition("\t")
            commits[stamp] = float(at)
    latencies, upper = [], []
    for _uid, _event, updated, arrived in hits:
        if updated in commits:
            latencies.append((arrived - commits[updated]) * 1000)
        if updated:
            written = datetime.fromisoformat(updated.replace("Z", "+00:00")).timestamp()
            upper.append((arrived - written) * 1000)
    unique = len({h[0] for h in hits})
    span = max(h[3] for h in hits) - (on_started or 0) if hits else float("nan")
    # deliveries/s over the time the "on" rounds and the draining took (the "off" rounds in
    # between are not counted out, so this understates the sender's rate)
    rate = unique / span if span else float("nan")
    off_rps = per_round * args.rounds / off_s
    on_rps = per_round * args.rounds / on_s
    print(
        f"sender: {args.sender}, database: {url.split(':')[0]}, updates per mode: {expected}, webhooks: {WEBHOOKS}, "
        f"concurrency: {args.concurrency}, API errors: {errors}"
    )
    print(f"deliveries: {by_status}, received: {len(hits)} ({unique} distinct ids)")
    print(f"deliveries/s while the API updates (bounded by the update rate): {rate:.0f}")
    print(
        f"deliveries/s draining a backlog of {updates} (the sender alone): {drain_rate:.0f}"
        f" ({len(drained)} received)"
    )
    print(
        f"commit->receive latency ms ({len(latencies)} timed): p50 "
        f"{statistics.median(latencies):.1f}, p99 {_percentile(latencies, 99):.1f}, "
        f"max {max(latencies):.1f}"
    )
    print(
        f"write->receive latency ms (from updated_date, before the commit): p50 "
        f"{statistics.median(upper):.1f}, p99 {_percentile(upper, 99):.1f}"
    )
    print(
        f"API updates/s: webhooks off {off_rps:.0f}, on {on_rps:.0f}, ratio on/off "
        f"{on_rps / off_rps:.2f}"
    )
    ok = unique == expected and len({h[0] for h in drained}) == updates
    return 0 if ok and by_status["dead"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
