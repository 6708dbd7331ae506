"""The webhook sender's own CPU at a trickle of commits, paced against unpaced.

This process commits ``--rate`` task updates a second for ``--seconds`` (each to one of 20
organization webhooks on loopback receivers, in another process), through the outbox as the
API's requests do; the sender runs alone in a process of its own (as the ``webhook-sender``
actor does) and its CPU time (user + system) is measured over the run. Two phases, the same
commits: ``claim_interval_s = 0`` (a claim/record transaction whenever there is work: the
baseline) and the configured interval (``--claim-interval``, the default 0.02 s), so the
ratio shows what pacing the sender's transactions saves. On PostgreSQL the sender is woken by
the commits' ``NOTIFY`` (nothing is called from this process); on SQLite this process wakes
it through a pipe after each commit, coalesced as the Ray waker does.

    python bench/webhook_sender.py [--rate 90] [--seconds 30] [--claim-interval 0.02]
                                   [--database-url URL (an empty database)]

Prints, per phase: deliveries, the sender's CPU seconds, % of a core, ms of CPU per delivery
and its claims; then the ratio of CPU per delivery, baseline / paced.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.webhooks import WEBHOOKS, _receivers


def _sender(url: str, claim_interval: float, wakes: Any, out: Any, stop: Any) -> None:
    """The sender process: runs until ``stop``, then reports its CPU time and stats."""
    from cvat_ray.cluster.settings import get_settings
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.webhooks.sender import WebhookSender

    settings = get_settings()
    settings.outbound.allowlist = "127.0.0.1/32"
    settings.webhooks.claim_interval_s = claim_interval
    db = Database(url, pool_size=settings.webhooks.concurrency + 2)
    sender = WebhookSender(db, settings, f"bench-sender-{uuid.uuid4().hex[:6]}")
    sender.start()

    def forward() -> None:  # SQLite: a wake-up per commit, at most every claim interval
        while True:
            try:
                wakes.recv_bytes()
            except EOFError:
                return
            sender.wake()
            time.sleep(max(claim_interval, 0.001))

    threading.Thread(target=forward, daemon=True).start()
    before = os.times()
    out.put("started")
    stop.wait()
    after = os.times()
    cpu = (after.user - before.user) + (after.system - before.system)
    out.put((cpu, sender.stats.sent, sender.stats.rounds))
    sender.stop()
    db.dispose()


def _webhooks(url: str, ports: list[int]) -> tuple[int, list[int]]:
    """A user and an organization per receiver, each with a webhook on ``update:task``."""
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.migrate import upgrade
    from cvat_ray.storage.models import Organization, User, Webhook, utcnow

    db = Database(url)
    upgrade(db.engine)
    with db.session() as session:
        user = User(username=f"wh{uuid.uuid4().hex[:6]}", email="", password_hash="")
        session.add(user)
        session.flush()
        orgs: list[int] = []
        for port in ports:
            org = Organization(slug=f"wh{uuid.uuid4().hex[:8]}", name="o", owner_id=user.id)
            session.add(org)
            session.flush()
            orgs.append(org.id)
            session.add(
                Webhook(
                    target_url=f"http://127.0.0.1:{port}/",
                    events=["update:task"],
                    type="organization",
                    organization_id=org.id,
                    owner_id=user.id,
                    secret="bench",
                    created_date=utcnow(),
                    updated_date=utcnow(),
                )
            )
        user_id = user.id
    db.dispose()
    return user_id, orgs


def _phase(
    url: str, user_id: int, orgs: list[int], claim_interval: float, rate: float, seconds: float
) -> tuple[int, float, int, int]:
    """(commits, the sender's CPU seconds, its attempts, its claims) of one phase."""
    from cvat_ray.storage.changes import Actor, Change, Scope, record
    from cvat_ray.storage.db import Database
    from cvat_ray.storage.webhooks import outbox

    ctx = mp.get_context("spawn")
    wakes_in, wakes_out = ctx.Pipe(duplex=False)
    out, stop = ctx.Queue(), ctx.Event()
    process = ctx.Process(target=_sender, args=(url, claim_interval, wakes_in, out, stop))
    process.start()
    out.get(timeout=120)
    db = Database(url)
    key = outbox.db_key(db.engine)
    if db.dialect != "postgresql":
        outbox.set_waker(key, lambda: wakes_out.send_bytes(b"w"))
    actor = Actor(user_id=user_id, username="bench", first_name="", last_name="")
    started = time.monotonic()
    commits = 0
    while time.monotonic() - started < seconds:
        with db.session() as session:
            record(
                session,
                Change(
                    "update",
                    "task",
                    after={"id": 1, "name": f"n{commits}"},
                    before={"id": 1, "name": "old"},
                    scope_ids=Scope(org_id=orgs[commits % len(orgs)], task_id=1),
                    actor=actor,
                ),
            )
        commits += 1
        delay = started + commits / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    time.sleep(1.0)  # the last deliveries go
    stop.set()
    cpu, sent, claims = out.get(timeout=120)
    process.join(timeout=60)
    outbox.set_waker(key, None)
    wakes_out.close()
    db.dispose()
    return commits, cpu, sent, claims


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=90.0, help="commits a second")
    parser.add_argument("--seconds", type=float, default=30.0, help="of each phase")
    parser.add_argument("--claim-interval", type=float, default=0.02)
    parser.add_argument("--database-url", default=None, help="default: SQLite in a temp dir")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cvat-whsender-"))
    url = args.database_url or f"sqlite:///{workdir / 'cvat.db'}"
    os.environ["CVAT_RAY_DATA_DIR"] = str(workdir)
    os.environ["CVAT_RAY_DATABASE__URL"] = url

    from cvat_ray.storage.webhooks import outbox

    outbox.install()
    ctx = mp.get_context("spawn")
    ports_q, hits_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    receivers = ctx.Process(target=_receivers, args=(WEBHOOKS, ports_q, stop, hits_q))
    receivers.start()
    try:
        user_id, orgs = _webhooks(url, ports_q.get(timeout=60))
        per_delivery: list[float] = []
        total = 0
        for name, interval in (("unpaced (baseline)", 0.0), ("paced", args.claim_interval)):
            commits, cpu, sent, claims = _phase(
                url, user_id, orgs, interval, args.rate, args.seconds
            )
            total += commits
            span = args.seconds + 1.0
            per_delivery.append(1000 * cpu / max(sent, 1))
            print(
                f"{name}, claim interval {interval:g} s: {commits} commits, {sent} sent, "
                f"sender CPU {cpu:.2f} s ({100 * cpu / span:.1f}% of a core), "
                f"{per_delivery[-1]:.2f} ms per delivery, {claims} claims",
                flush=True,
            )
    finally:
        stop.set()
    hits = hits_q.get(timeout=60)
    receivers.join(timeout=30)
    received = len({h[0] for h in hits})
    print(f"database: {url.split(':')[0]}, received {received} of {total} distinct deliveries")
    print(f"CPU per delivery, unpaced / paced: {per_delivery[0] / per_delivery[1]:.2f}x")
    return 0 if received == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
