"""Domain changes become CVAT's event rows (storage/events/rows.py)."""

from __future__ import annotations

import json

from cvat_ray.analytics.schema import NAMES
from cvat_ray.storage.changes import Actor, Change, Scope
from cvat_ray.storage.events.rows import COLUMNS, server_rows

ACTOR = Actor(
    user_id=3,
    username="alice",
    org_id=9,
    access_token_id=4,
    request_id="rq-1",
    remote_addr="10.0.0.7",
)


def test_the_row_columns_are_the_clickhouse_tables() -> None:
    assert COLUMNS == NAMES


def test_update_gives_one_event_per_changed_field_with_its_old_value() -> None:
    before = {"id": 5, "name": "old", "assignee": None, "updated_date": "a", "stage": "annotation"}
    after = {
        "id": 5,
        "name": "new",
        "assignee": {"id": 2},
        "updated_date": "b",
        "stage": "annotation",
    }
    rows = server_rows(
        Change(
            "update",
            "task",
            after=after,
            before=before,
            scope_ids=Scope(org_id=9, project_id=1),
            actor=ACTOR,
        ),
        user_email="a@x",
        org_slug="org",
    )
    by_field = {r["obj_name"]: r for r in rows}
    assert set(by_field) == {"name", "assignee"}  # updated_date alone is no event
    name = by_field["name"]
    assert name["scope"] == "update:task" and name["source"] == "server"
    assert name["obj_val"] == "new" and name["obj_id"] == 5 and name["task_id"] == 5
    assert json.loads(name["payload"]) == {"old_value": "old", "request": {"id": "rq-1"}}
    assert json.loads(by_field["assignee"]["obj_val"]) == {"id": 2}
    assert name["user_id"] == 3 and name["user_name"] == "alice" and name["user_email"] == "a@x"
    assert name["org_id"] == 9 and name["org_slug"] == "org" and name["project_id"] == 1
    assert name["access_token_id"] == 4 and name["remote_addr"] == "10.0.0.7"
    assert set(name) == set(COLUMNS)


def test_an_update_of_updated_date_only_gives_nothing() -> None:
    change = Change(
        "update", "job", after={"id": 1, "updated_date": "b"}, before={"id": 1, "updated_date": "a"}
    )
    assert server_rows(change) == []


def test_create_and_delete_name_the_object() -> None:
    created = server_rows(
        Change("create", "project", after={"id": 2, "name": "P", "x": None}, actor=ACTOR)
    )[0]
    assert created["scope"] == "create:project" and created["obj_name"] == "P"
    assert created["obj_id"] == 2 and created["project_id"] == 2
    assert json.loads(created["payload"]) == {"id": 2, "name": "P", "request": {"id": "rq-1"}}
    deleted = server_rows(
        Change(
            "delete",
            "membership",
            before={"id": 8, "user": {"username": "bob"}, "role": "worker"},
            scope_ids=Scope(org_id=9),
            actor=ACTOR,
        )
    )[0]
    assert (
        deleted["scope"] == "delete:membership"
        and deleted["obj_id"] == 8
        and deleted["org_id"] == 9
    )


def test_extra_event_fields_for_annotations_and_calls() -> None:
    change = Change(
        "create",
        "shapes",
        scope_ids=Scope(task_id=4, job_id=6),
        actor=ACTOR,
        extra={"event": {"obj_name": "shapes", "count": 3, "payload": {"ids": [1, 2, 3]}}},
    )
    row = server_rows(change)[0]
    assert row["scope"] == "create:shapes" and row["count"] == 3 and row["job_id"] == 6
    assert json.loads(row["payload"])["ids"] == [1, 2, 3]
