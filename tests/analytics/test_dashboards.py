"""CVAT's three Grafana dashboards: valid JSON with their uids and panels, and every panel's
and variable's SQL runs on the embedded engine (Grafana's macros filled in as the ClickHouse
data source fills them) against a table with events in it."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from cvat_ray.analytics.store import forget_store, open_store
from cvat_ray.cluster.settings import AnalyticsSettings
from cvat_ray.storage.events.rows import empty_row, now_ms

DASHBOARDS = Path(__file__).resolve().parents[2] / "analytics" / "dashboards"
EXPECTED = {
    "all_events.json": ("EIGSTDAVz", "All events"),
    "management.json": ("w0if6WAVz", "Management"),
    "monitoring.json": ("WvDvWK04k", "Monitoring"),
}


def _fill(sql: str, database: str) -> str:
    """Grafana's macros and variables as the data source would expand them ("All")."""
    sql = sql.replace("cvat.events", f"{database}.events")
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)",
        r"\1 >= now() - INTERVAL 7 DAY AND \1 <= now() + INTERVAL 1 HOUR",
        sql,
    )
    sql = re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(\1, INTERVAL 60 second)", sql)
    sql = sql.replace("$__interval_s", "60")
    return re.sub(r"\$\{\w+:singlequote\}", "'-1'", sql)


def _queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    found = [(p["title"], t["rawSql"]) for p in board["panels"] for t in p["targets"]]
    found += [(f"${v['name']}", v["query"]) for v in board["templating"]["list"]]
    return found


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_queries_run(name: str, tmp_path: Path) -> None:
    board = json.loads((DASHBOARDS / name).read_text())
    assert (board["uid"], board["title"]) == EXPECTED[name]
    settings = AnalyticsSettings(database=f"t_{uuid.uuid4().hex[:12]}")
    store = open_store(settings, tmp_path / "chdb")
    try:
        t = now_ms()
        rows = []
        for scope, source, payload, duration in (
            ("load:cvat", "client", '{"platform":{"name":"Chrome","os":{"family":"Linux"}}}', 0),
            ("send:working_time", "server", '{"working_time":5000}', 5000),
            ("send:exception", "client", '{"message":"boom","stack":"at x"}', 0),
            ("read:cache_item", "server", '{"cache_item":{"size":1048576}}', 3),
        ):
            row = empty_row(scope, source, t)
            row.update(payload=payload, duration=duration, user_id=1, user_name="alice", job_id=4)
            rows.append(row)
        store.insert(rows)
        for title, sql in _queries(board):
            result = store.execute(_fill(sql, store.database))
            assert result is not None, title
        if name == "management.json":
            working = next(sql for title, sql in _queries(board) if title == "Working time")
            (found,) = store.execute(_fill(working, store.database))
            assert found[1] == "alice" and found[5] == pytest.approx(5000 / 3_600_000, abs=1e-3)
    finally:
        forget_store(settings, tmp_path / "chdb")
