"""Cost of authorization: one policy decision, and a policy-filtered list.

1. One decision in-process: ``cvat_ray.iam.authz.authorize`` (input building + the Rego engine) for a
   mix of scopes and resources, p50/p99 over many calls; the goal is <= 1 ms p50.
2. ``GET /api/tasks`` with 10,000 tasks spread over 100 organizations, through the FastAPI app
   in-process (no network, so the difference is ours): the caller is a worker in one
   organization (assigned to some tasks) and a maintainer in another. Each list is measured
   with the policy filter and with the engine bypassed (the same request, every task of the
   organization visible) in the same run; ratio = filtered / bypassed, goal <= 1.2.

    python bench/iam.py [--database-url URL] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text

from cvat_ray.cluster.settings import Settings
from cvat_ray.iam import authz
from cvat_ray.iam.authz import Resource, authorize
from cvat_ray.iam.principal import OrgContext, Principal

ORGS, TASKS_PER_ORG = 100, 100


def percentile(data: list[float], q: float) -> float:
    ordered = sorted(data)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def bench_decisions(n: int) -> tuple[float, float]:
    worker = Principal(
        user_id=7,
        username="w",
        groups=("worker",),
        is_superuser=False,
        auth="session",
        memberships={1: "worker", 2: "maintainer"},
    )
    user = Principal(user_id=8, username="u", groups=("user",), is_superuser=False, auth="session")
    cases: list[tuple[Principal, str, Resource]] = [
        (user, "view", Resource(kind="task", id=1, owner_id=8, facts={"project": None})),
        (user, "update:desc", Resource(kind="task", id=1, owner_id=9, assignee_id=8)),
        (worker, "view", Resource(kind="job", id=3, assignee_id=7, organization_id=1)),
        (worker, "update:state", Resource(kind="job", id=3, assignee_id=7, organization_id=1)),
        (worker, "delete", Resource(kind="project", id=4, owner_id=1, organization_id=2)),
        (user, "create", Resource(kind="project")),
    ]
    org = OrgContext()
    for principal, scope, resource in cases:  # warm up (compiles the policies)
        with contextlib.suppress(Exception):
            authorize(principal, org, scope, resource)
    timings = []
    for i in range(n):
        principal, scope, resource = cases[i % len(cases)]
        start = time.perf_counter()
        with contextlib.suppress(Exception):
            authorize(principal, org, scope, resource)
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings), percentile(timings, 99)


def seed(db: Any) -> tuple[str, str, str]:
    """100 organizations x 100 tasks; returns (session key, worker org slug, maintainer org slug)."""
    from cvat_ray.storage.models import Membership, Organization, Task, utcnow
    from cvat_ray.storage.services.authn import start_session
    from cvat_ray.storage.services.users import create_user

    suffix = uuid.uuid4().hex[:6]
    with db.session() as session:
        owner = create_user(session, username=f"owner{suffix}", password="Bench-pass-1")
        me = create_user(session, username=f"me{suffix}", password="Bench-pass-1", groups=("user",))
        now = utcnow()
        orgs = []
        for i in range(ORGS):
            org = Organization(slug=f"o{suffix}{i}"[:16], name=f"org {i}", owner_id=owner.id)
            session.add(org)
            orgs.append(org)
        session.flush()
        session.execute(
            insert(Membership),
            [
                {
                    "user_id": me.id,
                    "organization_id": orgs[0].id,
                    "role": "worker",
                    "is_active": True,
                },
                {
                    "user_id": me.id,
                    "organization_id": orgs[1].id,
                    "role": "maintainer",
                    "is_active": True,
                },
            ],
        )
        rows = []
        for i, org in enumerate(orgs):
            for j in range(TASKS_PER_ORG):
                mine = j % 5 == 0
                rows.append(
                    {
                        "name": f"task {i}-{j}",
                        "owner_id": owner.id,
                        "assignee_id": me.id if mine else None,
                        "organization_id": org.id,
                        "segment_size": 0,
                        "created_date": now,
                        "updated_date": now,
                    }
                )
        session.execute(insert(Task), rows)
        key = start_session(session, me, 3600, "token").key
        return key, orgs[0].slug, orgs[1].slug


async def call(app: Any, path: str, query: str, cookie: str) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"cookie", f"sessionid={cookie}".encode()), (b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status: int = sent[0]["status"]
    return status


async def measure(app: Any, query: str, cookie: str, n: int) -> float:
    for _ in range(20):
        assert await call(app, "/api/tasks", query, cookie) == 200
    timings = []
    for _ in range(n):
        start = time.perf_counter()
        await call(app, "/api/tasks", query, cookie)
        timings.append((time.perf_counter() - start) * 1000)
    return statistics.median(timings)


class Bypass:
    """The engine bypassed: every decision allows, every list filter is "all" (the request's
    organization still restricts lists, as without any policy)."""

    def allow(self, package: str, data: Any) -> bool:
        return True

    def filter(self, package: str, data: Any) -> Any:
        return {"op": "all"}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--database-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--decisions", type=int, default=20000)
    args = parser.parse_args()

    p50, p99 = bench_decisions(args.decisions)
    print(
        f"one decision (authorize, Rego in-process): p50 {p50:.3f} ms, p99 {p99:.3f} ms (goal p50 <= 1 ms)\n"
    )

    from cvat_ray.serve_apps.app import build_app
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.migrate import upgrade

    url = args.database_url
    scratch = None
    if url.startswith("postgresql"):
        # A database of its own, dropped at the end.
        from sqlalchemy import create_engine
        from sqlalchemy.engine import make_url

        scratch = f"cvat_bench_iam_{uuid.uuid4().hex[:8]}"
        admin = create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{scratch}"'))
        url = make_url(url).set(database=scratch).render_as_string(hide_password=False)
    elif url == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    db = Database(url)
    try:
        upgrade(db.engine)
        cookie, worker_org, maintainer_org = seed(db)
        if db.dialect == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        app = build_app(Settings(data_dir=Path(tempfile.mkdtemp())), db)
        print(
            f"GET /api/tasks, {ORGS * TASKS_PER_ORG:,} tasks in {ORGS} organizations, "
            f"{db.dialect}, in-process, median of {args.requests} requests"
        )
        print(f"{'list':<34}{'filtered ms':>12}{'bypassed ms':>12}{'ratio':>8}")
        for label, query in (
            ("worker in an org (assigned 20%)", f"org={worker_org}"),
            ("maintainer in an org (all)", f"org={maintainer_org}"),
            ("no org: everything assigned", ""),
            ("worker org, page 5", f"org={worker_org}&page=2&page_size=5"),
        ):
            filtered = asyncio.run(measure(app, query, cookie, args.requests))
            original = authz.engine
            authz.engine = Bypass  # type: ignore[assignment]
            try:
                raw = asyncio.run(measure(app, query, cookie, args.requests))
            finally:
                authz.engine = original
            print(f"{label:<34}{filtered:>12.2f}{raw:>12.2f}{filtered / raw:>8.2f}")
        print("\nratio = filtered / bypassed (goal <= 1.2)")
    finally:
        db.dispose()
        if scratch:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
