"""The SQL that reads events: the CSV export (CVAT's query and columns) and the built-in
page's charts. Every statement runs unchanged on a current engine (chdb, a ClickHouse server)
and on the legacy table of an old server; :class:`~cvat_ray.analytics.schema.Flavor` picks the
timestamp expression and how a JSON field is read (a regular expression on old servers); buckets
are ``intDiv`` of the time, which every version knows."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from cvat_ray.analytics.schema import EXPORT_NAMES, Flavor, quote_ident, table
from cvat_ray.analytics.store import EventStore, render

WORKING_TIME = "send:working_time"
EXCEPTION = "send:exception"


@dataclass(frozen=True)
class EventFilter:
    """Which events a read covers (times in ms since the epoch, bounds included)."""

    from_ms: int | None = None
    to_ms: int | None = None
    org_id: int | None = None
    project_id: int | None = None
    task_id: int | None = None
    job_id: int | None = None
    user_id: int | None = None
    scope: str | None = None
    source: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EventFilter:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def where(flavor: Flavor, f: EventFilter) -> str:
    """The WHERE conditions of a filter (an SQL fragment, ``1`` for none)."""
    parts: list[str] = []
    params: dict[str, Any] = {}
    if f.from_ms is not None:
        params["from_s"], params["from_ms"] = f.from_ms // 1000, f.from_ms
        parts.append("timestamp >= toDateTime({from_s}, 'UTC')")
        parts.append(f"{flavor.ts_ms} >= {{from_ms}}")
    if f.to_ms is not None:
        params["to_s"], params["to_ms"] = f.to_ms // 1000 + 1, f.to_ms
        parts.append("timestamp < toDateTime({to_s}, 'UTC')")
        parts.append(f"{flavor.ts_ms} <= {{to_ms}}")
    for name in ("org_id", "project_id", "task_id", "job_id", "user_id", "scope", "source"):
        value = getattr(f, name)
        if value is not None:
            params[name] = value
            parts.append(f"{quote_ident(name)} = {{{name}}}")
    return render(" AND ".join(parts), params) if parts else "1"


# --------------------------------------------------------------------------------- export


def export_sql(database: str, flavor: Flavor, f: EventFilter, limit: int) -> str:
    """CVAT's export query: every column but ``remote_addr``, server and client events but
    not exceptions, oldest first; the time formatted by ClickHouse as CVAT prints it, so
    :func:`csv_chunks` only writes rows."""
    columns = ", ".join(
        f"{flavor.ts_text} AS ts_text" if n == "timestamp" else quote_ident(n) for n in EXPORT_NAMES
    )
    order = "timestamp" if flavor.modern else "timestamp, timestamp_ms"
    return (
        f"SELECT {columns} FROM {table(database)} "
        f"WHERE source IN ('server', 'client') AND scope != '{EXCEPTION}' AND {where(flavor, f)} "
        f"ORDER BY {order} LIMIT {int(limit)}"
    )


def format_time(ms: int) -> str:
    """A time as CVAT's CSV shows it (Python's ``str`` of an aware UTC datetime)."""
    return str(datetime.fromtimestamp(ms / 1000, UTC))


def csv_chunks(rows: Iterable[tuple[Any, ...]], chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The CSV file, header first, in chunks of about ``chunk_bytes`` (constant memory)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_NAMES)
    block: list[tuple[Any, ...]] = []
    for row in rows:
        block.append(row)
        if len(block) >= 8192:
            writer.writerows(block)
            block.clear()
            if buffer.tell() >= chunk_bytes:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    writer.writerows(block)
    if buffer.tell():
        yield buffer.getvalue().encode()


def export_csv(store: EventStore, f: EventFilter, limit: int) -> Iterator[bytes]:
    return csv_chunks(store.stream(export_sql(store.database, store.flavor, f, limit)))


# ------------------------------------------------------------------------------ dashboards


def activity_sql(database: str, flavor: Flavor, f: EventFilter, bucket_ms: int) -> str:
    bucket = max(int(bucket_ms), 1000)
    return (
        f"SELECT intDiv({flavor.ts_ms}, {bucket}) * {bucket} AS t, source, count() AS n "
        f"FROM {table(database)} WHERE {where(flavor, f)} "
        "GROUP BY t, source ORDER BY t, source"
    )


def scopes_sql(database: str, flavor: Flavor, f: EventFilter) -> str:
    return (
        f"SELECT scope, source, count() AS n, avg(duration) AS avg_duration "
        f"FROM {table(database)} WHERE {where(flavor, f)} "
        "GROUP BY scope, source ORDER BY n DESC LIMIT 100"
    )


def working_time_sql(database: str, flavor: Flavor, f: EventFilter) -> str:
    """CVAT's Management dashboard table: working time per user and job (``duration`` holds
    the ms, so no JSON parsing), with the number of working-time events as activity."""
    return (
        "SELECT user_id, any(user_name) AS user_name, project_id, task_id, job_id, "
        "sum(duration) AS ms, count() AS activity "
        f"FROM {table(database)} WHERE scope = '{WORKING_TIME}' AND {where(flavor, f)} "
        "GROUP BY user_id, project_id, task_id, job_id ORDER BY ms DESC LIMIT 500"
    )


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def json_string(flavor: Flavor, column: str, key: str) -> str:
    """A top-level string of a JSON column (``JSONExtractString``; a regular expression on
    old servers, whose ``visitParamExtract*`` miss JSON with spaces after the colon)."""
    if flavor.modern:
        return f"JSONExtractString(ifNull({column}, ''), {_sql_string(key)})"
    pattern = '"' + key + r'":\s*"((?:[^"\\]|\\.)*)"'
    return f"extract(ifNull({column}, ''), {_sql_string(pattern)})"


def json_int(flavor: Flavor, column: str, key: str) -> str:
    if flavor.modern:
        return f"JSONExtractInt(ifNull({column}, ''), {_sql_string(key)})"
    pattern = '"' + key + r'":\s*(-?\d+)'
    return f"toInt64OrZero(extract(ifNull({column}, ''), {_sql_string(pattern)}))"


def exceptions_sql(database: str, flavor: Flavor, f: EventFilter) -> str:
    return (
        f"SELECT {flavor.ts_ms} AS t, source, user_name, "
        f"{json_string(flavor, 'payload', 'message')} AS message, "
        f"{json_int(flavor, 'payload', 'status_code')} AS status "
        f"FROM {table(database)} WHERE scope = '{EXCEPTION}' AND {where(flavor, f)} "
        "ORDER BY t DESC LIMIT 200"
    )


def users_sql(database: str, flavor: Flavor, f: EventFilter) -> str:
    return (
        "SELECT user_id, any(user_name) AS user_name, count() AS n "
        f"FROM {table(database)} WHERE user_id IS NOT NULL AND {where(flavor, f)} "
        "GROUP BY user_id ORDER BY n DESC LIMIT 500"
    )


def dashboard(store: EventStore, f: EventFilter, bucket_ms: int) -> dict[str, Any]:
    """Everything the built-in page draws, for one filter."""
    db, flavor = store.database, store.flavor
    exceptions_filter = EventFilter(**{**f.__dict__, "scope": None})
    return {
        "engine": {"modern": flavor.modern, "version": flavor.version},
        "bucket_ms": bucket_ms,
        "activity": [
            {"t": int(t), "source": s, "count": int(n)}
            for t, s, n in store.execute(activity_sql(db, flavor, f, bucket_ms))
        ],
        "scopes": [
            {"scope": sc, "source": s, "count": int(n), "avg_duration": float(d or 0)}
            for sc, s, n, d in store.execute(scopes_sql(db, flavor, f))
        ],
        "working_time": [
            {
                "user_id": u,
                "user_name": name,
                "project_id": p,
                "task_id": t,
                "job_id": j,
                "ms": int(ms),
                "activity": int(a),
            }
            for u, name, p, t, j, ms, a in store.execute(
                working_time_sql(db, flavor, exceptions_filter)
            )
        ],
        "exceptions": [
            {"t": int(t), "source": s, "user_name": u, "message": m, "status_code": int(c)}
            for t, s, u, m, c in store.execute(exceptions_sql(db, flavor, exceptions_filter))
        ],
        "users": [
            {"user_id": int(u), "user_name": name, "count": int(n)}
            for u, name, n in store.execute(users_sql(db, flavor, exceptions_filter))
        ],
    }
