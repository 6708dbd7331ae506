"""Projects and tasks: CRUD with labels, validation, cascades."""

from __future__ import annotations

import httpx
import pytest

from cvat_ray.storage.db import Database
from tests.conftest import Account
from tests.factories import LABELS, add_frames


async def test_project_crud(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    r = await api.post("/api/projects", json={"name": "proj", "labels": LABELS})
    assert r.status_code == 201, r.text
    project = r.json()
    assert project["owner"]["username"] == "alice"
    assert project["tasks"]["count"] == 0
    assert project["url"].startswith("http://testserver/api/projects/")
    r = await api.get(f"/api/labels?project_id={project['id']}&org=&page=1")
    labels = r.json()["results"]
    assert [lbl["name"] for lbl in labels] == ["cat", "dog", "person"]
    dog = labels[1]
    assert [a["name"] for a in dog["attributes"]] == ["color", "age", "good", "note"]
    assert dog["attributes"][1]["default_value"] == "0"
    assert dog["attributes"][2]["values"] == ["true"]
    person = labels[2]
    assert person["type"] == "skeleton"
    assert [s["name"] for s in person["sublabels"]] == ["head", "hand"]
    assert labels[0]["color"] == "#ff0000" and labels[1]["color"].startswith("#")

    r = await api.patch(
        f"/api/projects/{project['id']}", json={"name": "renamed", "bug_tracker": "http://bt"}
    )
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert r.json()["updated_date"] > project["updated_date"]
    r = await api.get("/api/projects")
    assert r.json()["count"] == 1
    r = await api.delete(f"/api/projects/{project['id']}")
    assert r.status_code == 204
    r = await api.get(f"/api/projects/{project['id']}")
    assert r.status_code == 404


async def test_task_crud_and_jobs(client_for, db: Database, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    r = await api.post("/api/tasks", json={"name": "t", "labels": LABELS, "segment_size": 4})
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["size"] == 0 and task["jobs"]["count"] == 0
    assert task["mode"] == "" and task["status"] == "annotation"
    assert task["jobs"] == {
        "url": f"http://testserver/api/jobs?task_id={task['id']}",
        "count": 0,
        "completed": 0,
        "validation": 0,
    }
    add_frames(db, task["id"], 10)
    r = await api.get(f"/api/tasks/{task['id']}")
    task2 = r.json()
    assert task2["size"] == 10 and task2["mode"] == "annotation"
    assert task2["data_original_chunk_type"] == "imageset" and task2["data_chunk_size"] > 0
    assert task2["updated_date"] > task["updated_date"]
    r = await api.get(f"/api/jobs?task_id={task['id']}&org=&page=1")
    jobs = r.json()["results"]
    assert sorted((j["start_frame"], j["stop_frame"]) for j in jobs) == [(0, 3), (4, 7), (8, 9)]
    assert all(j["frame_count"] == j["stop_frame"] - j["start_frame"] + 1 for j in jobs)
    r = await api.delete(f"/api/tasks/{task['id']}")
    assert r.status_code == 204
    r = await api.get(f"/api/jobs?task_id={task['id']}")
    assert r.json()["count"] == 0
    r = await api.get(f"/api/jobs/{jobs[0]['id']}")
    assert r.status_code == 404


async def test_task_in_project(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    project = (await api.post("/api/projects", json={"name": "p", "labels": LABELS})).json()
    r = await api.post("/api/tasks", json={"name": "t", "project_id": project["id"]})
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["project_id"] == project["id"] and task["project_name"] == "p"
    r = await api.get(f"/api/labels?task_id={task['id']}")
    assert [lbl["name"] for lbl in r.json()["results"]] == ["cat", "dog", "person"]
    r = await api.post(
        "/api/tasks", json={"name": "t2", "project_id": project["id"], "labels": LABELS}
    )
    assert r.status_code == 400 and "labels" in r.json()
    r = await api.get(f"/api/tasks?project_id={project['id']}&org=&page=1")
    assert r.json()["count"] == 1
    assert (await api.get(f"/api/projects/{project['id']}")).json()["tasks"]["count"] == 1


async def test_deleting_a_project_deletes_its_tasks_and_nothing_else(
    client_for, db: Database, alice: Account
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    p1 = (await api.post("/api/projects", json={"name": "p1", "labels": LABELS})).json()
    p2 = (await api.post("/api/projects", json={"name": "p2", "labels": LABELS})).json()
    t1 = (await api.post("/api/tasks", json={"name": "t1", "project_id": p1["id"]})).json()
    t2 = (await api.post("/api/tasks", json={"name": "t2", "project_id": p2["id"]})).json()
    t3 = (await api.post("/api/tasks", json={"name": "t3", "labels": LABELS})).json()
    for t in (t1, t2, t3):
        add_frames(db, t["id"], 3)
    assert (await api.delete(f"/api/projects/{p1['id']}")).status_code == 204
    assert (await api.get(f"/api/tasks/{t1['id']}")).status_code == 404
    assert (await api.get(f"/api/labels?project_id={p1['id']}")).status_code == 404
    for t in (t2, t3):
        assert (await api.get(f"/api/tasks/{t['id']}")).status_code == 200
        assert (await api.get(f"/api/jobs?task_id={t['id']}")).json()["count"] == 1
    assert (await api.get(f"/api/labels?project_id={p2['id']}")).json()["count"] == 3
    assert (await api.get(f"/api/labels?task_id={t3['id']}")).json()["count"] == 3
    assert (await api.get("/api/jobs")).json()["count"] == 2


async def test_task_label_patch(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = (await api.post("/api/tasks", json={"name": "t", "labels": LABELS})).json()
    labels = (await api.get(f"/api/labels?task_id={task['id']}")).json()["results"]
    cat, dog = labels[0], labels[1]
    color_attr = dog["attributes"][0]
    r = await api.patch(
        f"/api/tasks/{task['id']}",
        json={
            "labels": [
                {"id": cat["id"], "deleted": True},
                {
                    "id": dog["id"],
                    "name": "doggo",
                    "attributes": [
                        {"id": color_attr["id"], "values": ["a", "b", "c"]},
                        {
                            "name": "size",
                            "mutable": False,
                            "input_type": "radio",
                            "values": ["s", "m"],
                        },
                    ],
                },
                {"name": "bird"},
            ]
        },
    )
    assert r.status_code == 200, r.text
    labels = (await api.get(f"/api/labels?task_id={task['id']}")).json()["results"]
    assert sorted(lbl["name"] for lbl in labels) == ["bird", "doggo", "person"]
    doggo = next(lbl for lbl in labels if lbl["name"] == "doggo")
    assert doggo["attributes"][0]["values"] == ["a", "b", "c"]
    assert [a["name"] for a in doggo["attributes"]] == ["color", "age", "good", "note", "size"]
    # a label of another task is refused
    other = (await api.post("/api/tasks", json={"name": "o", "labels": [{"name": "x"}]})).json()
    other_label = (await api.get(f"/api/labels?task_id={other['id']}")).json()["results"][0]
    r = await api.patch(
        f"/api/tasks/{task['id']}", json={"labels": [{"id": other_label["id"], "name": "y"}]}
    )
    assert r.status_code == 400 and "labels[0].id" in r.json()


async def test_label_endpoints(client_for, alice: Account, bob: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task = (await api.post("/api/tasks", json={"name": "t", "labels": LABELS})).json()
    labels = (await api.get(f"/api/labels?task_id={task['id']}")).json()["results"]
    dog = labels[1]
    r = await api.get(f"/api/labels/{dog['id']}")
    assert r.status_code == 200 and r.json()["name"] == "dog"
    r = await api.patch(f"/api/labels/{dog['id']}", json={"name": "wolf", "color": "#00ff00"})
    assert r.status_code == 200 and r.json()["name"] == "wolf" and r.json()["color"] == "#00ff00"
    r = await api.patch(f"/api/labels/{dog['id']}", json={"name": "cat"})
    assert r.status_code == 400 and "name" in r.json()
    r = await api.patch(f"/api/labels/{dog['id']}", json={"color": "red"})
    assert r.status_code == 400
    r = await client_for(bob).get(f"/api/labels/{dog['id']}")
    assert r.status_code == 403
    r = await client_for(bob).delete(f"/api/labels/{dog['id']}")
    assert r.status_code == 403
    r = await api.delete(f"/api/labels/{dog['id']}")
    assert r.status_code == 204
    r = await api.get(f"/api/labels/{dog['id']}")
    assert r.status_code == 404
    r = await api.get("/api/labels")
    assert r.json()["count"] == 2
    r = await client_for(bob).get("/api/labels")
    assert r.json()["count"] == 0


BAD_TASKS = [
    ({"labels": [{"name": "a"}]}, "name"),
    ({"name": "", "labels": [{"name": "a"}]}, "name"),
    ({"name": "x" * 257, "labels": [{"name": "a"}]}, "name"),
    ({"name": 5, "labels": [{"name": "a"}]}, "name"),
    ({"name": "t"}, "labels"),
    ({"name": "t", "labels": [{"name": "a"}, {"name": "a"}]}, "labels"),
    ({"name": "t", "labels": [{"name": "x" * 65}]}, "labels[0].name"),
    ({"name": "t", "labels": [{"name": "a", "color": "blue"}]}, "labels[0].color"),
    ({"name": "t", "labels": [{"name": "a", "type": "nonsense"}]}, "labels[0].type"),
    ({"name": "t", "labels": [{"name": "a", "type": "skeleton"}]}, "labels[0].sublabels"),
    ({"name": "t", "labels": [{"name": "a", "sublabels": [{"name": "b"}]}]}, "labels[0].sublabels"),
    (
        {
            "name": "t",
            "labels": [
                {
                    "name": "a",
                    "attributes": [
                        {"name": "s", "mutable": False, "input_type": "select", "values": []}
                    ],
                }
            ],
        },
        "labels[0].attributes[0].values",
    ),
    (
        {
            "name": "t",
            "labels": [
                {
                    "name": "a",
                    "attributes": [
                        {
                            "name": "s",
                            "mutable": False,
                            "input_type": "select",
                            "values": ["x"],
                            "default_value": "y",
                        }
                    ],
                }
            ],
        },
        "labels[0].attributes[0].default_value",
    ),
    (
        {
            "name": "t",
            "labels": [
                {
                    "name": "a",
                    "attributes": [
                        {
                            "name": "n",
                            "mutable": False,
                            "input_type": "number",
                            "values": ["1", "a", "1"],
                        }
                    ],
                }
            ],
        },
        "labels[0].attributes[0].values",
    ),
    (
        {
            "name": "t",
            "labels": [
                {
                    "name": "a",
                    "attributes": [
                        {
                            "name": "n",
                            "mutable": False,
                            "input_type": "number",
                            "values": ["5", "1", "1"],
                        }
                    ],
                }
            ],
        },
        "labels[0].attributes[0].values",
    ),
    (
        {
            "name": "t",
            "labels": [
                {
                    "name": "a",
                    "attributes": [
                        {
                            "name": "c",
                            "mutable": False,
                            "input_type": "checkbox",
                            "values": ["maybe"],
                        }
                    ],
                }
            ],
        },
        "labels[0].attributes[0].values",
    ),
    (
        {
            "name": "t",
            "labels": [
                {"name": "a", "attributes": [{"name": "c", "input_type": "wrong", "values": []}]}
            ],
        },
        "labels[0].attributes[0].input_type",
    ),
    (
        {
            "name": "t",
            "labels": [
                {
                    "name": "a",
                    "attributes": [
                        {"name": "c", "input_type": "text", "values": []},
                        {"name": "c", "input_type": "text", "values": []},
                    ],
                }
            ],
        },
        "labels[0].attributes",
    ),
    ({"name": "t", "labels": [{"name": "a"}], "project_id": 999}, "project_id"),
    ({"name": "t", "labels": [{"name": "a"}], "assignee_id": 999}, "assignee_id"),
    ({"name": "t", "labels": [{"name": "a"}], "assignee_id": 99999999999999}, "assignee_id"),
    ({"name": "t", "labels": [{"name": "a"}], "segment_size": -1}, "segment_size"),
    ({"name": "t\x00", "labels": [{"name": "a"}]}, "name"),
]


@pytest.mark.parametrize(("body", "field"), BAD_TASKS)
async def test_bad_task_input_is_a_400_and_writes_nothing(
    client_for, alice: Account, body, field
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    r = await api.post("/api/tasks", json=body)
    assert r.status_code == 400, r.text
    assert field in r.json(), r.json()
    assert (await api.get("/api/tasks")).json()["count"] == 0
    assert (await api.get("/api/labels")).json()["count"] == 0


@pytest.mark.parametrize(
    ("raw", "status"),
    [(b"{not json", 400), (b"[]", 400), (b'"x"', 400), (b"", 400)],
)
async def test_malformed_bodies(client_for, alice: Account, raw: bytes, status: int) -> None:
    api: httpx.AsyncClient = client_for(alice)
    r = await api.post("/api/projects", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text


async def test_unknown_ids_are_404(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    for path in (
        "/api/tasks/123",
        "/api/projects/123",
        "/api/jobs/123",
        "/api/labels/123",
        "/api/users/123",
        "/api/tasks/abc",
        "/api/tasks/99999999999999999999",
        "/api/requests/nope",
    ):
        r = await api.get(path)
        assert r.status_code == 404, (path, r.text)
    r = await api.patch("/api/tasks/123", json={"name": "x"})
    assert r.status_code == 404
    r = await api.delete("/api/projects/123")
    assert r.status_code == 404


async def test_trailing_slashes_reach_the_same_handlers(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    r = await api.get("/api/tasks/")
    assert r.status_code == 200
    r = await api.get("/api/schema/")
    assert r.status_code == 200 and "/api/tasks" in r.json()["paths"]


async def test_a_patch_that_changes_nothing_scoped_is_a_description_update(
    client_for, alice: Account, bob: Account
) -> None:
    """A PATCH naming only fields that keep their value (the task's own project, the
    project's own organization) is checked as CVAT checks an empty one: ``update:desc``."""
    api, other = client_for(alice), client_for(bob)
    project = (await api.post("/api/projects", json={"name": "p", "labels": LABELS})).json()
    task = (await api.post("/api/tasks", json={"name": "t", "project_id": project["id"]})).json()
    same_project = {"project_id": project["id"]}
    same_org = {"organization_id": None}
    for url, body in (
        (f"/api/tasks/{task['id']}", same_project),
        (f"/api/tasks/{task['id']}", same_org),
        (f"/api/projects/{project['id']}", same_org),
    ):
        r = await api.patch(url, json=body)
        assert r.status_code == 200, (url, body, r.text)
        r = await other.patch(url, json=body)
        assert r.status_code in (403, 404), (url, body, r.text)
