"""The sender's claim: two senders on one outbox (two API processes, or a restarted actor
next to its replacement) send every delivery once, each webhook's in order; SQLite and
PostgreSQL."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.changes import Actor, Change, Scope, record
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Organization, User, Webhook, WebhookDelivery, utcnow
from cvat_ray.storage.webhooks import outbox
from cvat_ray.storage.webhooks.sender import WebhookSender
from tests.webhook_receiver import Receiver, receiver

HOOKS = 4
PER_HOOK = 40


@pytest.fixture
def sink() -> Iterator[Receiver]:
    yield from receiver()


def _org_webhooks(db: Database, targets: list[str]) -> list[int]:
    """An organization per target, each with a webhook on ``update:task`` to it: the orgs' ids."""
    with db.session() as session:
        user = User(username=f"s{uuid.uuid4().hex[:6]}", email="", password_hash="")
        session.add(user)
        session.flush()
        orgs = []
        for target in targets:
            org = Organization(slug=f"s{uuid.uuid4().hex[:8]}", name="o", owner_id=user.id)
            session.add(org)
            session.flush()
            orgs.append(org.id)
            session.add(
                Webhook(
                    target_url=target,
                    events=["update:task"],
                    type="organization",
                    organization_id=org.id,
                    owner_id=user.id,
                    created_date=utcnow(),
                    updated_date=utcnow(),
                )
            )
    return orgs


def _task_update(session: Session, org_id: int, name: str) -> None:
    """A task of ``org_id`` renamed to ``name``, recorded as the services record it."""
    record(
        session,
        Change(
            "update",
            "task",
            after={"id": 1, "name": name},
            before={"id": 1, "name": "old"},
            scope_ids=Scope(org_id=org_id),
            actor=Actor(),
        ),
    )


def test_two_senders_send_each_delivery_once_in_order(
    db: Database, settings: Settings, sink: Receiver
) -> None:
    outbox.install()
    settings.outbound.allowlist = "127.0.0.1/32"
    settings.webhooks.batch_size = 5
    settings.webhooks.sweep_interval_s = 0.05
    orgs = _org_webhooks(db, [f"{sink.url}/{i}" for i in range(HOOKS)])
    senders = [WebhookSender(db, settings, f"sender-{n}") for n in range(2)]
    for sender in senders:
        sender.start()
    try:
        for n in range(PER_HOOK):
            with db.session() as session:  # each change its own commit, all hooks at once
                for org_id in orgs:
                    _task_update(session, org_id, f"n{n}")
            for sender in senders:
                sender.wake()
        hits = sink.wait_for(HOOKS * PER_HOOK, timeout=60)
        time.sleep(0.3)  # a duplicate would arrive by now
    finally:
        for sender in senders:
            sender.stop()
    ids = [h.headers["x-webhook-delivery"] for h in sink.hits]
    assert len(ids) == len(set(ids)) == HOOKS * PER_HOOK
    for i in range(HOOKS):
        names = [h.payload["task"]["name"] for h in hits if h.path == f"/hook/{i}"]
        assert names == [f"n{n}" for n in range(PER_HOOK)]
    with db.session() as session:
        statuses = set(session.scalars(select(WebhookDelivery.status)))
    assert statuses == {"delivered"}
    assert sum(s.stats.sent for s in senders) == len(ids)  # no attempt was repeated


def test_a_slow_receiver_holds_back_its_own_webhook_only(
    db: Database, settings: Settings, sink: Receiver
) -> None:
    """Pipelined sending: while one receiver takes seconds to answer, the deliveries of
    another webhook committed meanwhile arrive at once (not after the slow one's batch)."""
    outbox.install()
    settings.outbound.allowlist = "127.0.0.1/32"
    settings.webhooks.sweep_interval_s = 0.05
    slow_gen = receiver()
    slow = next(slow_gen)
    slow.delay = 2.0
    orgs = _org_webhooks(db, [f"{slow.url}/hook", f"{sink.url}/hook"])

    def change(org_id: int, name: str) -> None:
        with db.session() as session:
            _task_update(session, org_id, name)

    sender = WebhookSender(db, settings, "pipelined")
    sender.start()
    try:
        change(orgs[0], "slow")
        sender.wake()
        time.sleep(0.3)  # the slow receiver now holds its delivery (it answers after 2 s)
        for n in range(3):
            change(orgs[1], f"fast{n}")
            sender.wake()
            time.sleep(0.05)
        sink.wait_for(3, timeout=10)
        slow.wait_for(1, timeout=10)
    finally:
        sender.stop()
        for _ in slow_gen:
            pass
    assert [h.payload["task"]["name"] for h in sink.hits] == ["fast0", "fast1", "fast2"]
    assert [h.payload["task"]["name"] for h in slow.hits] == ["slow"]
    # the slow receiver notes its delivery once it has waited: every fast one came first
    assert max(h.at for h in sink.hits) < slow.hits[0].at


def test_a_row_left_behind_a_batch_in_flight_goes_when_the_batch_is_recorded(
    db: Database, settings: Settings
) -> None:
    """A commit whose webhook still has a batch in flight is not claimable then; once that
    batch is recorded the sender claims again by itself: not after every other webhook's
    batch is done, nor at the next sweep."""
    outbox.install()
    settings.outbound.allowlist = "127.0.0.1/32"
    settings.webhooks.sweep_interval_s = 60.0  # no sweep within the test
    slow_gen, slower_gen = receiver(), receiver()
    slow, slower = next(slow_gen), next(slower_gen)
    slow.delay, slower.delay = 1.0, 4.0
    orgs = _org_webhooks(db, [f"{slow.url}/hook", f"{slower.url}/hook"])

    def change(org_id: int, name: str) -> None:
        with db.session() as session:
            _task_update(session, org_id, name)
        sender.wake()

    sender = WebhookSender(db, settings, "left-behind")
    sender.start()
    try:
        change(orgs[1], "other")  # in flight for 4 s
        change(orgs[0], "first")
        time.sleep(0.3)  # "first" is in flight (answered after 1 s)
        change(orgs[0], "second")  # its claim finds the webhook busy; no commit follows
        hits = slow.wait_for(2, timeout=15)
        other = slower.wait_for(1, timeout=15)
    finally:
        sender.stop()
        for gen in (slow_gen, slower_gen):
            for _ in gen:
                pass
    assert [h.payload["task"]["name"] for h in hits] == ["first", "second"]
    assert [h.payload["task"]["name"] for h in other] == ["other"]
    assert hits[1].at < other[0].at  # "second" did not wait for the other webhook


def test_postgresql_commits_wake_the_sender_through_notify(
    db: Database, settings: Settings, sink: Receiver
) -> None:
    """On PostgreSQL the commit that writes a delivery notifies the sender (no waker in the
    committing process, no sweep within the test), also after its listening connection was
    cut; a rolled-back change notifies nothing and sends nothing."""
    if db.dialect != "postgresql":
        pytest.skip("NOTIFY is PostgreSQL's")
    outbox.install()
    outbox.set_waker(outbox.db_key(db.engine), None)
    settings.outbound.allowlist = "127.0.0.1/32"
    settings.webhooks.sweep_interval_s = 60.0
    (org_id,) = _org_webhooks(db, [f"{sink.url}/hook"])
    sender = WebhookSender(db, settings, "listening")
    sender.start()
    try:
        time.sleep(0.5)  # listening
        with db.session() as session:
            _task_update(session, org_id, "first")
        assert [h.payload["task"]["name"] for h in sink.wait_for(1, timeout=5)] == ["first"]
        with pytest.raises(RuntimeError), db.session() as session:
            _task_update(session, org_id, "rolled back")
            raise RuntimeError("the change fails")
        with db.engine.begin() as conn:  # cut the listener's connection
            cut = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE query LIKE 'LISTEN %' AND datname = current_database()"
                )
            ).all()
        assert cut
        time.sleep(1.5)  # reconnected
        with db.session() as session:
            _task_update(session, org_id, "second")
        hits = sink.wait_for(2, timeout=5)
    finally:
        sender.stop()
    assert [h.payload["task"]["name"] for h in hits] == ["first", "second"]
