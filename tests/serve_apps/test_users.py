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


async def test_members_see_active_members_in_the_basic_shape(
    client_for, admin: Account, alice: Account, bob: Account, make_user
) -> None:
    """The org list used to include invitees who had not accepted, and to show every user's
    e-mail, groups, superuser flag and last login to anyone who could list them."""
    carol = make_user("carol")
    a, b = client_for(alice), client_for(bob)
    assert (await a.post("/api/organizations", json={"slug": "acme"})).status_code == 201
    r = await a.post("/api/invitations?org=acme", json={"role": "worker", "username": "bob"})
    key = r.json()["key"]
    r = await a.post("/api/invitations?org=acme", json={"role": "worker", "username": "carol"})
    assert r.status_code == 201
    assert (await b.post(f"/api/invitations/{key}/accept")).status_code == 200
    # carol was invited but has not accepted: she is not listed
    listed = (await a.get("/api/users?org=acme&sort=username")).json()["results"]
    assert [u["username"] for u in listed] == ["alice", "bob"]
    basic = {"url", "id", "username", "first_name", "last_name"}
    assert all(set(u) == basic for u in listed)
    # a member's record through its id: the basic shape too; carol's is refused
    r = await a.get(f"/api/users/{bob.id}?org=acme")
    assert r.status_code == 200 and set(r.json()) == basic
    assert (await a.get(f"/api/users/{carol.id}?org=acme")).status_code == 403
    # one's own record in full, by /self and by id
    me = (await a.get(f"/api/users/{alice.id}")).json()
    assert me["email"] == "alice@example.com" and me["groups"] == ["user"]
    assert (await a.get("/api/users/self")).json()["email"] == "alice@example.com"
    # a non-admin's patch answers the basic shape (CVAT's serializer rule)
    r = await a.patch(f"/api/users/{alice.id}", json={"last_name": "A"})
    assert r.status_code == 200 and set(r.json()) == basic
    # admins see whole records
    full = (await client_for(admin).get("/api/users?org=acme")).json()["results"]
    assert all("email" in u and "is_superuser" in u for u in full)
