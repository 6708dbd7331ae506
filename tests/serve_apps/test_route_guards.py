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
from tests.factories import api_routes, route_objects

# Routes anyone may call: they authenticate the caller themselves or need no identity.
PUBLIC = {
    ("GET", "/api/server/about"),
    ("GET", "/api/server/health"),
    ("GET", "/api/server/plugins"),
    ("GET", "/api/user-agreements"),
    ("GET", "/api/schema"),
    ("GET", "/api/docs"),
    ("POST", "/api/auth/login"),
    ("POST", "/api/auth/logout"),
    ("POST", "/api/auth/register"),
}


def _uses_call(endpoint: Any) -> bool:
    hints = typing.get_type_hints(endpoint, include_extras=True)
    for name in inspect.signature(endpoint).parameters:
        hint = hints.get(name)
        for arg in typing.get_args(hint) or (hint,):
            if arg is Caller:
                return True
    return False


def test_every_route_is_public_or_goes_through_the_policy(app) -> None:
    routes = api_routes(app)
    assert len(routes) > 30
    unguarded = [
        f"{method} {path}"
        for method, path, route in routes
        if (method, path) not in PUBLIC and not _uses_call(route)
    ]
    assert not unguarded, unguarded


@pytest.fixture
async def objects(client_for, db: Database, admin: Account) -> dict[str, str]:
    return await route_objects(client_for, db, admin)


@pytest.mark.parametrize("who", ["admin", "stranger"])
async def test_no_route_answers_500(
    app, client_for, objects, admin: Account, make_user, who
) -> None:
    account = admin if who == "admin" else make_user("stranger")
    api: httpx.AsyncClient = client_for(account)
    failures = []
    # Routes that would end the caller's own session or account are left out.
    skip = {("DELETE", "/api/users/{user_id}"), ("DELETE", "/api/organizations/{org_id}")}
    for method, path, _route in api_routes(app):
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
