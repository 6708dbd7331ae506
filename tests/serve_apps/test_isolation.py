"""Cross-organization isolation on every list and retrieve endpoint: a member of organization
A sees nothing of organization B, and a worker of A sees only what is assigned to them."""

from __future__ import annotations

import httpx
import pytest

from cvat_ray.storage.db import Database
from tests.factories import LABELS, add_frames

LISTS = ["projects", "tasks", "jobs", "labels", "memberships", "invitations", "organizations"]


async def _populate(api: httpx.AsyncClient, db: Database, slug: str) -> dict[str, int]:
    org = (await api.post("/api/organizations", json={"slug": slug})).json()
    q = f"?org={slug}"
    project = (
        await api.post(f"/api/projects{q}", json={"name": f"{slug}-p", "labels": LABELS})
    ).json()
    task = (
        await api.post(f"/api/tasks{q}", json={"name": f"{slug}-t", "project_id": project["id"]})
    ).json()
    add_frames(db, task["id"], 3)
    job = (await api.get(f"/api/jobs?task_id={task['id']}")).json()["results"][0]
    label = (await api.get(f"/api/labels?project_id={project['id']}")).json()["results"][0]
    membership = (await api.get(f"/api/memberships{q}")).json()["results"][0]
    return {
        "organizations": org["id"],
        "projects": project["id"],
        "tasks": task["id"],
        "jobs": job["id"],
        "labels": label["id"],
        "memberships": membership["id"],
    }


@pytest.fixture
async def two_orgs(client_for, db: Database, make_user) -> dict:
    a_owner, b_owner, a_worker = make_user("aowner"), make_user("bowner"), make_user("aworker")
    a, b = client_for(a_owner), client_for(b_owner)
    objects_a = await _populate(a, db, "orga")
    objects_b = await _populate(b, db, "orgb")
    invite = await a.post(
        "/api/invitations?org=orga", json={"role": "worker", "username": "aworker"}
    )
    w = client_for(a_worker)
    await w.post(f"/api/invitations/{invite.json()['key']}/accept")
    return {"a": a, "b": b, "w": w, "objects_a": objects_a, "objects_b": objects_b}


@pytest.mark.parametrize("resource", LISTS)
async def test_lists_show_nothing_of_another_organization(two_orgs, resource) -> None:
    a = two_orgs["a"]
    b_ids = set()
    if resource in two_orgs["objects_b"]:
        b_ids.add(two_orgs["objects_b"][resource])
    for query in ("", "?org=orga", "?org="):
        r = await a.get(f"/api/{resource}{query}")
        assert r.status_code == 200, (query, r.text)
        ids = {item.get("id", item.get("key")) for item in r.json()["results"]}
        assert not ids & b_ids, (resource, query)
    # asking for B's context is refused outright
    assert (await a.get(f"/api/{resource}?org=orgb")).status_code == 403


@pytest.mark.parametrize(
    "resource", ["projects", "tasks", "jobs", "labels", "memberships", "organizations"]
)
async def test_objects_of_another_organization_are_refused(two_orgs, resource) -> None:
    a = two_orgs["a"]
    object_id = two_orgs["objects_b"][resource]
    for query in ("", "?org=orga", "?org=orgb"):
        r = await a.get(f"/api/{resource}/{object_id}{query}")
        assert r.status_code == 403, (resource, query, r.status_code)


async def test_a_worker_sees_only_what_is_assigned(two_orgs) -> None:
    a, w, objects = two_orgs["a"], two_orgs["w"], two_orgs["objects_a"]
    for resource in ("projects", "tasks", "jobs"):
        assert (await w.get(f"/api/{resource}?org=orga")).json()["count"] == 0
        assert (await w.get(f"/api/{resource}/{objects[resource]}")).status_code == 403
    worker_id = (await w.get("/api/users/self")).json()["id"]
    assert (
        await a.patch(f"/api/jobs/{objects['jobs']}", json={"assignee": worker_id})
    ).status_code == 200
    assert [j["id"] for j in (await w.get("/api/jobs?org=orga")).json()["results"]] == [
        objects["jobs"]
    ]
    assert (await w.get(f"/api/jobs/{objects['jobs']}")).status_code == 200
    # the job's assignee has no rights on the task or project themselves (CVAT's tables)
    assert (await w.get("/api/tasks?org=orga")).json()["count"] == 0
    assert (await w.get(f"/api/tasks/{objects['tasks']}")).status_code == 403
    # but sees the job's labels, to annotate
    assert (await w.get(f"/api/labels?job_id={objects['jobs']}")).status_code == 200
