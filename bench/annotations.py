"""Annotations at scale: PUT, GET and PATCH of 10k..1M shapes through Ray Serve and in-process.

For each database (PostgreSQL, SQLite) this starts its own local Ray head (own temp dir,
dashboard off), deploys the real API (one replica), creates a task with one job over 1000
frames, and for each set (N rectangles; a mixed set of rectangles with attributes, polygons,
points and tracks of 10 keyframes) measures, over ``--rounds`` rounds:

- ``PUT``   replace the job's annotations with N objects,
- ``GET``   read them back (time to the last byte),
- ``PATCH`` ``action=create`` of N/10 more objects,

through the full HTTP path (client in this process, server in the Serve replica), the API
replica's peak RSS growth during each operation (sampled from /proc), and the same three
operations through the service layer in this process (no HTTP, no Serve). ratio = HTTP time /
in-process time: what the HTTP and Serve layers add.

    python bench/annotations.py [--sizes 10000 100000 1000000] [--databases postgresql sqlite]
                                [--rounds 3] [--no-mixed] [--pg-url URL]

Goals on a 2-core machine with PostgreSQL: 100k PUT and GET <= 1 s each (p50); 1M GET <= 5 s
with the server's memory growth <= 1 GB.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAMES = 1000
LABELS = [
    {"name": "car", "type": "any"},
    {
        "name": "person",
        "attributes": [
            {"name": "pose", "mutable": True, "input_type": "select", "values": ["up", "down"]},
            {"name": "age", "mutable": False, "input_type": "number", "values": ["0", "99", "1"]},
        ],
    },
]


# ---------------------------------------------------------------------------------- payloads


def rectangles(n: int, label: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "type": "rectangle",
            "frame": (start + i) % FRAMES,
            "label_id": label,
            "points": [i % 500 + 0.5, i % 300 + 0.25, i % 500 + 40.5, i % 300 + 60.75],
        }
        for i in range(n)
    ]


def mixed(n: int, labels: dict[str, Any], start: int = 0) -> dict[str, Any]:
    """n objects: 50% rectangles with attributes, 30% polygons, 10% points, 10% as tracks
    of 10 keyframes (n/100 tracks)."""
    person = labels["person"]
    pose, age = (a["id"] for a in person["attributes"])
    car = labels["car"]["id"]
    shapes: list[dict[str, Any]] = []
    for i in range(n * 5 // 10):
        shapes.append(
            {
                "type": "rectangle",
                "frame": (start + i) % FRAMES,
                "label_id": person["id"],
                "points": [i % 500, i % 300, i % 500 + 30.5, i % 300 + 70.25],
                "attributes": [
                    {"spec_id": pose, "value": "up" if i % 2 else "down"},
                    {"spec_id": age, "value": str(i % 99)},
                ],
            }
        )
    for i in range(n * 3 // 10):
        x, y = i % 500, i % 300
        shapes.append(
            {
                "type": "polygon",
                "frame": (start + i) % FRAMES,
                "label_id": car,
                "points": [x, y, x + 10, y, x + 15, y + 8, x + 10, y + 16, x, y + 16.5],
            }
        )
    for i in range(n // 10):
        shapes.append(
            {
                "type": "points",
                "frame": (start + i) % FRAMES,
                "label_id": car,
                "points": [i % 500, i % 300, i % 500 + 2, i % 300 + 2],
            }
        )
    tracks = []
    for i in range(n // 100):
        first = (start + i * 7) % (FRAMES - 100)
        tracks.append(
            {
                "frame": first,
                "label_id": car,
                "shapes": [
                    {
                        "type": "rectangle",
                        "frame": first + k * 10,
                        "points": [k * 5, k * 3, k * 5 + 50, k * 3 + 40],
                        "outside": k == 9,
                    }
                    for k in range(10)
                ],
            }
        )
    return {"shapes": shapes, "tracks": tracks}


# ---------------------------------------------------------------------------------- HTTP


class Http:
    def __init__(self, base: str, token: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, int]:
        """(status, bytes read); reads the body to the end without keeping it."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            conn.request(method, path, body=body, headers=self.headers)
            response = conn.getresponse()
            size = 0
            while chunk := response.read(1 << 20):
                size += len(chunk)
            if response.status >= 300:
                raise RuntimeError(f"{method} {path}: {response.status}")
            return response.status, size
        finally:
            conn.close()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def find_replica_pid() -> int:
    """The API replica: a descendant of this process (our Ray head) named after it."""
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if b"ServeReplica" in cmd and b"ApiIngress" in cmd:
            return pid
    raise RuntimeError("API replica process not found")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples a process's RSS every 20 ms while in use; ``growth`` = peak - start (MB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.growth = 0.0
        self.peak = 0.0

    def __enter__(self) -> PeakRss:
        self._stop = threading.Event()
        self._start = rss_mb(self.pid)
        self._peak = self._start

        def sample() -> None:
            while not self._stop.wait(0.02):
                self._peak = max(self._peak, rss_mb(self.pid))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, rss_mb(self.pid))
        self.growth = self._peak - self._start
        self.peak = self._peak


# ---------------------------------------------------------------------------------- runs


@dataclass
class Result:
    http: list[float] = field(default_factory=list)
    local: list[float] = field(default_factory=list)
    growth: list[float] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)
    bytes: int = 0


def prepare(url: str) -> tuple[str, int, int, dict[str, Any]]:
    """A user (session key), a task with one job over FRAMES frames, its labels."""
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.migrate import upgrade
    from cvat_ray.storage.models import Job, Task
    from cvat_ray.storage.schemas.labels import LabelWrite
    from cvat_ray.storage.services.authn import start_session
    from cvat_ray.storage.services.labels import LabelOwner, create_labels, read_labels
    from cvat_ray.storage.services.task_data import FrameInfo, attach_data
    from cvat_ray.storage.services.users import create_user

    db = Database(url)
    upgrade(db.engine)
    with db.session() as session:
        user = create_user(
            session,
            username=f"bench{uuid.uuid4().hex[:6]}",
            password="Bench-pass-1",
            groups=("admin",),
            is_superuser=True,
        )
        task = Task(name="bench annotations", owner_id=user.id)
        session.add(task)
        session.flush()
        create_labels(
            session, LabelOwner(task_id=task.id), [LabelWrite.model_validate(x) for x in LABELS]
        )
        attach_data(session, task, [FrameInfo(f"{i}.jpg", 1920, 1080) for i in range(FRAMES)])
        from sqlalchemy import select

        from cvat_ray.storage.models import Label

        job_id = session.scalars(select(Job.id).where(Job.task_id == task.id)).one()
        labels = read_labels(
            session,
            session.scalars(
                select(Label).where(Label.task_id == task.id, Label.parent_id.is_(None))
            ).all(),
        )
        key = start_session(session, user, 24 * 3600, "token").key
    db.dispose()
    return key, task.id, job_id, {lbl.name: lbl.model_dump() for lbl in labels}


def local_ops(url: str, key: str, job_id: int) -> dict[str, Callable[[bytes], Any]]:
    """The same operations through the service layer in this process."""
    from cvat_ray.iam.authn import Credentials
    from cvat_ray.iam.principal import OrgContext
    from cvat_ray.iam.throttle import LoginThrottle, MemoryStore
    from cvat_ray.storage.context import RequestContext
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.services import annotations as service
    from cvat_ray.storage.services.authn import authenticate

    db = Database(url)
    throttle = LoginThrottle(MemoryStore())

    def run(fn: Callable[..., Any], *args: Any) -> Any:
        with db.session() as session:
            principal = authenticate(
                session, Credentials(method="PATCH", authorization=f"Token {key}"), throttle
            )
            assert principal is not None
            ctx = RequestContext(principal=principal, org=OrgContext(), base_url="http://x")
            return fn(session, ctx, *args)

    def get(_: bytes) -> int:
        with db.session() as session:
            principal = authenticate(
                session, Credentials(method="GET", authorization=f"Token {key}"), throttle
            )
            assert principal is not None
            ctx = RequestContext(principal=principal, org=OrgContext(), base_url="http://x")
            return sum(len(c) for c in service.job_annotations(session, ctx, job_id))

    return {
        "PUT": lambda body: run(service.put_job_annotations, job_id, body),
        "GET": get,
        "PATCH": lambda body: run(service.patch_job_annotations, job_id, "create", body),
    }


def bench_database(args: argparse.Namespace, database: str, workdir: Path) -> list[tuple[Any, ...]]:
    import msgspec

    from cvat_ray.cluster import runtime
    from cvat_ray.cluster.settings import get_settings, reset_settings_cache

    if database == "postgresql":
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        name = f"cvat_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.pg_url).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{workdir / 'bench.db'}"
    os.environ["CVAT_RAY_DATABASE__URL"] = url
    reset_settings_cache()
    settings = get_settings()
    port = runtime.free_port()
    settings.server.port = port
    os.environ["CVAT_RAY_SERVER__PORT"] = str(port)
    key, _task_id, job_id, labels = prepare(url)
    rows: list[tuple[Any, ...]] = []
    runtime.start(settings)
    try:
        from cvat_ray.serve_apps.deploy import deploy

        deploy(settings)
        client = Http(f"http://{settings.server.host}:{port}", key)
        pid = find_replica_pid()
        local = local_ops(url, key, job_id)
        path = f"/api/jobs/{job_id}/annotations/"
        client.request("GET", path)  # warm up
        BASELINE[database] = rss_mb(pid)
        print(f"({database}: API replica RSS at start {BASELINE[database]:.0f} MB)", flush=True)
        sets = [("rect", n) for n in args.sizes] + (
            [("mixed", n) for n in args.sizes] if args.mixed else []
        )
        for kind, n in sets:
            if kind == "rect":
                car = labels["car"]["id"]
                put = msgspec.json.encode({"shapes": rectangles(n, car)})
                patch = msgspec.json.encode({"shapes": rectangles(n // 10, car, 7)})
            else:
                put = msgspec.json.encode(mixed(n, labels))
                patch = msgspec.json.encode(mixed(n // 10, labels, 7))
            results = {op: Result() for op in ("PUT", "GET", "PATCH")}
            for _ in range(args.rounds):
                for op, body in (("PUT", put), ("GET", b""), ("PATCH", patch)):
                    target = path + ("?action=create" if op == "PATCH" else "")
                    with PeakRss(pid) as rss:
                        started = time.perf_counter()
                        _, size = client.request(op, target, body or None)
                        seconds = time.perf_counter() - started
                    results[op].http.append(seconds)
                    results[op].growth.append(rss.growth)
                    results[op].peak.append(rss.peak)
                    results[op].bytes = size
                for op, body in (("PUT", put), ("GET", b""), ("PATCH", patch)):
                    started = time.perf_counter()
                    local[op](body)
                    seconds = time.perf_counter() - started
                    results[op].local.append(seconds)
            for op, r in results.items():
                http_p50 = statistics.median(r.http)
                local_p50 = statistics.median(r.local)
                row = (
                    database, kind, n, op, http_p50, local_p50, http_p50 / local_p50,
                    max(r.growth), max(r.peak), r.bytes / 1e6,
                )  # fmt: skip
                rows.append(row)
                print(_format(row), flush=True)
    finally:
        runtime.stop()
        if database == "postgresql":
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    return rows


# The API replica's RSS after deploy and a warm-up request, per database.
BASELINE: dict[str, float] = {}

HEADER = (
    f"{'database':<11}{'set':<6}{'objects':>9}{'op':>7}{'HTTP p50 s':>12}{'in-proc s':>11}"
    f"{'ratio':>7}{'RSS +MB':>9}{'peak MB':>9}{'resp MB':>9}"
)


def _format(row: tuple[Any, ...]) -> str:
    database, kind, n, op, http_p50, local_p50, ratio, growth, peak, size = row
    return (
        f"{database:<11}{kind:<6}{n:>9}{op:>7}{http_p50:>12.3f}{local_p50:>11.3f}"
        f"{ratio:>7.2f}{growth:>9.0f}{peak:>9.0f}{size:>9.1f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--databases", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-mixed", dest="mixed", action="store_false")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "CVAT_RAY_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL database whose role may create databases",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cvat-bench-ann-"))
    os.environ["CVAT_RAY_DATA_DIR"] = str(workdir)
    os.environ["CVAT_RAY_RAY__INCLUDE_DASHBOARD"] = "false"
    os.environ["CVAT_RAY_RAY__TEMP_DIR"] = f"/tmp/cvb-{uuid.uuid4().hex[:6]}"
    os.environ["CVAT_RAY_API__MIN_REPLICAS"] = "1"
    os.environ["CVAT_RAY_API__MAX_REPLICAS"] = "1"
    print(
        f"Job of {FRAMES} frames, 1 API replica; HTTP from this process, median of "
        f"{args.rounds} rounds; PATCH creates N/10 more; RSS +MB = API replica peak growth\n"
    )
    print(HEADER, flush=True)
    rows: list[tuple[Any, ...]] = []
    for database in args.databases:
        rows += bench_database(args, database, workdir)
    print("\n" + HEADER)
    for row in rows:
        print(_format(row))
    goals = {(r[0], r[1], r[2], r[3]): r for r in rows}
    print("\nGoals (PostgreSQL):")
    for op, n, limit in (("PUT", 100_000, 1.0), ("GET", 100_000, 1.0), ("GET", 1_000_000, 5.0)):
        found = goals.get(("postgresql", "rect", n, op))
        if found is None:
            continue
        row = found
        # Conservative: the peak during the GET over the replica's RSS at start, so memory
        # kept from the PUTs before it counts too.
        growth = row[8] - BASELINE.get("postgresql", 0.0)
        extra = f", replica peak - start {growth:.0f} MB (goal <= 1024)" if n == 1_000_000 else ""
        verdict = "met" if row[4] <= limit and (n < 1_000_000 or growth <= 1024) else "MISSED"
        print(f"  {n:>9} {op:<5} {row[4]:.3f} s (goal <= {limit:.0f} s){extra}: {verdict}")
    print(
        "RSS +MB: the replica's peak during the operation minus its RSS just before it (after"
        " the previous operation); peak MB: the replica's absolute peak."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
