"""Who may do what (the core rule set: admin, owner, assignee, organization role)."""

from __future__ import annotations

import httpx
import pytest

from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Membership, Organization, utcnow
from tests.conftest import Account, make_account
from tests.factories import add_frames

ROLES = ("admin", "owner", "assignee", "stranger", "worker")


@pytest.fixture
def accounts(db: Database) -> dict[str, Account]:
    return {
        "admin": make_account(db, "root", ("admin",)),
        "owner": make_account(db, "owner", ("user",)),
        "assignee": make_account(db, "assignee", ("user",)),
        "stranger": make_account(db, "stranger", ("user",)),
        "worker": make_account(db, "worker", ("worker",)),
    }


@pytest.fixture
async def world(client_for, db: Database, accounts: dict[str, Account]) -> dict[str, int]:
    """A project with a task (assigned to "assignee") owned by "owner"."""
    api: httpx.AsyncClient = client_for(accounts["owner"])
    project = (
        await api.post("/api/projects", json={"name": "p", "labels": [{"name": "a"}]})
    ).json()
    task = (
        await api.post(
            "/api/tasks",
            json={"name": "t", "project_id": project["id"], "assignee_id": accounts["assignee"].id},
        )
    ).json()
    add_frames(db, task["id"], 2)
    job = (await api.get(f"/api/jobs?task_id={task['id']}")).json()["results"][0]
    label = (await api.get(f"/api/labels?project_id={project['id']}")).json()["results"][0]
    return {"project": project["id"], "task": task["id"], "job": job["id"], "label": label["id"]}


CASES: list[tuple[str, str, dict[str, object] | None, dict[str, int]]] = [
    # (method, path template, body, {role: expected status})
    (
        "GET",
        "/api/projects/{project}",
        None,
        {"admin": 200, "owner": 200, "assignee": 403, "stranger": 403, "worker": 403},
    ),
    (
        "GET",
        "/api/tasks/{task}",
        None,
        {"admin": 200, "owner": 200, "assignee": 200, "stranger": 403, "worker": 403},
    ),
    (
        "GET",
        "/api/jobs/{job}",
        None,
        {"admin": 200, "owner": 200, "assignee": 200, "stranger": 403, "worker": 403},
    ),
    (
        "GET",
        "/api/labels/{label}",
        None,
        {"admin": 200, "owner": 200, "assignee": 403, "stranger": 403, "worker": 403},
    ),
    (
        "PATCH",
        "/api/tasks/{task}",
        {"name": "renamed"},
        {"admin": 200, "owner": 200, "assignee": 200, "stranger": 403, "worker": 403},
    ),
    (
        "PATCH",
        "/api/tasks/{task}",
        {"assignee_id": None},
        {"admin": 200, "owner": 200, "assignee": 403, "stranger": 403, "worker": 403},
    ),
    (
        "PATCH",
        "/api/jobs/{job}",
        {"state": "in progress"},
        {"admin": 200, "owner": 200, "assignee": 200, "stranger": 403, "worker": 403},
    ),
    (
        "PATCH",
        "/api/projects/{project}",
        {"name": "x"},
        {"admin": 200, "owner": 200, "assignee": 403, "stranger": 403, "worker": 403},
    ),
    (
        "DELETE",
        "/api/tasks/{task}",
        None,
        {"admin": 204, "owner": 204, "assignee": 403, "stranger": 403, "worker": 403},
    ),
    (
        "DELETE",
        "/api/projects/{project}",
        None,
        {"admin": 204, "owner": 204, "assignee": 403, "stranger": 403, "worker": 403},
    ),
    (
        "POST",
        "/api/projects",
        {"name": "new"},
        {"admin": 201, "owner": 201, "assignee": 201, "stranger": 201, "worker": 403},
    ),
    (
        "POST",
        "/api/tasks",
        {"name": "new", "labels": [{"name": "x"}]},
        {"admin": 201, "owner": 201, "assignee": 201, "stranger": 201, "worker": 403},
    ),
    (
        "POST",
        "/api/tasks",
        {"name": "new", "project_id": "{project}"},
        {"admin": 201, "owner": 201, "assignee": 403, "stranger": 403, "worker": 403},
    ),
    (
        "GET",
        "/api/jobs/{job}/annotations/",
        None,
        {"admin": 200, "owner": 200, "assignee": 200, "stranger": 403, "worker": 403},
    ),
    (
        "PUT",
        "/api/tasks/{task}/annotations/",
        {"shapes": []},
        {"admin": 200, "owner": 200, "assignee": 200, "stranger": 403, "worker": 403},
    ),
    (
        "DELETE",
        "/api/jobs/{job}/annotations/",
        None,
        {"admin": 204, "owner": 204, "assignee": 204, "stranger": 403, "worker": 403},
    ),
    (
        "POST",
        "/api/issues",
        {"frame": 0, "position": [0, 0, 1, 1], "job": "{job}", "message": "m"},
        {"admin": 201, "owner": 201, "assignee": 201, "stranger": 403, "worker": 403},
    ),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "body", "expected"), CASES)
async def test_matrix(client_for, accounts, world, role, method, path, body, expected) -> None:
    api: httpx.AsyncClient = client_for(accounts[role])
    if isinstance(body, dict):
        body = {
            k: (world[v[1:-1]] if isinstance(v, str) and v.startswith("{") else v)
            for k, v in body.items()
        }
    r = await api.request(method, path.format(**world), json=body)
    assert r.status_code == expected[role], r.text


@pytest.mark.parametrize("role", ROLES)
async def test_list_visibility(client_for, accounts, world, role) -> None:
    api: httpx.AsyncClient = client_for(accounts[role])
    counts = {
        p: (await api.get(f"/api/{p}")).json()["count"]
        for p in ("projects", "tasks", "jobs", "labels")
    }
    expected = {
        "admin": {"projects": 1, "tasks": 1, "jobs": 1, "labels": 1},
        "owner": {"projects": 1, "tasks": 1, "jobs": 1, "labels": 1},
        "assignee": {"projects": 0, "tasks": 1, "jobs": 1, "labels": 1},
        "stranger": {"projects": 0, "tasks": 0, "jobs": 0, "labels": 0},
        "worker": {"projects": 0, "tasks": 0, "jobs": 0, "labels": 0},
    }[role]
    assert counts == expected


def _org(db: Database, slug: str, members: dict[int, str]) -> int:
    with db.session() as session:
        org = Organization(slug=slug, name=slug, owner_id=next(iter(members)))
        session.add(org)
        session.flush()
        for user_id, role in members.items():
            session.add(
                Membership(
                    user_id=user_id,
                    organization_id=org.id,
                    role=role,
                    is_active=True,
                    joined_date=utcnow(),
                )
            )
        return org.id


async def test_organization_isolation(client_for, db: Database, make_user) -> None:
    a_owner, a_worker, b_owner = make_user("aowner"), make_user("aworker"), make_user("bowner")
    _org(db, "orga", {a_owner.id: "owner", a_worker.id: "worker"})
    _org(db, "orgb", {b_owner.id: "owner"})
    a_api, b_api, w_api = client_for(a_owner), client_for(b_owner), client_for(a_worker)
    ta = (
        await a_api.post("/api/tasks?org=orga", json={"name": "ta", "labels": [{"name": "x"}]})
    ).json()
    assert ta["organization"] is not None
    tb = (
        await b_api.post(
            "/api/tasks",
            json={"name": "tb", "labels": [{"name": "x"}]},
            headers={"X-Organization": "orgb"},
        )
    ).json()
    pa = (await a_api.post("/api/projects?org=orga", json={"name": "pa"})).json()
    # members of A see A's objects in A's context, nothing of B
    assert [t["name"] for t in (await a_api.get("/api/tasks?org=orga")).json()["results"]] == ["ta"]
    assert (await a_api.get("/api/tasks?org=orgb")).status_code == 403
    assert (await a_api.get(f"/api/tasks/{tb['id']}")).status_code == 403
    assert (await a_api.get(f"/api/tasks/{tb['id']}?org=orga")).status_code == 403
    assert (await a_api.get(f"/api/labels?task_id={tb['id']}")).status_code == 403
    assert (await a_api.get("/api/labels?org=orga")).json()["count"] == 1
    # personal workspace (org=) does not show organization tasks
    assert (await a_api.get("/api/tasks?org=")).json()["count"] == 0
    # an org worker sees nothing unassigned, and may not create
    assert (await w_api.get("/api/tasks?org=orga")).json()["count"] == 0
    assert (await w_api.get(f"/api/tasks/{ta['id']}")).status_code == 403
    assert (
        await w_api.post("/api/tasks?org=orga", json={"name": "w", "labels": [{"name": "x"}]})
    ).status_code == 403
    # ...until assigned
    assert (
        await a_api.patch(f"/api/tasks/{ta['id']}", json={"assignee_id": a_worker.id})
    ).status_code == 200
    assert (await w_api.get("/api/tasks?org=orga")).json()["count"] == 1
    # assignees must be members
    r = await a_api.patch(f"/api/projects/{pa['id']}", json={"assignee_id": b_owner.id})
    assert r.status_code == 400
    # users list: members see each other, not outsiders
    names = {u["username"] for u in (await a_api.get("/api/users?org=orga")).json()["results"]}
    assert names == {"aowner", "aworker"}
    assert (await a_api.get(f"/api/users/{b_owner.id}")).status_code == 403
    # ...inside the organization's context, as in CVAT
    assert (await a_api.get(f"/api/users/{a_worker.id}?org=orga")).status_code == 200
    assert (await a_api.get(f"/api/users/{a_worker.id}")).status_code == 403
