"""Every route is guarded by the permission engine.

Statically: each route either goes through ``Call`` (which fails closed when a service
returns without an authorization decision) or is on the short public list. Dynamically: every
route is called with real objects behind its path parameters, by an admin and by a stranger;
none answers 500 (which is what a missing decision would produce).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

import httpx
import pytest

from cvat_ray.serve_apps.deps import Caller
from cvat_ray.storage.db import Database
from tests.conftest import Account
from tests.factories import LABELS, add_frames

# Routes anyone may call: they authenticate the caller themselves or need no identity.
PUBLIC = {
    ("GET", "/api/server/about"),
    ("GET", "/api/schema"),
    ("GET", "/api/docs"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/register"),
}


def _routes(app) -> list[tuple[str, str, Any]]:
    """(method, path, endpoint) of every API route, included routers flattened."""
    out = []
    for route in app.routes:
        contexts = (
            list(route.effective_route_contexts())
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for item in contexts:
            path = getattr(item, "path", "")
            if isinstance(path, str) and path.startswith("/api/") and hasattr(item, "endpoint"):
                for method in sorted(set(item.methods) - {"HEAD", "OPTIONS"}):
                    out.append((method, path, item.endpoint))
    return out


def _uses_call(endpoint: Any) -> bool:
    hints = typing.get_type_hints(endpoint, include_extras=True)
    for name in inspect.signature(endpoint).parameters:
        hint = hints.get(name)
        for arg in typing.get_args(hint) or (hint,):
            if arg is Caller:
                return True
    return False


def test_every_route_is_public_or_goes_through_the_policy(app) -> None:
    routes = _routes(app)
    assert len(routes) > 30
    unguarded = [
        f"{method} {path}"
        for method, path, route in routes
        if (method, path) not in PUBLIC and not _uses_call(route)
    ]
    assert not unguarded, unguarded


@pytest.fixture
async def objects(client_for, db: Database, admin: Account) -> dict[str, str]:
    api: httpx.AsyncClient = client_for(admin)
    org = (await api.post("/api/organizations", json={"slug": "walk"})).json()
    project = (await api.post("/api/projects", json={"name": "p", "labels": LABELS})).json()
    task = (await api.post("/api/tasks", json={"name": "t", "project_id": project["id"]})).json()
    add_frames(db, task["id"], 2)
    job = (await api.get(f"/api/jobs?task_id={task['id']}")).json()["results"][0]
    label = (await api.get(f"/api/labels?project_id={project['id']}")).json()["results"][0]
    token = (await api.post("/api/auth/access_tokens", json={"name": "t"})).json()
    membership = (await api.get("/api/memberships?org=walk")).json()["results"][0]
    issue = (
        await api.post(
            "/api/issues", json={"job": job["id"], "frame": 0, "position": [1, 2], "message": "m"}
        )
    ).json()
    comment = (await api.get(f"/api/comments?issue_id={issue['id']}")).json()["results"][0]
    return {
        "issue_id": str(issue["id"]),
        "comment_id": str(comment["id"]),
        "org_id": str(org["id"]),
        "project_id": str(project["id"]),
        "task_id": str(task["id"]),
        "job_id": str(job["id"]),
        "label_id": str(label["id"]),
        "token_id": str(token["id"]),
        "membership_id": str(membership["id"]),
        "user_id": str(admin.id),
        "request_id": "nonexistent",
        "func_id": "nonexistent",
        # a cloud storage needs a reachable bucket; a missing one must still not give a 500
        "storage_id": "999999",
        "upload_id": "nonexistent",
        "key": "nonexistent",
    }


@pytest.mark.parametrize("who", ["admin", "stranger"])
async def test_no_route_answers_500(
    app, client_for, objects, admin: Account, make_user, who
) -> None:
    account = admin if who == "admin" else make_user("stranger")
    api: httpx.AsyncClient = client_for(account)
    failures = []
    # Routes that would end the caller's own session or account are left out.
    skip = {("DELETE", "/api/users/{user_id}"), ("DELETE", "/api/organizations/{org_id}")}
    for method, path, _route in _routes(app):
        if (method, path) in PUBLIC or (method, path) in skip:
            continue
        url = path
        for name, value in objects.items():
            url = url.replace("{" + name + "}", value)
        assert "{" not in url, f"no object for {path}"
        body: dict[str, Any] | None = {} if method in ("POST", "PATCH", "PUT") else None
        r = await api.request(method, url, json=body)
        if r.status_code >= 500:
            failures.append(f"{method} {url} -> {r.status_code} {r.text[:200]}")
    assert not failures, failures
