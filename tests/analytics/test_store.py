"""The events table and every query, on the embedded chdb and on a ClickHouse server."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from cvat_ray.analytics import queries
from cvat_ray.analytics.schema import EXPORT_NAMES, NAMES, table
from cvat_ray.analytics.store import EventStore, forget_store, migrate, open_store
from cvat_ray.cluster.settings import AnalyticsSettings
from cvat_ray.storage.events.rows import Row, empty_row

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def row(scope: str, t: int, **values: object) -> Row:
    r = empty_row(scope, str(values.pop("source", "client")), t)
    r.update(values)
    return r


def open_for(settings: AnalyticsSettings, tmp_path: Path) -> EventStore:
    return open_store(settings, tmp_path / "chdb")


def columns(store: EventStore) -> list[str]:
    return [str(r[0]) for r in store.execute(f"DESCRIBE TABLE {table(store.database)}")]


def test_table_created_and_migrated_idempotently(
    analytics_settings: AnalyticsSettings, tmp_path: Path
) -> None:
    store = open_for(analytics_settings, tmp_path)
    try:
        first = columns(store)
        assert first[: len(NAMES)] == list(NAMES)
        migrate(store, analytics_settings.ttl_days)  # again: nothing changes
        assert columns(store) == first
        key = store.execute(
            f"SELECT sorting_key FROM system.tables WHERE database = '{store.database}' AND name = 'events'"
        )
        if key:  # 18.16 has no sorting_key column; the engine_full check below covers it
            assert "scope" in str(key[0][0])
        engine_full = str(
            store.execute(
                f"SELECT engine_full FROM system.tables WHERE database = '{store.database}' AND name = 'events'"
            )[0][0]
        )
        assert "ifNull(user_id, 0)" in engine_full and "toYYYYMM(timestamp)" in engine_full
    finally:
        forget_store(analytics_settings, tmp_path / "chdb")


def test_ttl_is_set_and_changed(analytics_settings: AnalyticsSettings, tmp_path: Path) -> None:
    settings = analytics_settings.model_copy(update={"ttl_days": 30})
    store = open_for(settings, tmp_path)
    try:
        sql = f"SELECT engine_full FROM system.tables WHERE database = '{store.database}' AND name = 'events'"
        if store.flavor.modern:
            assert "toIntervalDay(30)" in str(store.execute(sql)[0][0])
            migrate(store, 7)
            assert "toIntervalDay(7)" in str(store.execute(sql)[0][0])
        else:  # no TTL before 19.6: the sink's periodic delete stands in
            from cvat_ray.analytics.schema import retention_sql

            delete = retention_sql(store.database, store.flavor, 30)
            assert delete is not None
            store.insert([row("load:job", T0)])
            store.execute(delete)  # runs on the old server
    finally:
        forget_store(settings, tmp_path / "chdb")


def test_a_cvat_table_without_the_later_columns_gets_them(
    analytics_settings: AnalyticsSettings, tmp_path: Path
) -> None:
    store = open_for(analytics_settings, tmp_path)
    try:
        db = store.database
        store.execute(f"DROP TABLE {table(db)}")
        ts = "DateTime64(3, 'Etc/UTC')" if store.flavor.modern else "DateTime('UTC')"
        # CVAT's original table, before its two migrations
        store.execute(
            f"CREATE TABLE {table(db)} (scope String, obj_name Nullable(String), "
            "obj_id Nullable(UInt64), obj_val Nullable(String), source String, "
            f"timestamp {ts}, count Nullable(UInt16), duration UInt32 DEFAULT toUInt32(0), "
            "project_id Nullable(UInt64), task_id Nullable(UInt64), job_id Nullable(UInt64), "
            "user_id Nullable(UInt64), user_name Nullable(String), user_email Nullable(String), "
            "org_id Nullable(UInt64), org_slug Nullable(String), payload Nullable(String)) "
            "ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (timestamp)"
        )
        migrate(store, 0)
        have = columns(store)
        assert have[: len(NAMES)] == list(NAMES)
        store.insert([row("load:job", T0 + 5, access_token_id=3, remote_addr="1.2.3.4")])
        assert store.execute(f"SELECT access_token_id, remote_addr FROM {table(db)}") == [
            (3, "1.2.3.4")
        ]
    finally:
        forget_store(analytics_settings, tmp_path / "chdb")


def _load(store: EventStore) -> None:
    store.insert(
        [
            row("load:job", T0 + 1, user_id=1, user_name="alice", job_id=5, task_id=2, org_id=7),
            row(
                "change:frame",
                T0 + 1_500,
                user_id=1,
                user_name="alice",
                job_id=5,
                count=3,
                duration=900,
            ),
            row(
                "create:task",
                T0 + 2_000,
                source="server",
                user_id=2,
                user_name="bob",
                obj_id=2,
                obj_name="T",
                payload=json.dumps({"request": {"id": "r"}}),
            ),
            row(
                "send:exception",
                T0 + 3_000,
                source="server",
                user_id=2,
                user_name="bob",
                payload=json.dumps({"message": "boom", "status_code": 500}),
            ),
            row(
                "send:working_time",
                T0 + 4_000,
                source="server",
                user_id=1,
                user_name="alice",
                job_id=5,
                task_id=2,
                duration=61_000,
                count=1,
            ),
            row(
                "send:working_time",
                T0 + 9_000,
                source="server",
                user_id=1,
                user_name="alice",
                job_id=5,
                task_id=2,
                duration=4_000,
                count=1,
            ),
        ]
    )


def test_export_csv_is_cvats(analytics_settings: AnalyticsSettings, tmp_path: Path) -> None:
    store = open_for(analytics_settings, tmp_path)
    try:
        _load(store)
        text = b"".join(queries.export_csv(store, queries.EventFilter(), 1000)).decode()
        lines = list(csv.reader(io.StringIO(text)))
        assert lines[0] == list(EXPORT_NAMES)  # CVAT's columns, no remote_addr
        scopes = [line[0] for line in lines[1:]]
        assert "send:exception" not in scopes  # never exported
        assert scopes == [
            "load:job",
            "change:frame",
            "create:task",
            "send:working_time",
            "send:working_time",
        ]
        first = dict(zip(EXPORT_NAMES, lines[1], strict=True))
        assert first["timestamp"] == "2026-01-01 00:00:00.001000+00:00"  # ms kept
        assert first["obj_id"] == "" and first["duration"] == "0" and first["job_id"] == "5"
        # every time as Python's str() of the aware datetime, as CVAT's CSV
        expected = [
            queries.format_time(ms)
            for ms in (T0 + 1, T0 + 1_500, T0 + 2_000, T0 + 4_000, T0 + 9_000)
        ]
        assert [line[EXPORT_NAMES.index("timestamp")] for line in lines[1:]] == expected
        assert expected[2] == "2026-01-01 00:00:02+00:00"
        # filters: bounds included, ids
        f = queries.EventFilter(from_ms=T0 + 1_500, to_ms=T0 + 4_000, user_id=1)
        text = b"".join(queries.export_csv(store, f, 1000)).decode()
        assert [line[0] for line in list(csv.reader(io.StringIO(text)))[1:]] == [
            "change:frame",
            "send:working_time",
        ]
        # a limit caps the rows
        assert len(b"".join(queries.export_csv(store, queries.EventFilter(), 2)).splitlines()) == 3
    finally:
        forget_store(analytics_settings, tmp_path / "chdb")


def test_dashboard_queries(analytics_settings: AnalyticsSettings, tmp_path: Path) -> None:
    store = open_for(analytics_settings, tmp_path)
    try:
        _load(store)
        answer = queries.dashboard(store, queries.EventFilter(from_ms=T0, to_ms=T0 + 60_000), 5_000)
        buckets = {(a["t"], a["source"]): a["count"] for a in answer["activity"]}
        assert buckets == {(T0, "client"): 2, (T0, "server"): 3, (T0 + 5_000, "server"): 1}
        assert answer["working_time"] == [
            {
                "user_id": 1,
                "user_name": "alice",
                "project_id": None,
                "task_id": 2,
                "job_id": 5,
                "ms": 65_000,
                "activity": 2,
            }
        ]
        assert [(e["message"], e["status_code"]) for e in answer["exceptions"]] == [("boom", 500)]
        assert {u["user_name"] for u in answer["users"]} == {"alice", "bob"}
        only_bob = queries.dashboard(store, queries.EventFilter(user_id=2), 60_000)
        assert sum(a["count"] for a in only_bob["activity"]) == 2
        assert only_bob["working_time"] == []
    finally:
        forget_store(analytics_settings, tmp_path / "chdb")
