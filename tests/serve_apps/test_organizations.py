"""Organizations, memberships and invitations over HTTP."""

from __future__ import annotations

import httpx
import pytest

from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Invitation, utcnow
from tests.conftest import Account


async def _org(api: httpx.AsyncClient, slug: str = "acme") -> dict:
    r = await api.post("/api/organizations", json={"slug": slug, "name": slug.title()})
    assert r.status_code == 201, r.text
    return r.json()


async def _invite(api: httpx.AsyncClient, slug: str, role: str, **who: str) -> httpx.Response:
    return await api.post(f"/api/invitations?org={slug}", json={"role": role, **who})


async def _join(
    owner: httpx.AsyncClient, member: httpx.AsyncClient, slug: str, role: str, username: str
) -> None:
    r = await _invite(owner, slug, role, username=username)
    assert r.status_code == 201, r.text
    r = await member.post(f"/api/invitations/{r.json()['key']}/accept")
    assert r.status_code == 200, r.text


async def test_create_and_manage_organization(client_for, alice: Account, bob: Account) -> None:
    a, b = client_for(alice), client_for(bob)
    org = await _org(a)
    assert org["owner"]["username"] == "alice"
    assert (await a.post("/api/organizations", json={"slug": "acme"})).status_code == 400
    assert (await a.post("/api/organizations", json={"slug": "bad slug"})).status_code == 400
    assert (await a.post("/api/organizations", json={"slug": "x" * 17})).status_code == 400
    # the owner is a member with the owner role
    members = (await a.get("/api/memberships?org=acme")).json()["results"]
    assert [(m["user"]["username"], m["role"]) for m in members] == [("alice", "owner")]
    # outsiders neither see nor change it
    assert (await b.get("/api/organizations")).json()["count"] == 0
    assert (await b.get(f"/api/organizations/{org['id']}")).status_code == 403
    assert (await b.patch(f"/api/organizations/{org['id']}", json={"name": "x"})).status_code == 403
    assert (await b.get("/api/memberships?org=acme")).status_code == 403
    r = await a.patch(
        f"/api/organizations/{org['id']}", json={"name": "ACME Corp", "contact": {"email": "a@b.c"}}
    )
    assert r.status_code == 200 and r.json()["name"] == "ACME Corp"
    assert (await a.get("/api/organizations")).json()["count"] == 1


async def test_invitation_flow(client_for, alice: Account, bob: Account, make_user) -> None:
    a, b = client_for(alice), client_for(bob)
    carol = make_user("carol")
    c = client_for(carol)
    await _org(a)
    r = await _invite(a, "acme", "supervisor", email="bob@example.com")
    assert r.status_code == 201, r.text
    inv = r.json()
    assert inv["user"]["username"] == "bob" and inv["role"] == "supervisor" and not inv["expired"]
    assert inv["organization_info"]["slug"] == "acme"
    # the invitee sees it, a stranger does not
    assert [i["key"] for i in (await b.get("/api/invitations")).json()["results"]] == [inv["key"]]
    assert (await c.get(f"/api/invitations/{inv['key']}")).status_code == 403
    assert (await c.post(f"/api/invitations/{inv['key']}/accept")).status_code == 403
    # not a member yet
    assert (await b.get("/api/tasks?org=acme")).status_code == 403
    r = await b.post(f"/api/invitations/{inv['key']}/accept")
    assert r.status_code == 200 and r.json() == {"organization_slug": "acme"}
    assert (await b.post(f"/api/invitations/{inv['key']}/accept")).status_code == 409
    assert (await b.get("/api/tasks?org=acme")).status_code == 200
    roles = {
        m["user"]["username"]: m["role"]
        for m in (await a.get("/api/memberships?org=acme")).json()["results"]
    }
    assert roles == {"alice": "owner", "bob": "supervisor"}
    # inviting a member again is a conflict, an unknown username a 400
    assert (await _invite(a, "acme", "worker", username="bob")).status_code == 409
    assert (await _invite(a, "acme", "worker", username="nobody")).status_code == 400
    # invitations need an organization context
    assert (
        await a.post("/api/invitations", json={"role": "worker", "username": "carol"})
    ).status_code == 403
    # decline
    r = await _invite(a, "acme", "worker", username="carol")
    assert (await c.post(f"/api/invitations/{r.json()['key']}/decline")).status_code == 204
    assert (await c.get("/api/organizations")).json()["count"] == 0


@pytest.mark.parametrize(
    ("inviter_role", "invited_role", "status"),
    [
        ("owner", "maintainer", 201),
        ("maintainer", "maintainer", 403),
        ("maintainer", "worker", 201),
        ("supervisor", "worker", 403),
        ("worker", "worker", 403),
    ],
)
async def test_who_may_invite(
    client_for, alice, bob, make_user, inviter_role, invited_role, status
) -> None:
    a, b = client_for(alice), client_for(bob)
    await _org(a)
    if inviter_role == "owner":
        inviter = a
    else:
        await _join(a, b, "acme", inviter_role, "bob")
        inviter = b
    make_user("dave")
    r = await _invite(inviter, "acme", invited_role, username="dave")
    assert r.status_code == status, r.text


async def test_roles_removal_and_leaving(
    client_for, alice: Account, bob: Account, make_user
) -> None:
    a, b = client_for(alice), client_for(bob)
    carol = make_user("carol")
    c = client_for(carol)
    await _org(a)
    await _join(a, b, "acme", "maintainer", "bob")
    await _join(a, c, "acme", "worker", "carol")
    members = {
        m["user"]["username"]: m
        for m in (await a.get("/api/memberships?org=acme")).json()["results"]
    }
    # a maintainer may change a worker's role but not the owner's or another maintainer's
    assert (
        await b.patch(f"/api/memberships/{members['carol']['id']}", json={"role": "supervisor"})
    ).status_code == 200
    assert (
        await b.patch(f"/api/memberships/{members['alice']['id']}", json={"role": "worker"})
    ).status_code == 403
    assert (
        await a.patch(f"/api/memberships/{members['bob']['id']}", json={"role": "owner"})
    ).status_code == 400
    # a worker may not remove anyone, but may leave
    assert (await c.delete(f"/api/memberships/{members['bob']['id']}")).status_code == 403
    assert (await c.delete(f"/api/memberships/{members['carol']['id']}")).status_code == 204
    assert (await c.get("/api/tasks?org=acme")).status_code == 403
    # the owner cannot leave
    assert (await a.delete(f"/api/memberships/{members['alice']['id']}")).status_code in (400, 403)
    # the owner removes the maintainer
    assert (await a.delete(f"/api/memberships/{members['bob']['id']}")).status_code == 204
    assert (await b.get("/api/organizations")).json()["count"] == 0


async def test_expired_invitation(client_for, db: Database, alice: Account, bob: Account) -> None:
    a, b = client_for(alice), client_for(bob)
    await _org(a)
    key = (await _invite(a, "acme", "worker", username="bob")).json()["key"]
    with db.session() as session:
        inv = session.get(Invitation, key)
        assert inv is not None
        inv.sent_date = utcnow().replace(year=2020)
        inv.created_date = inv.sent_date
    assert (await b.get(f"/api/invitations/{key}")).json()["expired"] is True
    assert (await b.post(f"/api/invitations/{key}/accept")).status_code == 400
    assert (await a.post(f"/api/invitations/{key}/resend?org=acme")).status_code == 204
    assert (await b.post(f"/api/invitations/{key}/accept")).status_code == 200


async def test_moving_a_project_into_an_organization(
    client_for, alice: Account, bob: Account
) -> None:
    a, b = client_for(alice), client_for(bob)
    await _org(a)
    project = (await a.post("/api/projects", json={"name": "p", "labels": [{"name": "x"}]})).json()
    task = (await a.post("/api/tasks", json={"name": "t", "project_id": project["id"]})).json()
    org_id = (await a.get("/api/organizations")).json()["results"][0]["id"]
    r = await a.patch(f"/api/projects/{project['id']}", json={"organization_id": org_id})
    assert r.status_code == 200 and r.json()["organization"] == org_id
    assert (await a.get(f"/api/tasks/{task['id']}")).json()["organization"] == org_id
    assert (await a.get("/api/projects?org=")).json()["count"] == 0
    assert (await a.get("/api/projects?org=acme")).json()["count"] == 1
    # someone who is not a maintainer of the target cannot move things there
    own = (await b.post("/api/projects", json={"name": "bp"})).json()
    r = await b.patch(f"/api/projects/{own['id']}", json={"organization_id": org_id})
    assert r.status_code == 400
    # deleting the organization deletes what it holds
    assert (await a.delete(f"/api/organizations/{org_id}")).status_code == 204
    assert (await a.get(f"/api/tasks/{task['id']}")).status_code == 404


async def test_inviting_an_email_does_not_tell_whether_it_is_registered(
    client_for, anon: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    """An unknown e-mail used to get a 400 ("No user has this e-mail"), a known one a 201."""
    a = client_for(alice)
    await _org(a)
    known = await _invite(a, "acme", "worker", email="bob@example.com")
    unknown = await _invite(a, "acme", "worker", email="newcomer@example.com")
    assert known.status_code == unknown.status_code == 201, unknown.text
    assert set(known.json()) == set(unknown.json())
    assert set(known.json()["user"]) == set(unknown.json()["user"])
    # The placeholder account cannot log in ...
    r = await anon.post(
        "/api/auth/login", json={"email": "newcomer@example.com", "password": "whatever1"}
    )
    assert r.status_code == 400
    # ... until the owner of the e-mail registers with it and so finds the invitation.
    r = await anon.post(
        "/api/auth/register",
        json={
            "username": "newcomer",
            "email": "newcomer@example.com",
            "password1": "Sup3r-secret",
            "password2": "Sup3r-secret",
        },
    )
    assert r.status_code == 201, r.text
    me = (await anon.get("/api/users/self")).json()
    assert me["username"] == "newcomer" and me["groups"] == ["user"] and me["is_active"]
    assert me["id"] == unknown.json()["user"]["id"]
    invitations = (await anon.get("/api/invitations")).json()["results"]
    assert [i["key"] for i in invitations] == [unknown.json()["key"]]
    csrf = {"X-CSRFToken": anon.cookies["csrftoken"]}
    r = await anon.post(f"/api/invitations/{unknown.json()['key']}/accept", headers=csrf)
    assert r.status_code == 200
    members = (await a.get("/api/memberships?org=acme")).json()["results"]
    assert {m["user"]["username"] for m in members} == {"alice", "newcomer"}
    # A second invitation of an unknown e-mail goes to the same placeholder.
    one = (await _invite(a, "acme", "worker", email="later@example.com")).json()
    await _org(a, "beta")
    two = (await _invite(a, "beta", "worker", email="later@example.com")).json()
    assert one["user"]["id"] == two["user"]["id"]
