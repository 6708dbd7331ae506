"""CVAT's event rows, as plain dicts keyed by the ClickHouse ``events`` columns.

A row's ``timestamp`` is milliseconds since the epoch (UTC); ``payload`` is a JSON string, as in
CVAT. The sink turns rows into the column types of the table (``cvat_ray.analytics.schema``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cvat_ray.storage.changes import Actor, Change, Scope

Row = dict[str, Any]

# Every column of CVAT's ``events`` table, in table order (plus the two later migrations).
COLUMNS: tuple[str, ...] = (
    "scope",
    "obj_name",
    "obj_id",
    "obj_val",
    "source",
    "timestamp",
    "count",
    "duration",
    "project_id",
    "task_id",
    "job_id",
    "user_id",
    "user_name",
    "user_email",
    "org_id",
    "org_slug",
    "payload",
    "access_token_id",
    "remote_addr",
)

# The client scopes CVAT accepts on POST /api/events; anything else is a 400.
CLIENT_SCOPES: frozenset[str] = frozenset(
    {
        "load:cvat",
        "load:job",
        "save:job",
        "load:workspace",
        "send:exception",
        "join:objects",
        "change:frame",
        "draw:object",
        "paste:object",
        "copy:object",
        "propagate:object",
        "drag:object",
        "resize:object",
        "delete:object",
        "merge:objects",
        "split:objects",
        "group:objects",
        "slice:object",
        "zoom:image",
        "fit:image",
        "rotate:image",
        "action:undo",
        "action:redo",
        "debug:info",
        "run:annotations_action",
        "click:element",
        "user:activity",
    }
)
USER_ACTIVITY = "user:activity"
WORKING_TIME = "send:working_time"
EXCEPTION = "send:exception"
DROPPED = "drop:events"
CACHE_ITEM_CREATE = "create:cache_item"
CACHE_ITEM_READ = "read:cache_item"

# Fields whose change alone is no update worth an event (CVAT skips updated_date-only updates).
_IGNORED_FIELDS = frozenset({"updated_date"})
# What names an object, by resource kind, first match wins.
_NAME_KEYS = ("name", "username", "display_name", "slug", "message", "title", "key")
_ID_COLUMNS = {"project": "project_id", "task": "task_id", "job": "job_id"}
UINT16_MAX = 65535
UINT32_MAX = 2**32 - 1
UINT64_MAX = 2**64 - 1


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def epoch_ms(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - _EPOCH) // _MS


def now_ms() -> int:
    return epoch_ms(datetime.now(UTC))


def dumps(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"), ensure_ascii=False)


def empty_row(scope: str, source: str, timestamp: int) -> Row:
    row: Row = dict.fromkeys(COLUMNS)
    row.update(scope=scope, source=source, timestamp=timestamp, duration=0)
    return row


def _uint(value: Any, limit: int = UINT64_MAX) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > limit:
        return None
    return value


def _name_of(obj: Mapping[str, Any] | None) -> str | None:
    if not obj:
        return None
    for key in _NAME_KEYS:
        value = obj.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _request_payload(actor: Actor) -> dict[str, Any]:
    request: dict[str, Any] = {"id": actor.request_id}
    return {"request": request}


def server_rows(
    change: Change,
    *,
    user_email: str | None = None,
    org_slug: str | None = None,
    timestamp: int | None = None,
) -> list[Row]:
    """CVAT's event rows for one domain change.

    - an update with ``before`` and ``after``: one ``update:<res>`` row per changed field
      (``obj_name`` the field, ``obj_val`` the new value, ``payload.old_value`` the old one);
      an update that changed nothing but ``updated_date`` gives no row;
    - anything else (create, delete, call, per-shape-type annotation changes, ...): one row,
      ``obj_id``/``obj_name`` from the object, the ``after`` object as payload for a create;
      ``change.extra["event"]`` may set ``obj_name``, ``obj_id``, ``obj_val``, ``count``,
      ``duration`` and ``payload`` (merged into the payload).
    """
    actor = change.actor
    ts = now_ms() if timestamp is None else timestamp
    base = empty_row(change.scope, "server", ts)
    ids = change.scope_ids
    subject = change.subject
    base.update(
        project_id=ids.project_id,
        task_id=ids.task_id,
        job_id=ids.job_id,
        user_id=actor.user_id,
        user_name=actor.username,
        user_email=user_email,
        org_id=ids.org_id if ids.org_id is not None else actor.org_id,
        org_slug=org_slug,
        access_token_id=actor.access_token_id,
        remote_addr=actor.remote_addr,
    )
    column = _ID_COLUMNS.get(change.resource)
    if column and subject and base[column] is None:
        base[column] = _uint(subject.get("id"))
    request = _request_payload(actor)

    if change.action == "update" and change.before is not None and change.after is not None:
        rows: list[Row] = []
        obj_id = _uint((subject or {}).get("id"))
        for name, old in change.changed_fields().items():
            if name in _IGNORED_FIELDS:
                continue
            new = change.after.get(name)
            row = dict(base)
            row.update(
                obj_name=name,
                obj_id=obj_id,
                obj_val=new if isinstance(new, str) else dumps(new),
                payload=dumps({"old_value": old, **request}),
            )
            rows.append(row)
        return rows

    row = dict(base)
    payload: dict[str, Any] = {}
    if subject is not None:
        row.update(obj_id=_uint(subject.get("id")), obj_name=_name_of(subject))
    if change.action == "create" and change.after is not None:
        payload.update({k: v for k, v in change.after.items() if v is not None})
    event = change.extra.get("event")
    if isinstance(event, Mapping):
        for key in ("obj_name", "obj_val"):
            if key in event:
                row[key] = None if event[key] is None else str(event[key])
        if "obj_id" in event:
            row["obj_id"] = _uint(event["obj_id"])
        if "count" in event:
            row["count"] = _uint(event["count"], UINT16_MAX)
        if "duration" in event:
            row["duration"] = _uint(event["duration"], UINT32_MAX) or 0
        extra_payload = event.get("payload")
        if isinstance(extra_payload, Mapping):
            payload.update(extra_payload)
    payload.update(request)
    row["payload"] = dumps(payload)
    return [row]


def exception_row(
    *,
    message: str,
    status_code: int | None,
    stack: str = "",
    actor: Actor | None = None,
    request: Mapping[str, Any] | None = None,
    project_id: int | None = None,
    task_id: int | None = None,
    job_id: int | None = None,
    org_id: int | None = None,
) -> Row:
    """A server ``send:exception`` row (a 5xx answer, a failed background request)."""
    actor = actor or Actor()
    row = empty_row(EXCEPTION, "server", now_ms())
    row.update(
        project_id=project_id,
        task_id=task_id,
        job_id=job_id,
        user_id=actor.user_id,
        user_name=actor.username,
        org_id=org_id if org_id is not None else actor.org_id,
        access_token_id=actor.access_token_id,
        remote_addr=actor.remote_addr,
        count=1,
    )
    payload = {
        "message": message,
        "stack": stack,
        "status_code": status_code,
        "request": {"id": actor.request_id, **(request or {})},
    }
    row["payload"] = dumps(payload)
    return row


def dropped_row(count: int) -> Row:
    """A server row that records how many client events the outbox cap dropped."""
    row = empty_row(DROPPED, "server", now_ms())
    row.update(count=min(count, UINT16_MAX), obj_val=str(count), obj_name="client")
    row["payload"] = dumps({"dropped": count})
    return row


def cache_item_row(
    scope: str,
    timestamp: int,
    actor: Actor,
    ids: Scope,
    *,
    kind: str,
    key: str,
    size: int,
    duration_ms: int = 0,
    user_email: str | None = None,
    org_slug: str | None = None,
) -> Row:
    """A server ``create:cache_item`` (built and cached) or ``read:cache_item`` (served from
    the cache) row for one media cache item; ``payload.cache_item.size`` (bytes) is what the
    Monitoring dashboard's cache throughput sums."""
    row = empty_row(scope, "server", timestamp)
    row.update(
        obj_name=kind,
        obj_val=key,
        count=1,
        duration=_uint(duration_ms, UINT32_MAX) or 0,
        project_id=ids.project_id,
        task_id=ids.task_id,
        job_id=ids.job_id,
        user_id=actor.user_id,
        user_name=actor.username,
        user_email=user_email,
        org_id=ids.org_id if ids.org_id is not None else actor.org_id,
        org_slug=org_slug,
        access_token_id=actor.access_token_id,
        remote_addr=actor.remote_addr,
    )
    payload = {"cache_item": {"key": key, "kind": kind, "size": size}}
    row["payload"] = dumps({**payload, **_request_payload(actor)})
    return row
