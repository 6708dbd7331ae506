"""The webhooks' consumer of domain changes: the outbox writer.

For every :class:`~cvat_ray.storage.changes.Change` whose event key (``update:task``,
``completed:request[create:task]``) is one of CVAT's, the active webhooks that subscribe to
it get one delivery row each, in the change's own transaction: server webhooks for every
event, organization webhooks for their organization's, project webhooks for their
project's (both fire for the same event, as in CVAT). The row holds the exact body to send
(CVAT's payload shape, serialized once, so every retry sends, and signs, the same bytes).
After commit the sender is woken: on PostgreSQL by a ``NOTIFY`` the fan-out statement sends
(delivered at commit, dropped with a rollback; the sender listens), and in every case by the
waker registered for the database (:func:`set_waker`: a sender thread in this process, or a
Ray call to the sender actor where there is no ``NOTIFY``); a rolled-back change leaves no
row and wakes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    String,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from cvat_ray.storage import changes
from cvat_ray.storage.changes import Change
from cvat_ray.storage.db import after_commit
from cvat_ray.storage.models import User, Webhook, WebhookDelivery, utcnow
from cvat_ray.storage.webhooks.events import ALL_EVENTS, request_event

logger = logging.getLogger("cvat_ray.webhooks")

CONSUMER = "webhooks"
# the deliveries' table, for the Core statements of the outbox and the sender
DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]

# PostgreSQL: the channel a commit that wrote deliveries notifies (the sender listens)
NOTIFY_CHANNEL = "cvat_ray_webhooks"
# database (its URL) -> how to wake the sender that works on it
_wakers: dict[str, Callable[[], None]] = {}
_lock = threading.Lock()


def db_key(bind: Any) -> str:
    """The key of a database (an Engine or a Connection) for :func:`set_waker`."""
    engine = getattr(bind, "engine", bind)
    return str(engine.url.render_as_string(hide_password=True))


def set_waker(key: str, wake: Callable[[], None] | None) -> None:
    """Who is woken after a commit that wrote deliveries to the database ``key``
    (:func:`db_key`); None removes it. The sender also sweeps periodically, so a missing
    waker delays deliveries, never loses them."""
    with _lock:
        if wake is None:
            _wakers.pop(key, None)
        else:
            _wakers[key] = wake


def wake(key: str) -> None:
    with _lock:
        waker = _wakers.get(key)
    if waker is not None:
        waker()


def event_key(change: Change) -> str:
    if change.action == "completed" and change.resource == "request":
        operation = change.extra.get("operation")
        if not operation and change.after is not None:
            operation = (change.after.get("operation") or {}).get("type")
        return request_event(str(operation))
    return change.scope


def _attname(name: str, value: Any) -> tuple[str, Any]:
    """CVAT's ``before_update`` names database columns: a nested object (``assignee``)
    becomes its id column (``assignee_id``)."""
    if isinstance(value, Mapping) and "id" in value:
        return f"{name}_id", value.get("id")
    return name, value


def update_fields(change: Change) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(``before_update``, ``changes``) of an update, CVAT-shaped."""
    before: dict[str, Any] = {}
    diff: dict[str, dict[str, Any]] = {}
    if change.before is None or change.after is None:
        return before, diff
    for name, old in change.changed_fields().items():
        new = change.after.get(name)
        shape = old if isinstance(old, Mapping) else new
        if isinstance(shape, Mapping) and "id" in shape:
            key = f"{name}_id"
            old_v = old.get("id") if isinstance(old, Mapping) else old
            new_v = new.get("id") if isinstance(new, Mapping) else new
        else:
            key, old_v, new_v = name, old, new
        if old_v == new_v:  # a nested object that changed but kept its id (e.g. a count)
            continue
        before[key] = old_v
        diff[key] = {"from": old_v, "to": new_v}
    return before, diff


def _sender(session: Session, change: Change) -> dict[str, Any] | None:
    actor = change.actor
    user_id = actor.user_id
    if user_id is None:
        return None
    if actor.username is not None and actor.first_name is not None:
        names = (actor.username, actor.first_name, actor.last_name or "")
    else:  # a change made outside a request (a background request's owner)
        row = session.execute(
            select(User.username, User.first_name, User.last_name).where(User.id == user_id)
        ).first()
        if row is None:
            return None
        names = (row[0], row[1], row[2])
    base = ""
    subject = change.subject or {}
    url = subject.get("url") if isinstance(subject, Mapping) else None
    if isinstance(url, str) and "/api/" in url:
        base = url.split("/api/", 1)[0]
    return {
        "url": f"{base}/api/users/{user_id}",
        "id": user_id,
        "username": names[0],
        "first_name": names[1],
        "last_name": names[2],
    }


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _fan_out() -> Any:
    """The outbox's one statement: a delivery row for every active webhook that gets the
    change, ``INSERT ... SELECT`` from the webhooks (one round trip, in the change's
    transaction, so it sees exactly the webhooks committed or changed before it).

    A webhook gets the change when it is a server webhook, its organization's or its
    project's, and its ``events`` (a JSON list of plain event keys) hold the key. Each row's
    body is the shared payload with the webhook's id as its last member (``json.dumps``
    order), and its ``uid`` the change's random UUID prefix with the webhook's id as the
    last group (12 decimal digits, so it stays a UUID)."""
    w = Webhook.__table__.c
    events_text = cast(w.events, Text)
    targets = or_(
        w.type == "server",
        and_(w.type == "organization", w.organization_id == bindparam("org_id", type_=Integer)),
        and_(w.type == "project", w.project_id == bindparam("project_id", type_=Integer)),
    )
    uid = bindparam("uid_head", type_=String) + func.substr(
        cast(w.id + literal(10**12, BigInteger), String), 2
    )
    body = bindparam("body_head", type_=Text) + cast(w.id, String) + literal("}", String)
    now = bindparam("now", type_=DELIVERIES.c.created_date.type)
    per_row: dict[str, Any] = {
        "uid": uid,
        "webhook_id": w.id,
        "event": bindparam("event", type_=String),
        "next_attempt_at": now,
        "body": body,
        "changed_fields": bindparam("changed_fields", type_=String),
        "created_date": now,
        "updated_date": now,
    }
    # every other column as a new row of delivery_values has it (status, attempt, ...)
    template = delivery_values(0, "", {})
    columns = list(template)
    values = [
        per_row[c] if c in per_row else literal(value, DELIVERIES.c[c].type)
        for c, value in template.items()
    ]
    rows = (
        select(*values)
        .where(
            w.is_active.is_(True),
            targets,
            events_text.like(bindparam("event_pattern", type_=String), escape="\\"),
        )
        .order_by(w.id)
    )
    return insert(DELIVERIES).from_select(columns, rows)


def _fan_out_notify(fan_out: Any) -> Any:
    """PostgreSQL: the fan-out, and a ``NOTIFY`` on :data:`NOTIFY_CHANNEL` when it wrote a
    row, in the same statement. The notification goes out when the change commits (none
    when it rolls back), and the sender listens for it (:class:`~cvat_ray.storage.webhooks.
    sender.Listener`): the committing process calls no one."""
    written = fan_out.returning(DELIVERIES.c.id).cte("written")
    return select(func.pg_notify(literal(NOTIFY_CHANNEL, String), literal("", String))).select_from(
        select(written.c.id).limit(1).subquery()
    )


def encode(payload: Mapping[str, Any]) -> str:
    """The body as sent: ``json.dumps`` with its default separators, as CVAT sends it."""
    return json.dumps(payload, default=str)


def delivery_values(
    webhook_id: int,
    event: str,
    payload: Mapping[str, Any],
    *,
    changed_fields: str = "",
    redelivery: bool = False,
    status: str = "pending",
) -> dict[str, Any]:
    """The columns of a new delivery row."""
    now = utcnow()
    return {
        "uid": str(uuid.uuid4()),
        "webhook_id": webhook_id,
        "event": event,
        "status": status,
        "redelivery": redelivery,
        "attempt": 0,
        "next_attempt_at": now,
        "body": encode(payload),
        "changed_fields": changed_fields[:4096],
        "response": "",
        "created_date": now,
        "updated_date": now,
    }


_FAN_OUT = _fan_out()
_FAN_OUT_NOTIFY = _fan_out_notify(_FAN_OUT)


def new_delivery(
    session: Session,
    webhook: Webhook,
    event: str,
    payload: Mapping[str, Any],
    *,
    changed_fields: str = "",
    redelivery: bool = False,
    status: str = "pending",
) -> WebhookDelivery:
    row = WebhookDelivery(
        **delivery_values(
            webhook.id,
            event,
            payload,
            changed_fields=changed_fields,
            redelivery=redelivery,
            status=status,
        )
    )
    session.add(row)
    return row


def consume(session: Session, change: Change) -> None:
    """The consumer (see the module's docstring)."""
    key = event_key(change)
    if key not in ALL_EVENTS:
        return
    subject = dict(change.subject or {})
    common: dict[str, Any] = {"event": key}
    changed = ""
    if change.resource == "request":
        common["request"] = subject
    else:
        common[change.resource] = subject
        if change.action == "update":
            before, diff = update_fields(change)
            common["before_update"] = before
            common["changes"] = diff
            changed = ",".join(before)
        common["sender"] = _sender(session, change)
    # the body of every row but its last member, ``"webhook_id": <id>}``
    head = encode({**common, "webhook_id": 0})
    head = head[: head.rindex("0}")]
    scope = change.scope_ids
    postgresql = session.get_bind().dialect.name == "postgresql"
    result = session.execute(
        _FAN_OUT_NOTIFY if postgresql else _FAN_OUT,
        {
            "org_id": scope.org_id,
            "project_id": scope.project_id,
            "event_pattern": f'%"{_like_literal(key)}"%',
            "uid_head": str(uuid.uuid4())[:24],
            "event": key,
            "now": utcnow(),
            "body_head": head,
            "changed_fields": changed[:4096],
        },
    )
    written = result.first() is not None if postgresql else result.rowcount  # type: ignore[attr-defined]
    if written:
        key_db = db_key(session.get_bind())
        after_commit(session, lambda: wake(key_db))


def install() -> None:
    """Register the consumer (idempotent; the API app and the background workers call it)."""
    changes.register(CONSUMER, consume)
