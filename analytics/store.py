"""Where events go: a ClickHouse server (clickhouse-driver, native protocol) or the embedded
chdb engine. Both answer the same SQL (:mod:`cvat_ray.analytics.queries`) with plain tuples.

chdb keeps its data in one folder that one process may open: only the events sink's process
opens it (:func:`open_store` is called by the sink, its export handler and its queries). A
process holds one chdb folder at a time; asking for another closes the first.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cvat_ray.analytics.schema import (
    COLUMNS,
    LATE_COLUMNS,
    Flavor,
    add_column_sql,
    create_sql,
    modify_ttl_sql,
    quote_ident,
    table,
    ttl_clause,
)
from cvat_ray.cluster.settings import AnalyticsSettings

logger = logging.getLogger("cvat_ray.analytics")

Row = Mapping[str, Any]
_INT_COLUMNS = {n for n, t in COLUMNS if "Int" in t}


class StoreUnavailable(RuntimeError):
    """ClickHouse cannot be reached or refused the statement."""


class EventStore(Protocol):
    database: str
    flavor: Flavor

    def execute(self, sql: str) -> list[tuple[Any, ...]]: ...

    def stream(self, sql: str) -> Iterator[tuple[Any, ...]]: ...

    def insert(self, rows: Sequence[Row]) -> None: ...

    def close(self) -> None: ...


def _ms_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _value(name: str, value: Any) -> Any:
    if value is None:
        return 0 if name == "duration" else None
    if name in _INT_COLUMNS:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None
    return value if isinstance(value, str) else str(value)


def render(sql: str, params: Mapping[str, Any]) -> str:
    """Fill ``{name}`` placeholders with SQL literals (ints, floats, strings, lists of them)."""

    def literal(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, list | tuple | set | frozenset):
            return "(" + ", ".join(literal(v) for v in value) + ")"
        text = str(value).replace("\\", "\\\\").replace("'", "\\'")
        return f"'{text}'"

    return sql.format(**{k: literal(v) for k, v in params.items()})


# ------------------------------------------------------------------------------ server


class ServerStore:
    """A ClickHouse server through clickhouse-driver (the operator's host; not a user's
    address, so not the outbound guard's business)."""

    def __init__(self, settings: AnalyticsSettings) -> None:
        self.settings = settings
        self.database = settings.database
        self._lock = threading.Lock()
        self._client = self._new_client()
        try:
            version = str(self._client.execute("SELECT version()")[0][0])
        except Exception as exc:
            self._client.disconnect()
            raise StoreUnavailable(f"ClickHouse at {settings.host}:{settings.port}: {exc}") from exc
        self.flavor = Flavor.of_version(version)

    def _new_client(self) -> Any:
        from clickhouse_driver import Client

        s = self.settings
        return Client(
            host=s.host or "127.0.0.1",
            port=s.port,
            user=s.user,
            password=s.password.get_secret_value() if s.password else "",
            database="default",
            secure=s.secure,
            verify=s.verify,
            connect_timeout=s.connect_timeout_s,
            send_receive_timeout=300,
            settings={"strings_as_bytes": False},
        )

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return list(self._client.execute(sql))
            except Exception as exc:
                self._client.disconnect()
                raise StoreUnavailable(str(exc).splitlines()[0][:500]) from exc

    def stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        """Rows as they come, on a connection of its own (inserts go on meanwhile)."""
        client = self._new_client()
        try:
            yield from client.execute_iter(sql, settings={"max_block_size": 65536})
        finally:
            client.disconnect()

    def insert(self, rows: Sequence[Row]) -> None:
        names = self.flavor.names()
        values: list[tuple[Any, ...]] = []
        for row in rows:
            ms = int(row["timestamp"])
            when = _ms_datetime(ms)
            out = [
                when if n == "timestamp" else _value(n, row.get(n))
                for n in names
                if n != "timestamp_ms"
            ]
            if not self.flavor.modern:
                out[names.index("timestamp")] = when.replace(microsecond=0)
                out.append(ms % 1000)
            values.append(tuple(out))
        cols = ", ".join(quote_ident(n) for n in names)
        sql = f"INSERT INTO {table(self.database)} ({cols}) VALUES"
        with self._lock:
            try:
                self._client.execute(sql, values, types_check=False)
            except Exception as exc:
                self._client.disconnect()
                raise StoreUnavailable(str(exc).splitlines()[0][:500]) from exc

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()


# ------------------------------------------------------------------------------ chdb


class ChdbStore:
    """The embedded engine (chdb), its data in ``path``."""

    def __init__(self, path: Path, database: str) -> None:
        from chdb import session

        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.database = database
        self._lock = threading.Lock()
        self._session = session.Session(str(path))  # type: ignore[no-untyped-call]
        version = self.execute("SELECT version()")[0][0]
        self.flavor = Flavor.of_version(str(version))

    def _query(self, sql: str) -> bytes:
        try:
            result = self._session.query(sql, "JSONCompactEachRow")  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise StoreUnavailable(str(exc).splitlines()[0][:500]) from exc
        data: bytes = result.bytes() if result is not None else b""
        return data

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        with self._lock:
            data = self._query(sql)
        return [tuple(json.loads(line)) for line in data.splitlines() if line]

    def stream(self, sql: str) -> Iterator[tuple[Any, ...]]:
        with self._lock:
            try:
                result = self._session.send_query(sql, "JSONCompactEachRow")
            except Exception as exc:
                raise StoreUnavailable(str(exc).splitlines()[0][:500]) from exc
            rest = b""
            for chunk in result:
                data = rest + chunk.bytes()
                lines = data.split(b"\n")
                rest = lines.pop()
                for line in lines:
                    if line:
                        yield tuple(json.loads(line))
            if rest.strip():
                yield tuple(json.loads(rest))

    def insert(self, rows: Sequence[Row]) -> None:
        names = self.flavor.names()
        lines = []
        for row in rows:
            out = {
                n: _value(n, row.get(n)) for n in names if n not in ("timestamp", "timestamp_ms")
            }
            out["timestamp"] = _ms_datetime(int(row["timestamp"])).strftime("%Y-%m-%d %H:%M:%S.%f")[
                :-3
            ]
            lines.append(json.dumps(out, separators=(",", ":"), ensure_ascii=False))
        sql = f"INSERT INTO {table(self.database)} FORMAT JSONEachRow\n" + "\n".join(lines)
        with self._lock:
            self._query(sql)

    def close(self) -> None:
        with self._lock:
            self._session.close()  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------------------ opening


def migrate(store: EventStore, ttl_days: int) -> Flavor:
    """Create the database and table when missing, add CVAT's later columns to an older
    table, and set the TTL; safe to run at every start. The flavor of the table as it is."""
    engine = store.flavor
    for sql in create_sql(store.database, engine, ttl_days):
        store.execute(sql)
    db = store.database.replace("'", "\\'")
    columns = {
        str(name): str(type_)
        for name, type_ in store.execute(
            f"SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'events'"
        )
    }
    flavor = Flavor(modern="DateTime64" in columns.get("timestamp", ""), version=engine.version)
    for name in LATE_COLUMNS:
        if name not in columns:
            store.execute(add_column_sql(store.database, flavor, name))
    if not flavor.modern and "timestamp_ms" not in columns:
        store.execute(f"ALTER TABLE {table(store.database)} ADD COLUMN timestamp_ms UInt16")
    if flavor.modern:
        engine_full = str(
            store.execute(
                f"SELECT engine_full FROM system.tables WHERE database = '{db}' AND name = 'events'"
            )[0][0]
        )
        has_ttl = " TTL " in f" {engine_full} "
        want = ttl_clause(flavor, ttl_days)
        if (want and f"toIntervalDay({ttl_days})" not in engine_full) or (not want and has_ttl):
            alter = modify_ttl_sql(store.database, flavor, ttl_days)
            if alter:
                store.execute(alter)
    store.flavor = flavor
    return flavor


_open_lock = threading.Lock()
_stores: dict[str, EventStore] = {}


def store_key(settings: AnalyticsSettings, chdb_path: Path) -> str:
    if settings.host:
        return f"server:{settings.host}:{settings.port}/{settings.database}"
    return f"chdb:{chdb_path.resolve()}/{settings.database}"


def open_store(settings: AnalyticsSettings, chdb_path: Path) -> EventStore:
    """This process's store for these settings, opened (and migrated) on first use."""
    key = store_key(settings, chdb_path)
    with _open_lock:
        store = _stores.get(key)
        if store is not None:
            return store
        if settings.host:
            store = ServerStore(settings)
        else:
            for other in [k for k in _stores if k.startswith("chdb:")]:
                _stores.pop(other).close()  # one chdb folder per process
            store = ChdbStore(chdb_path, settings.database)
        try:
            migrate(store, settings.ttl_days)
        except Exception:
            store.close()
            raise
        _stores[key] = store
        return store


def forget_store(settings: AnalyticsSettings, chdb_path: Path) -> None:
    """Drop (and close) the store after a failure, so the next use connects again."""
    with _open_lock:
        store = _stores.pop(store_key(settings, chdb_path), None)
    if store is not None:
        try:
            store.close()
        except Exception:
            logger.debug("closing the events store failed", exc_info=True)
