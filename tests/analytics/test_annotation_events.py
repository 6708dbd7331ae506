"""Annotation events as CVAT's: one ``<action>:tags`` event, one ``<action>:shapes`` and
``<action>:tracks`` event per shape type; what a function run writes makes the same events as
a user's save, named after the run's owner and the request that asked for it. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cvat_ray.actors.analytics import chdb_path
from cvat_ray.analytics.store import forget_store
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from tests.analytics.test_events_api import pending_rows
from tests.conftest import Account
from tests.factories import colour_task, make_task, poll, scenes, wait

SCOPES = ("tags", "shapes", "tracks")


@pytest.fixture(autouse=True)
def _one_store(engine: str, settings: Settings) -> Any:
    if engine != "chdb":
        pytest.skip("the events are the same on both stores")
    yield
    forget_store(settings.analytics, chdb_path(settings))


def annotation_rows(db: Database) -> list[dict[str, Any]]:
    return [r for r in pending_rows(db) if r["scope"].split(":")[-1] in SCOPES]


def _ids(row: dict[str, Any]) -> list[int]:
    section = row["scope"].split(":")[1]
    return [o["id"] for o in json.loads(row["payload"])[section]]


async def test_a_save_makes_one_event_per_shape_type(
    client_for: Any, alice: Account, db: Database
) -> None:
    api = client_for(alice)
    task = await make_task(api, db, frames=4)
    cat = task["labels_by_name"]["cat"]["id"]
    job_id = task["job_ids"][0]
    box = {"type": "rectangle", "label_id": cat, "points": [1, 2, 3, 4]}
    body = {
        "tags": [{"frame": 0, "label_id": cat}],
        "shapes": [
            {**box, "frame": 0},
            {**box, "frame": 1},
            {"type": "polygon", "frame": 0, "label_id": cat, "points": [1, 1, 5, 1, 5, 5]},
        ],
        "tracks": [
            {
                "frame": 0,
                "label_id": cat,
                "shapes": [{**box, "frame": 0}, {**box, "frame": 2, "outside": True}],
            }
        ],
    }
    rid = str(uuid.uuid4())
    r = await api.put(f"/api/jobs/{job_id}/annotations", json=body, headers={"X-Request-Id": rid})
    assert r.status_code == 200, r.text
    saved = r.json()
    rows = annotation_rows(db)
    got = sorted((row["scope"], row["obj_name"], row["count"]) for row in rows)
    assert got == [
        ("create:shapes", "polygon", 1),
        ("create:shapes", "rectangle", 2),
        ("create:tags", None, 1),
        ("create:tracks", "rectangle", 1),
    ]
    by_type = {(row["scope"], row["obj_name"]): row for row in rows}
    boxes = sorted(s["id"] for s in saved["shapes"] if s["type"] == "rectangle")
    assert sorted(_ids(by_type[("create:shapes", "rectangle")])) == boxes
    track = json.loads(by_type[("create:tracks", "rectangle")]["payload"])["tracks"][0]
    assert track["id"] == saved["tracks"][0]["id"]
    known = [s["id"] for s in saved["tracks"][0]["shapes"] if s["id"] is not None]
    assert [s["id"] for s in track["shapes"]] == known
    for row in rows:
        assert (row["job_id"], row["task_id"], row["user_id"]) == (job_id, task["id"], alice.id)
        assert json.loads(row["payload"])["request"] == {"id": rid}

    # a delete names the same types
    r = await api.patch(
        f"/api/jobs/{job_id}/annotations?action=delete",
        json={"shapes": [s for s in saved["shapes"] if s["type"] == "polygon"]},
    )
    assert r.status_code == 200, r.text
    deleted = [row for row in annotation_rows(db) if row["scope"].startswith("delete:")]
    assert [(row["scope"], row["obj_name"], row["count"]) for row in deleted] == [
        ("delete:shapes", "polygon", 1)
    ]


async def _register_functions(db: Database) -> None:
    from cvat_ray.serve_apps.deploy import builtin_spec_dir
    from cvat_ray.storage.functions.spec import load_spec_file, spec_files
    from cvat_ray.storage.services import lambda_functions

    with db.session() as session:
        for path in spec_files(builtin_spec_dir()):
            lambda_functions.register(session, load_spec_file(path), "builtin")


async def test_function_runs_make_the_events_of_a_save(
    client_for: Any, alice: Account, db: Database
) -> None:
    await _register_functions(db)
    api = client_for(alice)
    task_id = await colour_task(api, [im for im, _ in scenes(3)])

    # an online call returns shapes and writes nothing: no annotation event (the client's
    # save of its results is a user's save)
    r = await api.post("/api/lambda/functions/colour-detector", json={"task": task_id, "frame": 0})
    assert r.status_code == 200, r.text
    assert r.json() and annotation_rows(db) == []

    # a whole-task request writes: create:shapes per shape type, as a save would
    rid = str(uuid.uuid4())
    r = await api.post(
        "/api/lambda/requests",
        json={"function": "colour-detector", "task": task_id},
        headers={"X-Request-Id": rid},
    )
    assert r.status_code == 200, r.text
    assert (await poll(api, r.json()["id"]))["status"] == "finished"
    shapes = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
    assert shapes
    rows = annotation_rows(db)
    assert {row["scope"] for row in rows} == {"create:shapes"}
    assert {row["obj_name"] for row in rows} == {s["type"] for s in shapes}
    assert sum(row["count"] for row in rows) == len(shapes)
    assert sorted(i for row in rows for i in _ids(row)) == sorted(s["id"] for s in shapes)
    for row in rows:
        assert (row["task_id"], row["job_id"]) == (task_id, None)
        assert (row["user_id"], row["user_name"]) == (alice.id, "alice")
        assert row["user_email"] == "alice@example.com" and row["source"] == "server"
        assert json.loads(row["payload"])["request"] == {"id": rid}

    # a run over one job names the job
    job_id = (await api.get(f"/api/jobs?task_id={task_id}&org=")).json()["results"][0]["id"]
    r = await api.post(
        "/api/lambda/requests",
        json={"function": "colour-detector", "task": task_id, "job": job_id, "cleanup": True},
    )
    assert r.status_code == 200, r.text
    assert (await poll(api, r.json()["id"]))["status"] == "finished"
    later = annotation_rows(db)[len(rows) :]
    assert later and all(row["job_id"] == job_id for row in later)
    assert {row["scope"] for row in later} == {"create:shapes"}


async def _import(api: Any, path: str, data: bytes, rid: str) -> dict[str, Any]:
    r = await api.post(
        path,
        params={"format": "CVAT 1.1"},
        files={"annotation_file": ("annotations.zip", data)},
        headers={"X-Request-Id": rid},
    )
    assert r.status_code == 202, r.text
    return await wait(api, r.json()["rq_id"])


async def test_dataset_exports_and_imports_make_cvats_events(
    client_for: Any, alice: Account, db: Database
) -> None:
    api = client_for(alice)
    task = await make_task(api, db, frames=4)
    cat = task["labels_by_name"]["cat"]["id"]
    job_id = task["job_ids"][0]
    box = {"type": "rectangle", "label_id": cat, "points": [1, 2, 3, 4]}
    body = {
        "tags": [{"frame": 1, "label_id": cat}],
        "shapes": [
            {**box, "frame": 0},
            {**box, "frame": 1},
            {**box, "frame": 2, "type": "ellipse"},
        ],
    }
    r = await api.put(f"/api/tasks/{task['id']}/annotations", json=body)
    assert r.status_code == 200, r.text
    rid = str(uuid.uuid4())
    r = await api.post(
        f"/api/tasks/{task['id']}/dataset/export",
        params={"format": "CVAT for images 1.1"},
        headers={"X-Request-Id": rid},
    )
    assert r.status_code == 202, r.text
    (export,) = [row for row in pending_rows(db) if row["scope"] == "export:dataset"]
    assert (export["task_id"], export["job_id"], export["user_id"]) == (task["id"], None, alice.id)
    assert json.loads(export["payload"]) == {
        "format": "CVAT for images 1.1",
        "save_images": False,
        "request": {"id": rid},
    }
    done = await wait(api, r.json()["rq_id"])
    assert done["status"] == "finished", done
    archive = (await api.get(done["result_url"])).content

    # a task import: the events of a PUT, under the import's owner and request
    before = len(annotation_rows(db))
    rid = str(uuid.uuid4())
    done = await _import(api, f"/api/tasks/{task['id']}/annotations/", archive, rid)
    assert done["status"] == "finished", done
    shapes = (await api.get(f"/api/tasks/{task['id']}/annotations")).json()["shapes"]
    (imported,) = [row for row in pending_rows(db) if row["scope"] == "import:dataset"]
    assert (imported["task_id"], imported["user_id"]) == (task["id"], alice.id)
    assert json.loads(imported["payload"]) == {"format": "CVAT 1.1", "request": {"id": rid}}
    rows = annotation_rows(db)[before:]
    got = sorted((row["scope"], row["obj_name"], row["count"]) for row in rows)
    # what the import replaced, then what it wrote (as CVAT's PUT)
    assert got == [
        ("create:shapes", "ellipse", 1),
        ("create:shapes", "rectangle", 2),
        ("create:tags", None, 1),
        ("delete:shapes", "ellipse", 1),
        ("delete:shapes", "rectangle", 2),
        ("delete:tags", None, 1),
    ]
    rows = [row for row in rows if row["scope"].startswith("create:")]
    listed = sorted(i for row in rows if row["scope"] == "create:shapes" for i in _ids(row))
    assert listed == sorted(s["id"] for s in shapes)
    for row in rows:
        assert (row["task_id"], row["job_id"]) == (task["id"], None)
        assert (row["user_id"], row["user_name"]) == (alice.id, "alice")
        assert json.loads(row["payload"])["request"] == {"id": rid}

    # a job import names the job
    before = len(annotation_rows(db))
    done = await _import(api, f"/api/jobs/{job_id}/annotations/", archive, str(uuid.uuid4()))
    assert done["status"] == "finished", done
    rows = annotation_rows(db)[before:]
    assert rows and {row["job_id"] for row in rows} == {job_id}
    jobs = [row["job_id"] for row in pending_rows(db) if row["scope"] == "import:dataset"]
    assert jobs == [None, job_id]
    created = [row for row in rows if row["scope"].startswith("create:")]
    assert sum(row["count"] for row in created) == 4

    # a failed import records nothing
    before = len(annotation_rows(db))
    done = await _import(api, f"/api/tasks/{task['id']}/annotations/", b"not a zip", "x")
    assert done["status"] == "failed", done
    assert len(annotation_rows(db)) == before


async def test_what_a_put_or_a_delete_clears_makes_delete_events(
    client_for: Any, alice: Account, db: Database
) -> None:
    """As CVAT's PUT (delete events of what it replaces, then create events) and DELETE."""
    api = client_for(alice)
    task = await make_task(api, db, frames=4)
    cat = task["labels_by_name"]["cat"]["id"]
    job_id = task["job_ids"][0]
    box = {"type": "rectangle", "label_id": cat, "points": [1, 2, 3, 4]}
    poly = {"type": "polygon", "label_id": cat, "points": [1, 1, 5, 1, 5, 5], "frame": 0}
    body = {
        "tags": [{"frame": 0, "label_id": cat}, {"frame": 1, "label_id": cat}],
        "shapes": [
            {**box, "frame": 0},
            {**box, "frame": 1},
            {"type": "points", "label_id": cat, "points": [1, 2], "frame": 2},
        ],
        "tracks": [{"frame": 0, "label_id": cat, "shapes": [poly]}],
    }
    r = await api.put(f"/api/jobs/{job_id}/annotations", json=body)
    assert r.status_code == 200, r.text
    first = r.json()

    before = len(annotation_rows(db))
    rid = str(uuid.uuid4())
    r = await api.put(
        f"/api/jobs/{job_id}/annotations",
        json={"shapes": [{**box, "frame": 3}]},
        headers={"X-Request-Id": rid},
    )
    assert r.status_code == 200, r.text
    rows = annotation_rows(db)[before:]
    assert [(row["scope"], row["obj_name"], row["count"]) for row in rows] == [
        ("delete:tags", None, 2),
        ("delete:shapes", "points", 1),
        ("delete:shapes", "rectangle", 2),
        ("delete:tracks", "polygon", 1),
        ("create:shapes", "rectangle", 1),
    ]
    by_scope = {(row["scope"], row["obj_name"]): row for row in rows}
    old_boxes = sorted(s["id"] for s in first["shapes"] if s["type"] == "rectangle")
    assert _ids(by_scope[("delete:shapes", "rectangle")]) == old_boxes
    assert _ids(by_scope[("delete:tracks", "polygon")]) == [first["tracks"][0]["id"]]
    for row in rows:
        assert (row["job_id"], row["task_id"], row["user_id"]) == (job_id, task["id"], alice.id)
        assert json.loads(row["payload"])["request"] == {"id": rid}

    # a task's DELETE names what its jobs held, at the task's level
    before = len(annotation_rows(db))
    r = await api.delete(f"/api/tasks/{task['id']}/annotations")
    assert r.status_code == 204, r.text
    rows = annotation_rows(db)[before:]
    assert [(row["scope"], row["obj_name"], row["count"], row["job_id"]) for row in rows] == [
        ("delete:shapes", "rectangle", 1, None)
    ]
    # nothing left: nothing recorded
    before = len(annotation_rows(db))
    r = await api.delete(f"/api/jobs/{job_id}/annotations")
    assert r.status_code == 204, r.text
    assert len(annotation_rows(db)) == before
