"""The one domain-change hook: consumers run in the change's own transaction."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cvat_ray.storage import changes
from cvat_ray.storage.db import Database
from cvat_ray.storage.models.identity import Group


@pytest.fixture(autouse=True)
def _no_outbox_rows(db: Database) -> Iterator[None]:
    # Groups survive the per-test table reset; these rows must not.
    yield
    with db.session() as session:
        session.execute(delete(Group).where(Group.name.like("outbox-%")))


@pytest.fixture
def outbox_consumer() -> Iterator[list[changes.Change]]:
    """A consumer that writes a row per change (a Group row stands in for an outbox row)."""
    seen: list[changes.Change] = []

    def consume(session: Session, change: changes.Change) -> None:
        seen.append(change)
        session.add(Group(name=f"outbox-{change.scope}-{len(seen)}"))

    changes.register("test-outbox", consume)
    yield seen
    changes.unregister("test-outbox")


def _outbox_rows(db: Database) -> list[str]:
    with db.session() as session:
        names = session.scalars(select(Group.name).where(Group.name.like("outbox-%"))).all()
        return sorted(names)


def test_consumers_write_in_the_changes_transaction(
    db: Database, outbox_consumer: list[changes.Change]
) -> None:
    change = changes.Change(
        "update",
        "task",
        before={"id": 1, "name": "a", "status": "annotation"},
        after={"id": 1, "name": "b", "status": "annotation"},
        scope_ids=changes.Scope(task_id=1),
    )
    with db.session() as session:
        changes.record(session, change)
    assert _outbox_rows(db) == ["outbox-update:task-1"]

    # A rolled-back change leaves nothing for any consumer to send.
    with pytest.raises(RuntimeError), db.session() as session:
        changes.record(session, changes.Change("delete", "task", before={"id": 1}))
        raise RuntimeError("the change failed after it was recorded")
    assert _outbox_rows(db) == ["outbox-update:task-1"]
    assert [c.scope for c in outbox_consumer] == ["update:task", "delete:task"]


def test_a_failing_consumer_fails_the_change(db: Database) -> None:
    def broken(_session: Session, _change: changes.Change) -> None:
        raise OSError("outbox unavailable")

    changes.register("test-broken", broken)
    try:
        with pytest.raises(OSError), db.session() as session:
            session.add(Group(name="outbox-never"))
            changes.record(session, changes.Change("create", "project", after={"id": 7}))
    finally:
        changes.unregister("test-broken")
    assert _outbox_rows(db) == []


def test_change_fields() -> None:
    change = changes.Change(
        "update",
        "job",
        before={"id": 3, "stage": "annotation", "state": "new", "assignee": None},
        after={"id": 3, "stage": "validation", "state": "new", "assignee": {"id": 2}},
    )
    assert change.scope == "update:job"
    assert change.changed_fields() == {"stage": "annotation", "assignee": None}
    assert change.subject == change.after
    deleted = changes.Change("delete", "job", before={"id": 3})
    assert deleted.subject == {"id": 3}
    assert deleted.changed_fields() == {}
    assert "test-outbox" not in changes.consumers()
