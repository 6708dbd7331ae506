"""Webhooks end to end: the API, deliveries to a real receiver on loopback (signatures,
payloads, order, retries), the outbound guard's refusals, permissions; SQLite and PostgreSQL.

The app runs its lifespan here, so its launcher starts the webhook sender (a thread)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.changes import Actor, Change, Scope, record
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import WebhookDelivery
from tests.conftest import Account
from tests.factories import import_file
from tests.formats.test_datasets import _coco_with_images
from tests.webhook_receiver import Receiver, receiver

SECRET = "s3cr3t"


@pytest.fixture
def sink() -> Iterator[Receiver]:
    yield from receiver()


@pytest.fixture
def hooked_settings(settings: Settings) -> Settings:
    settings.outbound.allowlist = "127.0.0.1/32"
    settings.webhooks.sweep_interval_s = 0.2
    return settings


@pytest.fixture
async def hooked(hooked_settings: Settings, db: Database) -> AsyncIterator[Any]:
    app = build_app(hooked_settings, db)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def as_user(hooked: Any) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def factory(account: Account) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=hooked),
            base_url="http://testserver",
            headers={"Authorization": f"Token {account.token}"},
        )
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()


async def _org(api: httpx.AsyncClient, slug: str = "hooks") -> dict[str, Any]:
    r = await api.post("/api/organizations", json={"slug": slug, "name": slug})
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _hook(api: httpx.AsyncClient, query: str = "", **body: Any) -> dict[str, Any]:
    r = await api.post(f"/api/webhooks{query}", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _wait_rows(db: Database, webhook_id: int, done: int, timeout: float = 20) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        with db.session() as session:
            rows = list(
                session.scalars(
                    select(WebhookDelivery)
                    .where(WebhookDelivery.webhook_id == webhook_id)
                    .order_by(WebhookDelivery.id)
                )
            )
            session.expunge_all()
        if sum(r.status != "pending" for r in rows) >= done or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_crud_validation_and_events(as_user: Any, alice: Account) -> None:
    api = as_user(alice)
    await _org(api)
    r = await api.post(
        "/api/webhooks?org=hooks",
        json={"target_url": "http://x.test/h", "type": "organization", "events": ["bogus"]},
    )
    assert r.status_code == 400 and "Invalid events list" in r.text
    r = await api.post(
        "/api/webhooks?org=hooks",
        json={"target_url": "ftp://x.test/h", "type": "organization", "events": []},
    )
    assert r.status_code == 400
    hook = await _hook(
        api,
        "?org=hooks",
        target_url="http://x.test/h",
        type="organization",
        events=["update:task", "create:task"],
        secret=SECRET,
        description="ci",
    )
    assert "secret" not in hook and hook["events"] == ["create:task", "update:task"]
    assert hook["organization"] is not None and hook["project_id"] is None
    assert "last_status" not in hook
    hid = hook["id"]
    assert (await api.patch(f"/api/webhooks/{hid}", json={"type": "project"})).status_code == 400
    r = await api.patch(f"/api/webhooks/{hid}", json={"project_id": 5})
    assert r.status_code == 400
    r = await api.patch(f"/api/webhooks/{hid}", json={"events": ["create:user"]})
    assert r.status_code == 400
    r = await api.patch(f"/api/webhooks/{hid}", json={"description": "new", "is_active": False})
    assert r.status_code == 200 and r.json()["description"] == "new"
    listed = (await api.get("/api/webhooks?org=hooks&search=new")).json()
    assert [w["id"] for w in listed["results"]] == [hid]
    assert (await api.get("/api/webhooks?type=project")).json()["count"] == 0
    assert (await api.get("/api/webhooks?sort=-updated_date")).json()["count"] == 1
    events = (await api.get("/api/webhooks/events?type=project")).json()
    keys = {e["key"] for e in events["events"]}
    assert events["webhook_type"] == "project"
    assert "create:project" not in keys and "update:project" in keys
    assert "completed:request[create:task]" in keys
    every = (await api.get("/api/webhooks/events")).json()
    assert len(every["events"]) == 33
    assert (await api.get("/api/webhooks/events?type=nope")).status_code == 400
    assert (await api.delete(f"/api/webhooks/{hid}")).status_code == 204
    assert (await api.get(f"/api/webhooks/{hid}")).status_code == 404


async def test_deliveries_signed_ordered_cvat_shaped(
    as_user: Any, alice: Account, sink: Receiver, db: Database
) -> None:
    api = as_user(alice)
    org = await _org(api)
    project = (await api.post("/api/projects?org=hooks", json={"name": "p", "labels": []})).json()
    events = ["create:task", "update:task", "delete:task"]
    org_hook = await _hook(
        api, "?org=hooks", target_url=sink.url, type="organization", events=events, secret=SECRET
    )
    project_hook = await _hook(
        api, "", target_url=sink.url + "/p", type="project", project_id=project["id"], events=events
    )
    assert project_hook["organization"] == org["id"]
    # subscribed to deletes only (its key a substring of nothing above; "_" is no wildcard)
    await _hook(api, "?org=hooks", target_url=sink.url + "/d", type="organization",
                events=["delete:task"])  # fmt: skip
    await api.patch(f"/api/users/{alice.id}", json={"first_name": "Al", "last_name": "Ice"})
    r = await api.post("/api/tasks?org=hooks", json={"name": "t1", "project_id": project["id"]})
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    for name in ("t2", "t3", "t4"):
        assert (await api.patch(f"/api/tasks/{task_id}", json={"name": name})).status_code == 200
    assert (await api.delete(f"/api/tasks/{task_id}")).status_code == 204
    hits = sink.wait_for(11)
    assert len(hits) == 11
    assert [h.payload["event"] for h in hits if h.path == "/hook/d"] == ["delete:task"]
    hits = [h for h in hits if h.path != "/hook/d"]
    org_hits = [h for h in hits if h.path == "/hook"]
    proj_hits = [h for h in hits if h.path == "/hook/p"]
    assert [h.payload["event"] for h in org_hits] == [
        "create:task",
        "update:task",
        "update:task",
        "update:task",
        "delete:task",
    ]
    assert [h.payload.get("task", {}).get("name") for h in org_hits] == [
        "t1",
        "t2",
        "t3",
        "t4",
        "t4",
    ]
    assert all(h.signed_by(SECRET) for h in org_hits)
    assert all("x-signature-256" not in h.headers for h in proj_hits)
    first = org_hits[0]
    assert first.headers["content-type"] == "application/json"
    assert first.headers["user-agent"].startswith("CVAT-compatible cvat-ray/")
    assert first.headers["x-webhook-attempt"] == "1"
    uids = {h.headers["x-webhook-delivery"] for h in hits}
    assert len(uids) == 10 and all(str(uuid.UUID(u)) == u for u in uids)
    update = org_hits[1].payload
    assert update["before_update"]["name"] == "t1"
    assert update["changes"]["name"] == {"from": "t1", "to": "t2"}
    assert update["sender"]["username"] == "alice"
    assert (update["sender"]["first_name"], update["sender"]["last_name"]) == ("Al", "Ice")
    assert update["webhook_id"] == org_hook["id"]
    assert proj_hits[0].payload["webhook_id"] == project_hook["id"]
    # the rows say so too
    rows = await _wait_rows(db, org_hook["id"], 5)
    assert [r.status for r in rows] == ["delivered"] * 5
    listed = (await api.get(f"/api/webhooks/{org_hook['id']}/deliveries")).json()
    assert listed["count"] == 5 and listed["results"][0]["status_code"] == 200
    one = listed["results"][-1]
    got = (await api.get(f"/api/webhooks/{org_hook['id']}/deliveries/{one['id']}")).json()
    assert got["request"]["event"] == "create:task" and got["attempt"] == 1
    assert (await api.get(f"/api/webhooks/{org_hook['id']}")).json()["last_status"] == 200


async def test_retries_5xx_not_4xx_and_redelivery(
    as_user: Any, alice: Account, sink: Receiver, db: Database
) -> None:
    api = as_user(alice)
    await _org(api)
    hook = await _hook(
        api,
        "?org=hooks",
        target_url=sink.url,
        type="organization",
        events=["create:project"],
        retry_delays=[0.05],
        max_retries=3,
    )
    sink.script = [500, 503, 200, 410, 400]
    await api.post("/api/projects?org=hooks", json={"name": "a", "labels": []})
    rows = await _wait_rows(db, hook["id"], 1)
    assert rows[0].status == "delivered" and rows[0].attempt == 3
    hits = sink.wait_for(3)
    assert [h.headers["x-webhook-attempt"] for h in hits] == ["1", "2", "3"]
    assert len({h.headers["x-webhook-delivery"] for h in hits}) == 1  # one delivery id
    await api.post("/api/projects?org=hooks", json={"name": "b", "labels": []})
    await api.post("/api/projects?org=hooks", json={"name": "c", "labels": []})
    rows = await _wait_rows(db, hook["id"], 3)
    assert [(r.status, r.status_code, r.attempt) for r in rows[1:]] == [
        ("dead", 410, 1),
        ("dead", 400, 1),
    ]
    assert len(sink.hits) == 5
    dead = (await api.get(f"/api/webhooks/{hook['id']}/deliveries?status=dead")).json()
    assert dead["count"] == 2
    first_dead = min(d["id"] for d in dead["results"])  # the 410 one
    r = await api.post(f"/api/webhooks/{hook['id']}/deliveries/{first_dead}/redelivery")
    assert r.status_code == 200 and r.json() == {}
    rows = await _wait_rows(db, hook["id"], 4)
    assert rows[-1].redelivery and rows[-1].status == "delivered"
    assert sink.hits[-1].body == sink.hits[3].body  # the stored payload, byte for byte
    assert sink.hits[-1].headers["x-webhook-delivery"] != sink.hits[3].headers["x-webhook-delivery"]


async def test_receiver_down_then_up(
    as_user: Any, alice: Account, db: Database, hooked_settings: Settings
) -> None:
    api = as_user(alice)
    await _org(api)
    down = Receiver().start()
    port = down.port
    down.stop()  # nobody listens there now
    hook = await _hook(
        api,
        "?org=hooks",
        target_url=f"http://127.0.0.1:{port}/hook",
        type="organization",
        events=["create:project"],
        retry_delays=[0.2],
        max_retries=50,
    )
    for i in range(5):
        await api.post("/api/projects?org=hooks", json={"name": f"p{i}", "labels": []})
    await asyncio.sleep(1.0)
    with db.session() as session:
        first = session.scalar(
            select(WebhookDelivery)
            .where(WebhookDelivery.webhook_id == hook["id"])
            .order_by(WebhookDelivery.id)
            .limit(1)
        )
        assert first is not None and first.status == "pending" and first.attempt >= 2
        assert first.status_code == 502
    up = Receiver(port=port).start()
    try:
        hits = up.wait_for(5)
        rows = await _wait_rows(db, hook["id"], 5)
    finally:
        up.stop()
    assert [h.payload["project"]["name"] for h in hits] == [f"p{i}" for i in range(5)]
    assert {r.status for r in rows} == {"delivered"}


async def test_rolled_back_change_sends_nothing(
    hooked: Any, as_user: Any, alice: Account, sink: Receiver, db: Database
) -> None:
    api = as_user(alice)
    org = await _org(api)
    hook = await _hook(
        api, "?org=hooks", target_url=sink.url, type="organization", events=["create:project"]
    )
    with pytest.raises(RuntimeError), db.session() as session:
        record(
            session,
            Change(
                "create",
                "project",
                after={"id": 99, "name": "ghost"},
                scope_ids=Scope(org_id=org["id"]),
                actor=Actor(user_id=alice.id),
            ),
        )
        raise RuntimeError("the change fails")
    # a failing request rolls back as well
    r = await api.post("/api/projects?org=hooks", json={"name": "x", "labels": [{"bad": 1}]})
    assert r.status_code == 400
    await asyncio.sleep(0.6)
    with db.session() as session:
        count = session.query(WebhookDelivery).filter_by(webhook_id=hook["id"]).count()
    assert count == 0 and sink.hits == []


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::1]", "169.254.169.254", "10.1.2.3", "localhost", "loopback.test"],
)
async def test_outbound_guard_refuses_internal_targets(
    db: Database, settings: Settings, alice: Account, host: str, monkeypatch: Any
) -> None:
    """Without an allow-list nothing internal is reached: the delivery is dead with the
    guard's reason (a name that resolves to loopback included)."""
    import socket

    real = socket.getaddrinfo

    def fake(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "loopback.test":
            return real("127.0.0.1", *args, **kwargs)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    settings.webhooks.sweep_interval_s = 0.2
    app = build_app(settings, db)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Token {alice.token}"},
        ) as api,
    ):
        await _org(api)
        hook = await _hook(
            api,
            "?org=hooks",
            target_url=f"http://{host}:9/hook",
            type="organization",
            events=["create:project"],
        )
        await api.post("/api/projects?org=hooks", json={"name": "p", "labels": []})
        rows = await _wait_rows(db, hook["id"], 1)
        assert rows[0].status == "dead", rows[0].response
        assert "Refused" in rows[0].response and "allow-lists" in rows[0].response
        ping = (await api.post(f"/api/webhooks/{hook['id']}/ping")).json()
        assert ping["status"] == "dead" and "Refused" in ping["response"]


async def test_redirect_to_refused_address_and_ping(
    as_user: Any, alice: Account, sink: Receiver, db: Database
) -> None:
    inner = Receiver(host="127.0.0.2").start()  # loopback, not allow-listed
    try:
        api = as_user(alice)
        await _org(api)
        hook = await _hook(
            api, "?org=hooks", target_url=sink.url, type="organization", events=["create:project"]
        )
        ping = await api.post(f"/api/webhooks/{hook['id']}/ping")
        assert ping.status_code == 200, ping.text
        body = ping.json()
        assert body["event"] == "ping" and body["status_code"] == 200 and body["attempt"] == 1
        payload = sink.hits[-1].payload
        assert payload["event"] == "ping" and payload["webhook"]["id"] == hook["id"]
        assert "secret" not in payload["webhook"]
        sink.redirect = inner.url
        await api.post("/api/projects?org=hooks", json={"name": "p", "labels": []})
        rows = await _wait_rows(db, hook["id"], 2)
        assert rows[-1].status == "dead" and "Refused" in rows[-1].response
        assert inner.hits == []
    finally:
        inner.stop()


async def test_permissions(
    as_user: Any, alice: Account, bob: Account, make_user: Any, admin: Account
) -> None:
    owner, member = as_user(alice), as_user(bob)
    org = await _org(owner)
    r = await owner.post(
        f"/api/invitations?org={org['slug']}", json={"role": "worker", "username": "bob"}
    )
    assert r.status_code == 201, r.text
    r = await member.post(f"/api/invitations/{r.json()['key']}/accept")
    assert r.status_code == 200, r.text
    body = {"target_url": "http://x.test/h", "type": "organization", "events": ["create:task"]}
    # create@organization: maintainer or owner; a worker may not
    assert (await member.post("/api/webhooks?org=hooks", json=body)).status_code == 403
    hook = await _hook(owner, "?org=hooks", **body)
    assert (await member.get(f"/api/webhooks/{hook['id']}")).status_code == 403
    assert (await member.get("/api/webhooks?org=hooks")).json()["count"] == 0
    assert (
        await member.patch(f"/api/webhooks/{hook['id']}", json={"description": "x"})
    ).status_code == 403
    assert (await member.delete(f"/api/webhooks/{hook['id']}")).status_code == 403
    # organization webhooks need an organization
    assert (await owner.post("/api/webhooks", json=body)).status_code in (400, 403)
    # project webhooks: the project's owner, in the sandbox
    project = (await member.post("/api/projects", json={"name": "mine", "labels": []})).json()
    pbody = {
        "target_url": "http://x.test/p",
        "type": "project",
        "project_id": project["id"],
        "events": ["update:project"],
    }
    mine = await _hook(member, "", **pbody)
    assert (await owner.post("/api/webhooks", json=pbody)).status_code == 403
    assert (await owner.get(f"/api/webhooks/{mine['id']}")).status_code == 403
    assert (await member.get("/api/webhooks")).json()["count"] == 1
    # server webhooks: admins only
    sbody = {"target_url": "http://x.test/s", "type": "server", "events": ["create:user"]}
    assert (await owner.post("/api/webhooks", json=sbody)).status_code == 403
    root = as_user(admin)
    server_hook = await _hook(root, "", **sbody)
    assert (await owner.get(f"/api/webhooks/{server_hook['id']}")).status_code == 403
    assert server_hook["id"] in [
        w["id"] for w in (await root.get("/api/webhooks")).json()["results"]
    ]
    assert server_hook["id"] not in [
        w["id"] for w in (await owner.get("/api/webhooks")).json()["results"]
    ]


async def test_server_webhook_sees_everything(
    as_user: Any, admin: Account, alice: Account, sink: Receiver
) -> None:
    root, api = as_user(admin), as_user(alice)
    await _hook(
        root,
        "",
        target_url=sink.url,
        type="server",
        events=["create:project", "create:organization", "update:user"],
    )
    await api.post("/api/projects", json={"name": "sandbox", "labels": []})
    await _org(api, "other")
    r = await api.patch(f"/api/users/{alice.id}", json={"first_name": "Al"})
    assert r.status_code == 200, r.text
    hits = sink.wait_for(3)
    assert [h.payload["event"] for h in hits] == [
        "create:project",
        "create:organization",
        "update:user",
    ]
    assert hits[2].payload["changes"]["first_name"]["to"] == "Al"


async def test_api_restarted_with_pending_rows_delivers_them(
    hooked_settings: Settings, db: Database, alice: Account, sink: Receiver
) -> None:
    """Deliveries written while no sender runs (the API process went away after commit)
    are sent by the next process's sender, from the outbox alone."""
    first = build_app(hooked_settings, db)  # no lifespan: no sender in this "process"
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=first),
        base_url="http://testserver",
        headers={"Authorization": f"Token {alice.token}"},
    ) as api:
        await _org(api)
        hook = await _hook(
            api, "?org=hooks", target_url=sink.url, type="organization", events=["create:project"]
        )
        for i in range(3):
            await api.post("/api/projects?org=hooks", json={"name": f"p{i}", "labels": []})
    await asyncio.sleep(0.5)
    with db.session() as session:
        pending = session.query(WebhookDelivery).filter_by(status="pending").count()
    assert pending == 3 and sink.hits == []
    second = build_app(hooked_settings, db)
    async with second.router.lifespan_context(second):
        hits = sink.wait_for(3)
        rows = await _wait_rows(db, hook["id"], 3)
    assert [h.payload["project"]["name"] for h in hits] == ["p0", "p1", "p2"]
    assert {r.status for r in rows} == {"delivered"}


def test_retention_prunes_old_deliveries(db: Database, settings: Settings) -> None:
    from datetime import timedelta

    from cvat_ray.storage.models import Organization, User, Webhook, utcnow
    from cvat_ray.storage.webhooks.sender import WebhookSender

    with db.session() as session:
        user = User(username="r", email="", password_hash="")
        session.add(user)
        session.flush()
        org = Organization(slug="r", name="r", owner_id=user.id)
        session.add(org)
        session.flush()
        hook = Webhook(
            target_url="http://x.test/h",
            events=["create:task"],
            type="organization",
            organization_id=org.id,
        )
        session.add(hook)
        session.flush()
        old = utcnow() - timedelta(days=settings.webhooks.retention_days + 1)
        for status, created in (
            ("delivered", old),
            ("dead", old),
            ("pending", old),  # not sent yet: kept whatever its age
            ("delivered", utcnow()),
        ):
            session.add(
                WebhookDelivery(
                    uid=f"{status}-{created.timestamp()}",
                    webhook_id=hook.id,
                    event="create:task",
                    status=status,
                    body="{}",
                    created_date=created,
                )
            )
    sender = WebhookSender(db, settings, "pruner")
    try:
        assert sender.prune() == 2
    finally:
        sender.stop()
    with db.session() as session:
        left = sorted(r.status for r in session.query(WebhookDelivery))
    assert left == ["delivered", "pending"]


async def test_task_data_jobs_and_request_completion(
    as_user: Any, alice: Account, sink: Receiver, db: Database
) -> None:
    """Background work fires too: a task's jobs are created (``create:job``) and its
    ``create:task`` request completes; deleting the task deletes its jobs, each told."""
    from tests.factories import images, upload, wait

    api = as_user(alice)
    await _org(api)
    events = ["create:job", "delete:job", "delete:task", "completed:request[create:task]"]
    hook = await _hook(api, "?org=hooks", target_url=sink.url, type="organization", events=events)
    r = await api.post(
        "/api/tasks?org=hooks",
        json={"name": "data", "labels": [{"name": "car"}], "segment_size": 2},
    )
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    rq = (await upload(api, task_id, images(4))).json()["rq_id"]
    assert (await wait(api, rq))["status"] == "finished"
    assert (await api.delete(f"/api/tasks/{task_id}")).status_code == 204
    hits = sink.wait_for(6)
    assert [h.payload["event"] for h in hits] == [
        "create:job",
        "create:job",
        "completed:request[create:task]",
        "delete:job",
        "delete:job",
        "delete:task",
    ]
    job = hits[0].payload["job"]
    assert job["task_id"] == task_id and job["url"].startswith("http://testserver/api/jobs/")
    assert hits[0].payload["sender"]["username"] == "alice"
    request = hits[2].payload["request"]
    assert request["status"] == "finished" and request["operation"]["type"] == "create:task"
    assert "sender" not in hits[2].payload
    assert hits[5].payload["task"]["id"] == task_id
    rows = await _wait_rows(db, hook["id"], 6)
    assert len(rows) == 6


async def test_registration_fires_create_user(
    as_user: Any, hooked: Any, admin: Account, sink: Receiver
) -> None:
    await _hook(as_user(admin), "", target_url=sink.url, type="server", events=["create:user"])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=hooked), base_url="http://testserver"
    ) as anon:
        r = await anon.post(
            "/api/auth/register",
            json={
                "username": "newbie",
                "email": "newbie@example.com",
                "password1": "Str0ng-pass-1",
                "password2": "Str0ng-pass-1",
            },
        )
        assert r.status_code == 201, r.text
    hits = sink.wait_for(1)
    assert hits[0].payload["event"] == "create:user"
    assert hits[0].payload["user"]["username"] == "newbie"
    assert hits[0].payload["sender"]["username"] == "newbie"


async def test_moving_a_project_between_organizations(
    as_user: Any, alice: Account, sink: Receiver
) -> None:
    """As CVAT tells a move: delete for the old organization, create for the new one, update
    for the project's own webhooks."""
    api = as_user(alice)
    await _org(api, "old")
    new = await _org(api, "new")
    crud = ["create:project", "update:project", "delete:project"]
    await _hook(api, "?org=old", target_url=sink.url + "/old", type="organization", events=crud)
    await _hook(api, "?org=new", target_url=sink.url + "/new", type="organization", events=crud)
    r = await api.post("/api/projects?org=old", json={"name": "mover", "labels": []})
    project = r.json()
    await _hook(
        api,
        "",
        target_url=sink.url + "/project",
        type="project",
        project_id=project["id"],
        events=["update:project", "delete:project"],
    )
    r = await api.patch(f"/api/projects/{project['id']}", json={"organization_id": new["id"]})
    assert r.status_code == 200, r.text
    hits = sink.wait_for(4)
    got = sorted((h.path, h.payload["event"]) for h in hits)
    assert got == [
        ("/hook/new", "create:project"),
        ("/hook/old", "create:project"),
        ("/hook/old", "delete:project"),
        ("/hook/project", "update:project"),
    ]


async def test_project_dataset_import_sends_the_new_tasks_and_jobs(
    as_user: Any, alice: Account, sink: Receiver
) -> None:
    """The tasks a project import makes from a dataset with images (and their jobs) are
    created as any task: project webhooks hear of them."""
    api = as_user(alice)
    r = await api.post("/api/projects", json={"name": "p", "labels": [{"name": "cat"}]})
    project = r.json()
    await _hook(
        api, "", target_url=sink.url, type="project", project_id=project["id"],
        events=["create:task", "create:job"],
    )  # fmt: skip
    body = await import_file(
        api, "project", project["id"], "COCO 1.0", "p.zip", _coco_with_images()
    )
    assert body["status"] == "finished", body
    hits = sink.wait_for(4)
    got = sorted((h.payload["event"], h.payload.get("task", {}).get("name", "")) for h in hits)
    assert got == [("create:job", ""), ("create:job", ""), ("create:task", "train"),
                   ("create:task", "val")]  # fmt: skip
    assert all(h.payload["sender"]["username"] == "alice" for h in hits)
    # links made in the background from the importing request's base URL
    jobs = [h.payload["job"] for h in hits if h.payload["event"] == "create:job"]
    assert all(j["url"].startswith("http://testserver/api/jobs/") for j in jobs), jobs
