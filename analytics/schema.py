"""CVAT's ClickHouse ``events`` table, created and migrated idempotently.

The columns and types are CVAT's (``components/analytics/clickhouse/init.py`` and its two
migrations: ``access_token_id``, ``remote_addr``). Two things differ, both better for the
dashboards and both only for a table this server creates (an existing CVAT table keeps its
sorting key, which ClickHouse cannot change in place):

- ``ORDER BY`` serves the dashboards' and the export's filters: organization, day, scope,
  user, project, task, job, then time (CVAT orders by time only, so every filter on a user or
  a job scans whole partitions); on current engines also skipping indexes on the ids;
- a configurable ``TTL`` (``analytics.ttl_days``).

**Servers older than 20.1** (Debian ships ClickHouse 18.16) have no ``DateTime64`` and no
``TTL``: there ``timestamp`` is a ``DateTime('UTC')`` with a ``timestamp_ms UInt16`` column
beside it (so no millisecond is lost), and retention is a periodic ``ALTER TABLE ... DELETE``
run by the sink (:func:`retention_sql`). :class:`Flavor` tells queries which table they read.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE = "events"

# (name, CVAT's type) in CVAT's table order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("scope", "String"),
    ("obj_name", "Nullable(String)"),
    ("obj_id", "Nullable(UInt64)"),
    ("obj_val", "Nullable(String)"),
    ("source", "String"),
    ("timestamp", "DateTime64(3, 'Etc/UTC')"),
    ("count", "Nullable(UInt16)"),
    ("duration", "UInt32 DEFAULT toUInt32(0)"),
    ("project_id", "Nullable(UInt64)"),
    ("task_id", "Nullable(UInt64)"),
    ("job_id", "Nullable(UInt64)"),
    ("user_id", "Nullable(UInt64)"),
    ("user_name", "Nullable(String)"),
    ("user_email", "Nullable(String)"),
    ("org_id", "Nullable(UInt64)"),
    ("org_slug", "Nullable(String)"),
    ("payload", "Nullable(String)"),
    ("access_token_id", "Nullable(UInt64) DEFAULT NULL"),
    ("remote_addr", "Nullable(String) DEFAULT NULL"),
)
NAMES: tuple[str, ...] = tuple(name for name, _ in COLUMNS)
# The columns CVAT's two migrations added to a table that predates them.
LATE_COLUMNS = ("access_token_id", "remote_addr")
# Columns of the CSV export: everything but remote_addr, as CVAT.
EXPORT_NAMES: tuple[str, ...] = tuple(n for n in NAMES if n != "remote_addr")

SORTING_KEY = (
    "ifNull(org_id, 0)",
    "toDate(timestamp)",
    "scope",
    "ifNull(user_id, 0)",
    "ifNull(project_id, 0)",
    "ifNull(task_id, 0)",
    "ifNull(job_id, 0)",
    "timestamp",
)
_INDEXES = (
    "INDEX ix_user user_id TYPE minmax GRANULARITY 4",
    "INDEX ix_project project_id TYPE minmax GRANULARITY 4",
    "INDEX ix_task task_id TYPE minmax GRANULARITY 4",
    "INDEX ix_job job_id TYPE minmax GRANULARITY 4",
    "INDEX ix_scope scope TYPE set(256) GRANULARITY 4",
)


@dataclass(frozen=True)
class Flavor:
    """What the engine supports: ``modern`` (DateTime64, TTL, JSON functions; 20.1 and
    later, chdb) or the legacy table (18.x/19.x)."""

    modern: bool
    version: str = ""

    @classmethod
    def of_version(cls, version: str) -> Flavor:
        parts = version.split(".")
        try:
            major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            return cls(modern=True, version=version)
        return cls(modern=(major, minor) >= (20, 1), version=version)

    @property
    def ts_ms(self) -> str:
        """The event time as milliseconds since the epoch (an SQL expression)."""
        if self.modern:
            return "toUnixTimestamp64Milli(timestamp)"
        return "(toUInt64(toUInt32(timestamp)) * 1000 + timestamp_ms)"

    @property
    def ts_text(self) -> str:
        """The event time as CVAT's CSV prints it (Python's ``str`` of an aware UTC datetime:
        ``2026-01-01 00:00:00.001000+00:00``, no fraction at a whole second), in SQL that old
        servers know too."""
        if self.modern:
            seconds, ms = (
                "toString(toDateTime(timestamp, 'UTC'))",
                "(toUnixTimestamp64Milli(timestamp) % 1000)",
            )
        else:
            seconds, ms = "toString(timestamp)", "timestamp_ms"
        return (
            f"if({ms} = 0, concat({seconds}, '+00:00'), "
            f"concat({seconds}, '.', substring(toString(1000 + {ms}), 2), '000+00:00'))"
        )

    def column_type(self, name: str, type_: str) -> str:
        if self.modern or name != "timestamp":
            return type_
        return "DateTime('UTC')"

    def names(self) -> tuple[str, ...]:
        """The table's columns, in order, as this flavor stores them."""
        return NAMES if self.modern else (*NAMES, "timestamp_ms")


def quote_ident(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def table(database: str) -> str:
    return f"{quote_ident(database)}.{TABLE}"


def ttl_clause(flavor: Flavor, ttl_days: int) -> str:
    if not flavor.modern or ttl_days <= 0:
        return ""
    return f"toDateTime(timestamp) + toIntervalDay({int(ttl_days)})"


def create_sql(database: str, flavor: Flavor, ttl_days: int) -> list[str]:
    """Statements that create the database and the table when missing."""
    columns = [f"{quote_ident(n)} {flavor.column_type(n, t)}" for n, t in COLUMNS]
    if not flavor.modern:
        columns.append("`timestamp_ms` UInt16 DEFAULT 0")
    else:
        columns.extend(_INDEXES)
    ttl = ttl_clause(flavor, ttl_days)
    return [
        f"CREATE DATABASE IF NOT EXISTS {quote_ident(database)}",
        f"CREATE TABLE IF NOT EXISTS {table(database)} (\n  "
        + ",\n  ".join(columns)
        + "\n) ENGINE = MergeTree\nPARTITION BY toYYYYMM(timestamp)\n"
        + f"ORDER BY ({', '.join(SORTING_KEY)})\n"
        + (f"TTL {ttl}\n" if ttl else "")
        + "SETTINGS index_granularity = 8192",
    ]


def add_column_sql(database: str, flavor: Flavor, name: str) -> str:
    type_ = dict(COLUMNS)[name]
    return (
        f"ALTER TABLE {table(database)} ADD COLUMN {quote_ident(name)} "
        f"{flavor.column_type(name, type_)}"
    )


def modify_ttl_sql(database: str, flavor: Flavor, ttl_days: int) -> str | None:
    """The statement that sets the table's TTL to ``ttl_days`` (None: nothing to set)."""
    ttl = ttl_clause(flavor, ttl_days)
    if not ttl:
        return f"ALTER TABLE {table(database)} REMOVE TTL" if flavor.modern else None
    return f"ALTER TABLE {table(database)} MODIFY TTL {ttl}"


def retention_sql(database: str, flavor: Flavor, ttl_days: int) -> str | None:
    """The periodic delete that stands in for a TTL on legacy servers."""
    if flavor.modern or ttl_days <= 0:
        return None
    return f"ALTER TABLE {table(database)} DELETE WHERE timestamp < now() - {int(ttl_days) * 86400}"
