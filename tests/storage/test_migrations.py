"""Migrations apply from empty to head on both databases, twice, and match the models."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, select

from cvat_ray.storage.db import Database
from cvat_ray.storage.migrate import current_revision, drift, head_revision, upgrade
from cvat_ray.storage.models import Group
from tests.conftest import drop_pg_database, new_pg_database


def _check(url: str) -> None:
    db = Database(url)
    try:
        assert current_revision(db.engine) is None
        upgrade(db.engine)
        upgrade(db.engine)  # idempotent
        assert current_revision(db.engine) == head_revision()
        assert drift(db.engine) == []
        tables = set(inspect(db.engine).get_table_names())
        assert {"users", "projects", "tasks", "jobs", "segments", "labels", "requests"} <= tables
        with db.session() as session:
            groups = session.scalars(select(Group.name).order_by(Group.id)).all()
        assert groups == ["admin", "business", "user", "worker"]
    finally:
        db.dispose()


def test_sqlite_from_empty_to_head(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'fresh.db'}")


def test_postgres_from_empty_to_head(pg_server_url: str) -> None:
    url = new_pg_database(pg_server_url)
    try:
        _check(url)
    finally:
        drop_pg_database(url)


def test_drift_is_detected(tmp_path: Path) -> None:
    """The drift check itself works: a database missing a column reports it."""
    db = Database(f"sqlite:///{tmp_path / 'drift.db'}")
    upgrade(db.engine)
    with db.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE tasks DROP COLUMN subset")
    diffs = drift(db.engine)
    db.dispose()
    assert any("subset" in repr(d) for d in diffs)
