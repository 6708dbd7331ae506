"""``/api/users``: self, list, retrieve, patch, delete."""

from __future__ import annotations

import httpx

from tests.conftest import Account


async def test_self_and_list(client_for, admin: Account, alice: Account, bob: Account) -> None:
    me = (await client_for(alice).get("/api/users/self")).json()
    assert me["username"] == "alice" and me["groups"] == ["user"] and me["is_superuser"] is False
    assert me["email"] == "alice@example.com"
    # a plain user lists only themselves; an admin lists everyone
    assert [
        u["username"] for u in (await client_for(alice).get("/api/users")).json()["results"]
    ] == ["alice"]
    everyone = (await client_for(admin).get("/api/users?sort=username")).json()
    assert [u["username"] for u in everyone["results"]] == ["admin1", "alice", "bob"]
    assert (await client_for(admin).get("/api/users?search=bo")).json()["count"] == 1
    assert (await client_for(alice).get(f"/api/users/{bob.id}")).status_code == 403
    assert (await client_for(admin).get(f"/api/users/{bob.id}")).status_code == 200


async def test_patch_rules(client_for, admin: Account, alice: Account, bob: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    r = await api.patch(f"/api/users/{alice.id}", json={"first_name": "Alice"})
    assert r.status_code == 200 and r.json()["first_name"] == "Alice"
    assert (
        await api.patch(f"/api/users/{alice.id}", json={"groups": ["admin"]})
    ).status_code == 403
    assert (await api.patch(f"/api/users/{alice.id}", json={"email": "x@y.z"})).status_code == 403
    assert (await api.patch(f"/api/users/{bob.id}", json={"first_name": "B"})).status_code == 403
    r = await client_for(admin).patch(f"/api/users/{bob.id}", json={"groups": ["worker"]})
    assert r.status_code == 200 and r.json()["groups"] == ["worker"]
    r = await client_for(admin).patch(f"/api/users/{bob.id}", json={"groups": ["pope"]})
    assert r.status_code == 400
    # bob is a worker now: he may no longer create tasks
    r = await client_for(bob).post("/api/tasks", json={"name": "t", "labels": [{"name": "a"}]})
    assert r.status_code == 403


async def test_delete(client_for, admin: Account, alice: Account, bob: Account) -> None:
    task = (
        await client_for(bob).post("/api/tasks", json={"name": "t", "labels": [{"name": "a"}]})
    ).json()
    assert (await client_for(alice).delete(f"/api/users/{bob.id}")).status_code == 403
    assert (await client_for(admin).delete(f"/api/users/{bob.id}")).status_code == 204
    assert (await client_for(admin).get(f"/api/users/{bob.id}")).status_code == 404
    # the task survives without an owner
    kept = (await client_for(admin).get(f"/api/tasks/{task['id']}")).json()
    assert kept["owner"] is None
    assert (await client_for(alice).delete(f"/api/users/{alice.id}")).status_code == 204
