"""The webhook sender as a Ray actor (``webhook-sender``, detached, restarted by Ray):
killed in the middle of a batch, it loses nothing; what it re-sends carries the same
delivery id (at least once)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray
from sqlalchemy import select

from cvat_ray.actors.runners import RayLauncher
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.changes import Actor, Change, Scope, record
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Organization, User, Webhook, WebhookDelivery, utcnow
from tests.webhook_receiver import Receiver, receiver

pytestmark = [pytest.mark.ray, pytest.mark.slow]

COUNT = 40


@pytest.fixture
def sink() -> Iterator[Receiver]:
    yield from receiver()


@pytest.fixture
def launcher(ray_cluster: None, settings: Settings, db: Database) -> Iterator[RayLauncher]:
    env = {
        "CVAT_RAY_DATA_DIR": str(settings.data_dir),
        "CVAT_RAY_DATABASE__URL": db.url,
        "CVAT_RAY_OUTBOUND__ALLOWLIST": "127.0.0.1/32",
        "CVAT_RAY_WEBHOOKS__SWEEP_INTERVAL_S": "0.2",
        "CVAT_RAY_WEBHOOKS__BATCH_SIZE": "5",
        "CVAT_RAY_WEBHOOKS__NUM_CPUS": "0.1",
    }
    settings.webhooks.num_cpus = 0.1
    launcher = RayLauncher(
        settings, db, prefix=f"test-{uuid.uuid4().hex[:8]}-", runtime_env={"env_vars": env}
    )
    yield launcher
    launcher.kill()
    launcher.close()


def _setup(db: Database, url: str) -> tuple[int, int]:
    with db.session() as session:
        user = User(username=f"u{uuid.uuid4().hex[:6]}", email="", password_hash="")
        session.add(user)
        session.flush()
        org = Organization(slug=f"o{uuid.uuid4().hex[:6]}", name="o", owner_id=user.id)
        session.add(org)
        session.flush()
        hook = Webhook(
            target_url=url,
            events=["update:task"],
            type="organization",
            organization_id=org.id,
            owner_id=user.id,
            retry_delays=[0.1],
            created_date=utcnow(),
            updated_date=utcnow(),
        )
        session.add(hook)
        session.flush()
        return org.id, hook.id


def _changes(db: Database, org_id: int, count: int) -> None:
    for i in range(count):
        with db.session() as session:
            record(
                session,
                Change(
                    "update",
                    "task",
                    after={"id": 1, "name": f"n{i + 1}"},
                    before={"id": 1, "name": f"n{i}"},
                    scope_ids=Scope(org_id=org_id, task_id=1),
                    actor=Actor(),
                ),
            )


def _rows(db: Database, hook_id: int) -> list[Any]:
    with db.session() as session:
        return list(
            session.execute(
                select(WebhookDelivery.uid, WebhookDelivery.status, WebhookDelivery.body)
                .where(WebhookDelivery.webhook_id == hook_id)
                .order_by(WebhookDelivery.id)
            )
        )


def test_sender_killed_mid_batch_loses_nothing(
    launcher: RayLauncher, db: Database, sink: Receiver
) -> None:
    org_id, hook_id = _setup(db, sink.url)
    handle = launcher.service_handle("webhooks")
    assert ray.get(handle.ping.remote(), timeout=120) == launcher.service_name(
        launcher.registry.service("webhooks")
    )
    sink.delay = 0.05  # slow enough to be caught in the middle of a batch
    _changes(db, org_id, COUNT)
    sink.wait_for(8, timeout=60)
    ray.kill(handle, no_restart=False)  # Ray restarts it; it takes back what it held
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if all(r.status == "delivered" for r in _rows(db, hook_id)):
            break
        time.sleep(0.2)
    rows = _rows(db, hook_id)
    assert [r.status for r in rows] == ["delivered"] * COUNT
    hits = list(sink.hits)
    seen = [h.headers["x-webhook-delivery"] for h in hits]
    assert set(seen) == {r.uid for r in rows}  # every delivery arrived
    # a duplicate is a re-send of the same delivery (same id, same bytes)
    by_uid = {r.uid: r.body.encode() for r in rows}
    assert all(h.body == by_uid[h.headers["x-webhook-delivery"]] for h in hits)
    # in the order they were written, counting each delivery's first arrival
    first: list[str] = []
    for uid in seen:
        if uid not in first:
            first.append(uid)
    assert first == [r.uid for r in rows]
    assert len(hits) - COUNT <= 5  # at most the batch in flight was sent twice
