"""API latency through Ray Serve: ``GET /api/tasks/{id}`` next to a trivial Serve endpoint.

Starts its own local Ray head (own temp dir, dashboard off), deploys the real API app and a
trivial FastAPI app with the same replica options behind the same Serve proxy, creates a
user and a task with 3 jobs, then loads both endpoints from a separate process.

    python bench/api_latency.py [--seconds 10] [--concurrency 1 8] [--database-url URL]

Prints p50/p99 latency and requests/s for each, and the figure the issue is judged by:
ratio = API req/s / trivial req/s (goal >= 0.7).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import LoadResult, load


def _prepare_database(settings) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.migrate import upgrade
    from cvat_ray.storage.models import Task
    from cvat_ray.storage.services.authn import start_session
    from cvat_ray.storage.services.task_data import FrameInfo, attach_data
    from cvat_ray.storage.services.users import create_user

    db = Database(settings.database_url)
    upgrade(db.engine)
    with db.session() as session:
        user = create_user(
            session, username=f"bench{uuid.uuid4().hex[:6]}", password="Bench-pass-1"
        )
        task = Task(name="bench task", owner_id=user.id, segment_size=10)
        session.add(task)
        session.flush()
        attach_data(session, task, [FrameInfo(f"{i}.jpg", 640, 480) for i in range(30)])
        key = start_session(session, user, 3600, "token").key
        task_id = task.id
    db.dispose()
    return key, task_id


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5, help="per run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per endpoint")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cvat-bench-"))
    os.environ["CVAT_RAY_DATA_DIR"] = str(workdir)
    if args.database_url:
        os.environ["CVAT_RAY_DATABASE__URL"] = args.database_url
    os.environ["CVAT_RAY_RAY__INCLUDE_DASHBOARD"] = "false"
    os.environ["CVAT_RAY_RAY__TEMP_DIR"] = f"/tmp/cvb-{uuid.uuid4().hex[:6]}"
    os.environ["CVAT_RAY_API__MIN_REPLICAS"] = "1"
    os.environ["CVAT_RAY_API__MAX_REPLICAS"] = "1"
    from cvat_ray.cluster import runtime
    from cvat_ray.cluster.settings import get_settings

    settings = get_settings()
    port = args.port or runtime.free_port()
    settings.server.port = port
    os.environ["CVAT_RAY_SERVER__PORT"] = str(port)
    key, task_id = _prepare_database(settings)

    runtime.start(settings)
    try:
        from fastapi import FastAPI
        from ray import serve

        from cvat_ray.serve_apps.deploy import deploy

        deploy(settings)
        trivial = FastAPI()

        @trivial.get("/tasks/{task_id}")
        def trivial_task(task_id: int) -> dict[str, object]:
            return {"id": task_id, "name": "bench task", "size": 30}

        trivial_app = serve.deployment(
            serve.ingress(trivial)(type("TrivialIngress", (), {})),
            name="Trivial",
            ray_actor_options={"num_cpus": settings.api.num_cpus},
            max_ongoing_requests=settings.api.max_ongoing_requests,
            logging_config={"enable_access_log": False},
        ).bind()  # type: ignore[attr-defined]
        serve.run(trivial_app, name="trivial", route_prefix="/trivial")

        base = f"http://{settings.server.host}:{port}"
        cookie = {"Cookie": f"sessionid={key}"}
        targets = {
            "trivial": (f"{base}/trivial/tasks/{task_id}", {}),
            "api": (f"{base}/api/tasks/{task_id}", cookie),
        }
        for url, headers in targets.values():  # warm up both
            load(url, headers, 2, 2)
        print(
            f"Ray Serve, 1 replica each ({settings.api.num_cpus} CPU), {args.rounds} rounds of "
            f"{args.seconds:.0f} s per endpoint and concurrency,"
        )
        print(
            f"database {settings.database_url.split(':')[0]}, {settings.api.db_threads} DB thread(s) "
            "per replica; load from a separate process\n"
        )
        print(
            f"{'endpoint':<10}{'conc':>5}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}"
            f"{'app p50':>10}{'errors':>8}"
        )
        for concurrency in args.concurrency:
            # Rounds alternate the two endpoints so drifting load on this shared machine hits
            # both alike; req/s is the median of the rounds, latencies are pooled.
            runs: dict[str, list[LoadResult]] = {name: [] for name in targets}
            for _ in range(args.rounds):
                for name, (url, headers) in targets.items():
                    runs[name].append(load(url, headers, concurrency, args.seconds))
            rps: dict[str, float] = {}
            for name, results in runs.items():
                pooled = LoadResult(
                    requests=sum(r.requests for r in results),
                    errors=sum(r.errors for r in results),
                    seconds=sum(r.seconds for r in results),
                    latencies_ms=[x for r in results for x in r.latencies_ms],
                    server_ms=[x for r in results for x in r.server_ms],
                )
                rps[name] = statistics.median(r.rps for r in results)
                print(
                    f"{name:<10}{concurrency:>5}{rps[name]:>10.1f}{pooled.p50:>10.2f}"
                    f"{pooled.p99:>10.2f}{pooled.server_p50:>10.2f}{pooled.errors:>8}"
                )
            ratio = rps["api"] / rps["trivial"]
            print(
                f"{'ratio':<10}{concurrency:>5}{ratio:>10.2f}   (api req/s / trivial req/s; goal >= 0.7)\n"
            )
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
