"""Upgrades: a database at the first revision (0001), filled with the rows a server of that
time wrote (SQL for that schema), migrates to head on SQLite and PostgreSQL and answers
through the API; every migration downgrades and upgrades again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.migrate import (
    alembic_config,
    current_revision,
    drift,
    head_revision,
    upgrade,
)
from tests.conftest import drop_pg_database, make_account, new_pg_database
from tests.media_files import image_bytes

# The rows of a server at revision 0001: a user with an organization, a project with labels
# (one with an attribute), a task in it with two images in two jobs.
SQL_0001 = [
    "INSERT INTO users (id, username, email, password_hash, first_name, last_name, is_active, "
    "is_staff, is_superuser, auth_source, date_joined) VALUES "
    "(1, 'pioneer', 'p@example.com', NULL, 'Pio', 'Neer', true, false, false, 'local', :ts)",
    "INSERT INTO user_groups (user_id, group_id) SELECT 1, id FROM groups WHERE name = 'user'",
    "INSERT INTO organizations (id, slug, name, description, contact, owner_id, created_date, "
    "updated_date) VALUES (1, 'early', 'Early org', '', '{}', 1, :ts, :ts)",
    "INSERT INTO memberships (id, user_id, organization_id, role, is_active, joined_date) "
    "VALUES (1, 1, 1, 'owner', true, :ts)",
    "INSERT INTO projects (id, name, owner_id, assignee_id, bug_tracker, status, "
    "organization_id, source_storage, target_storage, created_date, updated_date) VALUES "
    "(1, 'old project', 1, NULL, '', 'annotation', NULL, NULL, NULL, :ts, :ts)",
    "INSERT INTO labels (id, task_id, project_id, parent_id, name, color, type, svg) VALUES "
    "(1, NULL, 1, NULL, 'car', '#ff0000', 'rectangle', ''), "
    "(2, NULL, 1, NULL, 'tree', '#00ff00', 'any', '')",
    "INSERT INTO attribute_specs (id, label_id, name, mutable, input_type, default_value, "
    "\"values\") VALUES (1, 1, 'colour', false, 'select', 'red', 'red\ngreen')",
    "INSERT INTO data (id, size, chunk_size, image_quality, start_frame, stop_frame, "
    "frame_filter, compressed_chunk_type, original_chunk_type, storage_method, storage, "
    "sorting_method, cloud_storage_id, deleted_frames, chunks_updated_date) VALUES "
    "(1, 2, 36, 70, 0, 1, '', 'imageset', 'imageset', 'cache', 'local', 'lexicographical', "
    "NULL, '[]', :ts)",
    "INSERT INTO data_frames (id, data_id, frame, path, width, height, related_files) VALUES "
    "(1, 1, 0, 'a.jpg', 32, 24, 0), (2, 1, 1, 'b.jpg', 32, 24, 0)",
    "INSERT INTO tasks (id, name, project_id, owner_id, assignee_id, bug_tracker, mode, "
    "overlap, segment_size, status, subset, dimension, media_type, consensus_replicas, "
    "data_id, organization_id, source_storage, target_storage, created_date, updated_date) "
    "VALUES (1, 'old task', 1, 1, NULL, '', 'annotation', 0, 1, 'annotation', 'train', '2d', "
    "'image', 0, 1, NULL, NULL, NULL, :ts, :ts)",
    "INSERT INTO segments (id, task_id, start_frame, stop_frame, type, frames) VALUES "
    "(1, 1, 0, 0, 'range', NULL), (2, 1, 1, 1, 'range', NULL)",
    "INSERT INTO jobs (id, segment_id, task_id, assignee_id, status, stage, state, type, "
    "parent_job_id, created_date, updated_date) VALUES "
    "(1, 1, 1, NULL, 'annotation', 'annotation', 'new', 'annotation', NULL, :ts, :ts), "
    "(2, 2, 1, NULL, 'completed', 'acceptance', 'completed', 'annotation', NULL, :ts, :ts)",
]

# PostgreSQL's sequences do not move for explicit ids: as a server of the time left them.
SEQUENCES_0001 = ["users", "organizations", "memberships", "projects", "labels",
                  "attribute_specs", "data", "data_frames", "tasks", "segments", "jobs"]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    made = new_pg_database(request.getfixturevalue("pg_server_url"))
    yield made
    drop_pg_database(made)


def _fill_0001(db: Database) -> None:
    postgres = db.engine.dialect.name == "postgresql"
    moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    ts = moment if postgres else moment.replace(tzinfo=None)
    with db.engine.begin() as connection:
        for statement in SQL_0001:
            connection.execute(text(statement), {"ts": ts})
        if postgres:
            for table in SEQUENCES_0001:
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT MAX(id) FROM {table}))"
                    )
                )


async def test_a_0001_database_upgrades_and_serves(url: str, tmp_path: Path) -> None:
    db = Database(url, pool_size=2)
    upgrade(db.engine, "0001")
    assert current_revision(db.engine) == "0001"
    _fill_0001(db)
    settings = Settings(data_dir=tmp_path / "data")
    frames = {"a.jpg": image_bytes(32, 24, (200, 0, 0)), "b.jpg": image_bytes(32, 24, (0, 0, 200))}
    raw = settings.media_dir / "data" / "1" / "raw"
    raw.mkdir(parents=True)
    for name, data in frames.items():
        (raw / name).write_bytes(data)

    upgrade(db.engine)  # what `cvat-ray migrate` and `up` do
    assert current_revision(db.engine) == head_revision()
    assert drift(db.engine) == []
    admin = make_account(db, "root", ("admin",))
    app = build_app(settings, db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Token {admin.token}"},
    ) as api:
        users = (await api.get("/api/users?username=pioneer")).json()["results"]
        assert [(u["username"], u["first_name"], u["groups"]) for u in users] == [
            ("pioneer", "Pio", ["user"])
        ]
        org = (await api.get("/api/organizations")).json()["results"]
        assert [(o["slug"], o["owner"]["username"]) for o in org] == [("early", "pioneer")]
        task = (await api.get("/api/tasks/1")).json()
        assert (task["name"], task["size"], task["project_id"], task["subset"]) == (
            "old task", 2, 1, "train",
        )  # fmt: skip
        assert task["created_date"].startswith("2024-01-02T03:04:05")
        jobs = (await api.get("/api/jobs?task_id=1&org=&sort=id")).json()["results"]
        assert [(j["start_frame"], j["stop_frame"], j["status"]) for j in jobs] == [
            (0, 0, "annotation"),
            (1, 1, "completed"),
        ]
        labels = (await api.get("/api/labels?project_id=1&org=")).json()["results"]
        car = next(lbl for lbl in labels if lbl["name"] == "car")
        assert car["attributes"][0]["values"] == ["red", "green"]
        meta = (await api.get("/api/tasks/1/data/meta")).json()
        assert [f["name"] for f in meta["frames"]] == ["a.jpg", "b.jpg"]
        r = await api.get("/api/tasks/1/data?type=frame&number=1&quality=original")
        assert r.content == frames["b.jpg"]
        # what later revisions added works on the old rows: annotations (0003)
        r = await api.put(
            "/api/tasks/1/annotations",
            json={"shapes": [{"type": "rectangle", "frame": 1, "label_id": 1,
                              "points": [1, 2, 3, 4],
                              "attributes": [{"spec_id": 1, "value": "green"}]}]},
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert len((await api.get("/api/jobs/2/annotations")).json()["shapes"]) == 1
        # and new rows get fresh ids
        r = await api.post("/api/tasks", json={"name": "new", "project_id": 1})
        assert r.status_code == 201 and r.json()["id"] == 2, r.text
    db.dispose()


def test_every_migration_downgrades(url: str) -> None:
    """Down one revision at a time to nothing, and up again to a schema without drift."""
    db = Database(url, pool_size=2)
    upgrade(db.engine)
    script = ScriptDirectory.from_config(alembic_config(url))
    revisions = [r.revision for r in script.walk_revisions()]  # head first
    cfg = alembic_config(url)
    for revision in revisions:
        assert current_revision(db.engine) == revision
        with db.engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "-1")
    assert current_revision(db.engine) is None
    upgrade(db.engine)
    assert current_revision(db.engine) == head_revision()
    assert drift(db.engine) == []
    db.dispose()
