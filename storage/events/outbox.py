"""The events outbox: rows written in the change's transaction, drained by the events sink.

- :func:`consumer` is the analytics consumer of the one domain-change hook
  (:mod:`cvat_ray.storage.changes`): every change becomes CVAT event rows in the outbox, in the
  change's own transaction (a rollback leaves none, a commit cannot lose them).
- :func:`add_rows` writes rows in one set-based INSERT (client batches, exceptions).
- The sink reads a batch (:func:`read_batch`), ships it, and only then deletes it
  (:func:`delete_up_to`); :func:`enforce_cap` keeps the outbox under its cap while ClickHouse
  is away by dropping the oldest *client* rows (server rows are never dropped) and recording
  how many as a ``drop:events`` server row.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from cvat_ray.storage.changes import Change, consumers, register, unregister
from cvat_ray.storage.events.rows import Row, dropped_row, server_rows
from cvat_ray.storage.models import EventOutbox, Organization, User

logger = logging.getLogger("cvat_ray.events")
# rows hold only None, numbers and strings: msgspec encodes them several times faster
_encoder = msgspec.json.Encoder()
_OUTBOX = EventOutbox.__table__.c.id.table  # the Table, typed as one
_decoder = msgspec.json.Decoder(dict[str, Any])

CONSUMER = "analytics"


def add_rows(session: Session, rows: Iterable[Row]) -> int:
    """Queue event rows in the caller's transaction; the number written."""
    encode = _encoder.encode
    values = [{"source": str(r.get("source") or "server"), "row": encode(r).decode()} for r in rows]
    if values:
        # Core, not the ORM's bulk path: nothing here needs identities back
        session.execute(insert(_OUTBOX), values)
    return len(values)


class _NameCache:
    """Users' e-mails and organizations' slugs for events, kept a short while per process
    (a write then costs no look-up; a changed e-mail shows in events within ``ttl_s``)."""

    def __init__(self, ttl_s: float = 60.0, size: int = 4096) -> None:
        self.ttl_s, self.size = ttl_s, size
        self._items: dict[tuple[int, str, int], tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def get(self, session: Session, kind: str, key: int | None) -> str | None:
        if key is None:
            return None
        now = time.monotonic()
        where = id(session.get_bind())  # one database's ids are not another's
        with self._lock:
            hit = self._items.get((where, kind, key))
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        if kind == "user":
            value = session.scalar(select(User.email).where(User.id == key)) or None
        else:
            value = session.scalar(select(Organization.slug).where(Organization.id == key))
        with self._lock:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[(where, kind, key)] = (now, value)
        return value


names = _NameCache()


def consumer(session: Session, change: Change) -> None:
    """The analytics consumer: the change's CVAT event rows, into the outbox."""
    org_id = change.scope_ids.org_id
    if org_id is None:
        org_id = change.actor.org_id
    with session.no_autoflush:
        email = names.get(session, "user", change.actor.user_id)
        slug = names.get(session, "org", org_id)
    add_rows(session, server_rows(change, user_email=email, org_slug=slug))


def install(enabled: bool = True) -> None:
    """Register (or, with analytics off, remove) the consumer in this process."""
    if enabled:
        register(CONSUMER, consumer)
    else:
        unregister(CONSUMER)


def enabled() -> bool:
    """Whether analytics records events in this process (its consumer is installed)."""
    return CONSUMER in consumers()


# --------------------------------------------------------------------------- the sink's side


def read_batch(session: Session, limit: int) -> list[tuple[int, Row]]:
    """The oldest ``limit`` rows: ``(id, row)`` in id order."""
    result = session.execute(
        select(EventOutbox.id, EventOutbox.row).order_by(EventOutbox.id).limit(limit)
    )
    decode = _decoder.decode
    return [(i, decode(text)) for i, text in result]


def delete_up_to(session: Session, ids: Sequence[int]) -> int:
    """Delete rows that ClickHouse acknowledged (by id)."""
    if not ids:
        return 0
    low, high = min(ids), max(ids)
    stmt = delete(EventOutbox).where(EventOutbox.id >= low, EventOutbox.id <= high)
    if high - low + 1 != len(ids):  # a gap: rows dropped meanwhile, or skipped ids
        stmt = delete(EventOutbox).where(EventOutbox.id.in_(list(ids)))
    result = session.execute(stmt.execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def pending(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(EventOutbox)) or 0)


def enforce_cap(session: Session, cap: int) -> int:
    """Keep at most ``cap`` rows by dropping the oldest client rows; the number dropped
    (recorded as a ``drop:events`` server row)."""
    excess = pending(session) - cap
    if excess <= 0:
        return 0
    victims = (
        select(EventOutbox.id)
        .where(EventOutbox.source == "client")
        .order_by(EventOutbox.id)
        .limit(excess)
        .scalar_subquery()
    )
    result = session.execute(
        delete(EventOutbox)
        .where(EventOutbox.id.in_(victims))
        .execution_options(synchronize_session=False)
    )
    dropped = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if dropped:
        add_rows(session, [dropped_row(dropped)])
        logger.warning("events outbox over its cap of %d: dropped %d client events", cap, dropped)
    return dropped
