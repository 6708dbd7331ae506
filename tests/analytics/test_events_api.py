"""``/api/events``, working time, server events from domain changes, exceptions, the sink and
the export flows: on SQLite and PostgreSQL, into chdb and a ClickHouse server."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cvat_ray.actors.analytics import EventsSink, chdb_path, store_for
from cvat_ray.analytics.schema import EXPORT_NAMES, table
from cvat_ray.analytics.store import forget_store
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.deps import Call
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import EventOutbox
from cvat_ray.storage.services import requests as request_service
from tests.conftest import Account
from tests.factories import make_task, wait


@pytest.fixture(autouse=True)
def _close_store(settings: Settings) -> Any:
    yield
    forget_store(settings.analytics, chdb_path(settings))


def pending_rows(db: Database) -> list[dict[str, Any]]:
    with db.session() as session:
        return [
            json.loads(text)
            for text in session.scalars(select(EventOutbox.row).order_by(EventOutbox.id))
        ]


def shipped(settings: Settings, where: str = "1") -> list[dict[str, Any]]:
    """Rows in ClickHouse (after a drain), as dicts of the export columns."""
    store = store_for(settings)
    cols = [c for c in EXPORT_NAMES if c != "timestamp"]
    sql = (
        f"SELECT {', '.join(cols)}, {store.flavor.ts_ms} FROM {table(store.database)} "
        f"WHERE {where} ORDER BY {store.flavor.ts_ms}"
    )
    return [dict(zip([*cols, "timestamp"], r, strict=True)) for r in store.execute(sql)]


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def client_event(scope: str, when: datetime, **extra: Any) -> dict[str, Any]:
    return {"scope": scope, "timestamp": iso(when), **extra}


async def test_client_events_are_stored_as_cvat_does(
    client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    api = client_for(alice)
    client_now = datetime.now(UTC) - timedelta(hours=1)  # the client's clock is an hour late
    events = [
        client_event(
            "load:job",
            client_now - timedelta(seconds=30),
            job_id=5,
            task_id=2,
            user_id=999,
            user_name="mallory",
            org_id=77,
            payload='{"client_id":1}',
        ),
        client_event("user:activity", client_now - timedelta(seconds=20), job_id=5, task_id=2),
        client_event(
            "change:frame",
            client_now - timedelta(seconds=10),
            job_id=5,
            task_id=2,
            count=4,
            duration=5000,
        ),
    ]
    body = {"events": events, "previous_event": None, "timestamp": iso(client_now)}
    r = await api.post("/api/events", json=body, headers={"X-Request-Id": "req-7"})
    assert r.status_code == 201, r.text
    assert [e["scope"] for e in r.json()["events"]] == ["load:job", "user:activity", "change:frame"]

    rows = pending_rows(db)
    scopes = [row["scope"] for row in rows]
    assert scopes == ["load:job", "change:frame", "send:working_time"]  # no user:activity
    load = rows[0]
    assert load["user_id"] == alice.id and load["user_name"] == "alice"  # from the session
    assert load["user_email"] == "alice@example.com" and load["org_id"] is None
    assert load["source"] == "client" and load["payload"] == '{"client_id":1}'
    assert load["remote_addr"] == "127.0.0.1"
    # shifted by the skew: about now - 30 s
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    assert abs(load["timestamp"] - (now_ms - 30_000)) < 5_000
    wt = rows[2]
    # 20 s of gaps to the change:frame + its 5 s, credited to job 5
    assert wt["duration"] == 25_000 and wt["job_id"] == 5 and wt["task_id"] == 2
    assert json.loads(wt["payload"]) == {"working_time": 25_000} and wt["source"] == "server"

    sink = EventsSink(db, settings)
    assert sink.drain() == 3
    assert pending_rows(db) == []
    stored = shipped(settings)
    assert sorted(s["scope"] for s in stored) == ["change:frame", "load:job", "send:working_time"]
    frame = next(s for s in stored if s["scope"] == "change:frame")
    assert frame["count"] == 4 and frame["duration"] == 5000


async def test_unknown_scopes_are_refused(client_for: Any, alice: Account, db: Database) -> None:
    api = client_for(alice)
    now = datetime.now(UTC)
    body = {
        "events": [client_event("load:job", now), client_event("create:task", now)],
        "timestamp": iso(now),
    }
    r = await api.post("/api/events", json=body)
    assert r.status_code == 400 and "create:task" in r.text
    r = await api.post(
        "/api/events", json={"events": [{"scope": "load:job"}], "timestamp": iso(now)}
    )
    assert r.status_code == 400  # no timestamp
    assert pending_rows(db) == []


async def test_server_events_from_domain_changes(
    client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    api = client_for(alice)
    rid = str(uuid.uuid4())
    headers = {"X-Request-Id": rid}
    r = await api.post("/api/auth/access_tokens", json={"name": "ci"}, headers=headers)
    assert r.status_code == 201, r.text
    token_id = r.json()["id"]
    r = await api.patch(f"/api/auth/access_tokens/{token_id}", json={"name": "cd"}, headers=headers)
    assert r.status_code == 200
    r = await api.delete(f"/api/auth/access_tokens/{token_id}", headers=headers)
    assert r.status_code == 204
    task = await make_task(api, db, frames=4)
    cat = task["labels_by_name"]["cat"]
    r = await api.patch(f"/api/labels/{cat['id']}", json={"name": "kitten"}, headers=headers)
    assert r.status_code == 200, r.text
    job_id = task["job_ids"][0]
    shapes = {
        "version": 0,
        "tags": [{"frame": 0, "label_id": cat["id"], "group": None}],
        "shapes": [
            {"type": "rectangle", "frame": 0, "label_id": cat["id"], "points": [1, 2, 3, 4]},
            {"type": "rectangle", "frame": 1, "label_id": cat["id"], "points": [1, 2, 3, 4]},
        ],
        "tracks": [],
    }
    r = await api.put(f"/api/jobs/{job_id}/annotations", json=shapes, headers=headers)
    assert r.status_code == 200, r.text

    EventsSink(db, settings).drain()
    events = shipped(settings, "source = 'server'")
    by_scope: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_scope.setdefault(e["scope"], []).append(e)
    assert by_scope["create:accesstoken"][0]["obj_name"] == "ci"
    assert by_scope["create:accesstoken"][0]["obj_id"] == token_id
    update = by_scope["update:accesstoken"]
    assert [(u["obj_name"], u["obj_val"]) for u in update] == [("name", "cd")]
    assert json.loads(update[0]["payload"]) == {"old_value": "ci", "request": {"id": rid}}
    assert by_scope["delete:accesstoken"][0]["user_id"] == alice.id
    # labels: created with the task, renamed through /api/labels
    assert {e["obj_name"] for e in by_scope["create:label"]} >= {"cat", "dog"}
    renamed = [e for e in by_scope["update:label"] if e["obj_name"] == "name"]
    assert renamed[0]["obj_val"] == "kitten" and renamed[0]["task_id"] == task["id"]
    assert renamed[0]["user_name"] == "alice"
    # annotations: one event per shape type, with counts and the job
    shapes_event = by_scope["create:shapes"][0]
    assert shapes_event["count"] == 2 and shapes_event["job_id"] == job_id
    assert shapes_event["task_id"] == task["id"]
    assert len(json.loads(shapes_event["payload"])["shapes"]) == 2
    assert shapes_event["obj_name"] == "rectangle"
    assert by_scope["create:tags"][0]["count"] == 1
    assert "create:tracks" not in by_scope
    for e in events:
        if e["scope"].endswith(("accesstoken", ":shapes")) or e["obj_val"] == "kitten":
            assert json.loads(e["payload"])["request"]["id"] == rid


async def test_a_rolled_back_change_leaves_no_event(
    client_for: Any, alice: Account, db: Database
) -> None:
    api = client_for(alice)
    task = await make_task(api, db, frames=2)
    before = len(pending_rows(db))
    bad = {
        "version": 0,
        "tags": [],
        "shapes": [
            {
                "type": "rectangle",
                "frame": 0,
                "label_id": task["labels_by_name"]["cat"]["id"],
                "points": [1, 2, 3, 4],
            },
            {"type": "rectangle", "frame": 99, "label_id": 123456, "points": [1, 2, 3, 4]},
        ],
        "tracks": [],
    }
    r = await api.put(f"/api/jobs/{task['job_ids'][0]}/annotations", json=bad)
    assert r.status_code == 400
    assert len(pending_rows(db)) == before


async def test_5xx_and_failed_requests_become_exceptions(
    app: Any, client_for: Any, alice: Account, db: Database
) -> None:
    def explode(session: Any, ctx: Any) -> None:
        raise RuntimeError("the disk is on fire")

    async def boom(call: Call) -> None:
        await call(explode)

    app.add_api_route("/api/test-boom", boom, methods=["GET"])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://testserver",
        headers={"Authorization": f"Token {alice.token}"},
    ) as api:
        r = await api.get("/api/test-boom?x=1", headers={"X-Request-Id": "rid-500"})
    assert r.status_code == 500
    with db.session() as session:
        row = request_service.add_request(
            session, "export:events", "events", owner_id=alice.id, organization_id=None
        )
        request_service.transition(session, row.id, "failed", message="ClickHouse said no")
        cancelled = request_service.add_request(
            session, "export:events", "events", owner_id=alice.id, organization_id=None
        )
    with db.session() as session:
        # a cancellation is no failure
        request_service.transition(
            session, cancelled.id, "failed", message="Cancelled", report=False
        )
    rows = [r for r in pending_rows(db) if r["scope"] == "send:exception"]
    assert len(rows) == 2
    http, failed = rows
    payload = json.loads(http["payload"])
    assert payload["status_code"] == 500 and payload["message"] == "the disk is on fire"
    assert payload["request"]["id"] == "rid-500" and payload["request"]["url"] == "/api/test-boom"
    assert "RuntimeError" in payload["stack"] and http["user_id"] == alice.id
    assert json.loads(failed["payload"])["message"] == "ClickHouse said no"
    assert failed["user_id"] == alice.id


def _csv(text: str) -> list[dict[str, str]]:
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == list(EXPORT_NAMES)
    return [dict(zip(EXPORT_NAMES, line, strict=True)) for line in lines[1:]]


async def _post_client_events(api: httpx.AsyncClient, n: int, job_id: int = 1) -> None:
    now = datetime.now(UTC)
    events = [
        client_event("draw:object", now - timedelta(seconds=n - i), job_id=job_id) for i in range(n)
    ]
    r = await api.post("/api/events", json={"events": events, "timestamp": iso(now)})
    assert r.status_code == 201, r.text


async def test_export_flow(
    client_for: Any, admin: Account, alice: Account, bob: Account, db: Database, settings: Settings
) -> None:
    await _post_client_events(client_for(alice), 3)
    await _post_client_events(client_for(bob), 2)
    EventsSink(db, settings).drain()

    api = client_for(admin)
    r = await api.post("/api/events/export")
    assert r.status_code == 202, r.text
    done = await wait(api, r.json()["rq_id"])
    assert done["status"] == "finished", done
    url = str(done["result_url"])
    assert url.startswith("http://testserver/api/events/download?rq_id=")
    r = await api.get(url.removeprefix("http://testserver"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = _csv(r.text)
    drawn = sorted(row["user_name"] for row in rows if row["scope"] == "draw:object")
    assert drawn == ["alice"] * 3 + ["bob"] * 2
    worked = {
        row["user_name"]: row["duration"] for row in rows if row["scope"] == "send:working_time"
    }
    assert worked == {"alice": "2000", "bob": "1000"}

    # a non-admin sees only their own events; asking for someone else's is a 403
    alice_api = client_for(alice)
    r = await alice_api.post(f"/api/events/export?user_id={bob.id}")
    assert r.status_code == 403
    r = await alice_api.post("/api/events/export?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z")
    assert r.status_code == 400
    r = await alice_api.post("/api/events/export?from=yesterday")
    assert r.status_code == 400
    r = await alice_api.post("/api/events/export?filename=mine.csv")
    assert r.status_code == 202
    done = await wait(alice_api, r.json()["rq_id"])
    r = await alice_api.get(str(done["result_url"]).removeprefix("http://testserver"))
    assert {row["user_name"] for row in _csv(r.text)} == {"alice"}
    assert 'filename="mine.csv"' in r.headers["content-disposition"]
    # another user cannot download alice's export
    r = await client_for(bob).get(str(done["result_url"]).removeprefix("http://testserver"))
    assert r.status_code == 403
    # a time window
    later = iso(datetime.now(UTC) + timedelta(hours=1))
    r = await api.post(f"/api/events/export?from={later}")
    assert r.status_code == 400  # after the default "to" (now)
    past = datetime.now(UTC) - timedelta(hours=2)
    r = await api.post(f"/api/events/export?from={iso(past)}&to={iso(past + timedelta(hours=1))}")
    done = await wait(api, r.json()["rq_id"])
    r = await api.get(str(done["result_url"]).removeprefix("http://testserver"))
    assert _csv(r.text) == []


async def test_deprecated_export_flow(
    client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    api = client_for(alice)
    await _post_client_events(api, 2)
    EventsSink(db, settings).drain()
    query_id = str(uuid.uuid4())
    r = await api.get(f"/api/events?query_id={query_id}")
    assert r.status_code == 202 and r.json() == {"query_id": query_id}
    assert r.headers["Deprecation"] == "@1742169600"
    await wait(api, query_id)
    r = await api.get(f"/api/events?query_id={query_id}")
    assert r.status_code == 201 and r.headers["Deprecation"]
    r = await api.get(f"/api/events?query_id={query_id}&action=nonsense")
    assert r.status_code == 400
    r = await api.get(f"/api/events?query_id={query_id}&action=download")
    assert r.status_code == 200 and r.headers["Deprecation"] == "@1742169600"
    assert [row["scope"] for row in _csv(r.text)].count("draw:object") == 2
    # downloaded: the job is gone (a new call starts a new export)
    r = await api.get(f"/api/requests/{query_id}")
    assert r.status_code == 404
    assert not (Path(settings.analytics_dir) / "exports" / f"{query_id}.csv").exists()
    r = await api.get("/api/events")
    assert r.status_code == 202 and uuid.UUID(r.json()["query_id"])


async def test_a_failed_export_answers_500_in_the_old_flow(
    client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    api = client_for(alice)
    settings.analytics.enabled = False  # the export's work refuses
    try:
        r = await api.get("/api/events")
        query_id = r.json()["query_id"]
        body = await wait(api, query_id)
        assert body["status"] == "failed"
        r = await api.get(f"/api/events?query_id={query_id}")
        assert r.status_code == 500 and "turned off" in r.json()["detail"]
    finally:
        settings.analytics.enabled = True


async def test_dashboard_access(
    app: Any, client_for: Any, admin: Account, alice: Account, make_user: Any, db: Database
) -> None:
    app.state.launcher.open()  # the sink's loop, as when the app serves
    try:
        await _dashboard_access(client_for, admin, alice, make_user)
    finally:
        app.state.launcher.close()


async def _dashboard_access(
    client_for: Any, admin: Account, alice: Account, make_user: Any
) -> None:
    await _post_client_events(client_for(alice), 4, job_id=3)
    r = await client_for(alice).get("/api/analytics/dashboard")
    assert r.status_code == 403
    for account in (admin, make_user("boss", "business")):
        r = await client_for(account).get("/api/analytics/dashboard")
        assert r.status_code == 200, r.text
        body = r.json()
        drawn = [s for s in body["scopes"] if s["scope"] == "draw:object"]
        assert drawn[0]["count"] == 4  # drained before answering
        assert body["working_time"][0]["ms"] == 3000 and body["working_time"][0]["job_id"] == 3
        assert body["users"][0]["user_name"] == "alice"
    r = await client_for(admin).get(
        "/api/analytics/dashboard?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"
    )
    assert r.status_code == 400


async def test_the_page_is_served_to_analytics_users_only(
    client_for: Any, anon: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    r = await anon.get("/analytics")
    assert r.status_code == 200 and "Sign in" in r.text  # its sign-in form
    r = await client_for(admin).get("/analytics")
    assert r.status_code == 200 and "Activity over time" in r.text
    r = await client_for(alice).get("/analytics")
    assert r.status_code == 403


async def test_function_calls_are_events(
    client_for: Any, alice: Account, db: Database, settings: Settings, engine: str
) -> None:
    if engine != "chdb":
        pytest.skip("the events are the same on both stores")
    from cvat_ray.serve_apps.deploy import builtin_spec_dir
    from cvat_ray.storage.functions.spec import load_spec_file, spec_files
    from cvat_ray.storage.services import lambda_functions
    from tests.factories import colour_task, poll, scenes

    with db.session() as session:
        for path in spec_files(builtin_spec_dir()):
            lambda_functions.register(session, load_spec_file(path), "builtin")
    api = client_for(alice)
    task_id = await colour_task(api, [im for im, _ in scenes(1)])
    r = await api.post(
        "/api/lambda/functions/colour-detector",
        json={"task": task_id, "frame": 0, "threshold": 0.4},
    )
    assert r.status_code == 200, r.text
    r = await api.post(
        "/api/lambda/requests", json={"function": "colour-detector", "task": task_id}
    )
    assert r.status_code == 200, r.text
    assert (await poll(api, r.json()["id"]))["status"] == "finished"
    calls = [row for row in pending_rows(db) if row["scope"] == "call:function"]
    assert [json.loads(c["payload"])["category"] for c in calls] == ["interactive", "batch"]
    for call in calls:
        payload = json.loads(call["payload"])
        assert payload["function"] == {"id": "colour-detector"} and call["task_id"] == task_id
        assert call["obj_name"] == "colour-detector" and call["user_id"] == alice.id
    assert json.loads(calls[0]["payload"])["parameters"]["threshold"] == 0.4


async def test_cloud_storage_events(
    client_for: Any, alice: Account, db: Database, settings: Settings, engine: str, s3_server: Any
) -> None:
    if engine != "chdb":
        pytest.skip("the events are the same on both stores")
    settings.media.remote_allowlist = "127.0.0.1/32"
    api = client_for(alice)
    body = {
        "provider_type": s3_server.provider,
        "resource": s3_server.bucket,
        "display_name": "media bucket",
        **s3_server.fields,
    }
    r = await api.post("/api/cloudstorages", json=body)
    assert r.status_code == 201, r.text
    storage_id = r.json()["id"]
    r = await api.patch(f"/api/cloudstorages/{storage_id}", json={"display_name": "renamed"})
    assert r.status_code == 200, r.text
    r = await api.delete(f"/api/cloudstorages/{storage_id}")
    assert r.status_code == 204
    rows = [row for row in pending_rows(db) if row["scope"].endswith(":cloudstorage")]
    assert [row["scope"] for row in rows] == [
        "create:cloudstorage",
        "update:cloudstorage",
        "delete:cloudstorage",
    ]
    assert rows[0]["obj_name"] == "media bucket" and rows[0]["obj_id"] == storage_id
    assert (rows[1]["obj_name"], rows[1]["obj_val"]) == ("display_name", "renamed")
    assert json.loads(rows[1]["payload"])["old_value"] == "media bucket"
    assert all(row["user_id"] == alice.id for row in rows)
    # no credential leaks into an event
    secrets = [v for k, v in s3_server.fields.items() if k in ("key", "secret_key")]
    assert secrets and all(s not in json.dumps(row) for row in rows for s in secrets)


async def test_every_recorded_change_is_an_event(
    client_for: Any, alice: Account, db: Database, engine: str
) -> None:
    """The services' record() calls (projects, tasks, jobs, ...) become CVAT events with no
    code of analytics' own: the consumer turns any change into rows."""
    if engine != "chdb":
        pytest.skip("the events are the same on both stores")
    api = client_for(alice)
    headers = {"X-Request-Id": "rq-projects"}
    r = await api.post(
        "/api/projects", json={"name": "P1", "labels": [{"name": "cat"}]}, headers=headers
    )
    assert r.status_code == 201, r.text
    project_id = r.json()["id"]
    r = await api.patch(f"/api/projects/{project_id}", json={"name": "P2"}, headers=headers)
    assert r.status_code == 200, r.text
    r = await api.delete(f"/api/projects/{project_id}", headers=headers)
    assert r.status_code == 204, r.text
    rows = [row for row in pending_rows(db) if row["scope"].endswith(":project")]
    assert [row["scope"] for row in rows] == ["create:project", "update:project", "delete:project"]
    assert rows[0]["obj_name"] == "P1" and rows[0]["project_id"] == project_id
    assert (rows[1]["obj_name"], rows[1]["obj_val"]) == ("name", "P2")
    assert json.loads(rows[1]["payload"])["old_value"] == "P1"
    assert all(json.loads(row["payload"])["request"]["id"] == "rq-projects" for row in rows)
    assert all(row["user_name"] == "alice" for row in rows)
