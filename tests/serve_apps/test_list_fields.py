"""Every list endpoint accepts exactly CVAT's ``filter``, ``search``, ``sort`` and simple
``?field=value`` fields for that endpoint.

``CVAT`` below holds the field names CVAT 2.73.0 declares in its OpenAPI schema
(``cvat/schema.yml``: the ``Available filter_fields``, ``search_fields`` and
``ordering_fields`` of each list operation, and its "simple equality filter" parameters),
copied as facts. Our side is the endpoint's ``ListSpec``, the one table its SQL is built from.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from cvat_ray.serve_apps.deps import list_params
from cvat_ray.storage.query import ListSpec
from cvat_ray.storage.services import (
    accounts,
    cloud_storages,
    issues,
    jobs,
    label_api,
    memberships,
    organizations,
    projects,
    quality,
    requests,
    tasks,
    users,
    webhooks,
)
from tests.conftest import Account


def _f(names: str) -> frozenset[str]:
    return frozenset(names.split())


# CVAT 2.73.0: filter / search / sort / simple fields per list endpoint.
CVAT: dict[str, dict[str, frozenset[str]]] = {
    "/api/auth/access_tokens": {
        "filter": _f("created_date expiry_date id last_used_date name read_only updated_date"),
        "search": _f("name"),
        "sort": _f("created_date expiry_date id last_used_date name read_only updated_date"),
        "simple": _f("name read_only"),
    },
    "/api/cloudstorages": {
        "filter": _f("credentials_type description id name owner provider_type resource"),
        "search": _f("description name owner resource"),
        "sort": _f("credentials_type description id name owner provider_type resource"),
        "simple": _f("credentials_type name owner provider_type resource"),
    },
    "/api/comments": {
        "filter": _f("frame_id id issue_id job_id owner"),
        "search": _f("owner"),
        "sort": _f("frame_id id issue_id job_id owner"),
        "simple": _f("frame_id issue_id job_id owner"),
    },
    "/api/invitations": {
        "filter": _f("accepted id owner user_id"),
        "search": _f("owner"),
        "sort": _f("accepted created_date owner user_id"),
        "simple": _f("accepted owner user_id"),
    },
    "/api/issues": {
        "filter": _f("assignee frame_id id job_id owner resolved task_id"),
        "search": _f("assignee owner"),
        "sort": _f("assignee frame_id id job_id owner resolved task_id"),
        "simple": _f("assignee frame_id job_id owner resolved task_id"),
    },
    "/api/jobs": {
        "filter": _f(
            "assignee dimension id media_type mode parent_job_id project_id project_name stage "
            "state task_id task_name type updated_date"
        ),
        "search": _f("assignee project_name task_name"),
        "sort": _f(
            "assignee dimension id media_type mode parent_job_id project_id project_name stage "
            "state task_id task_name type updated_date"
        ),
        "simple": _f(
            "assignee dimension media_type mode parent_job_id project_id project_name stage "
            "state task_id task_name type"
        ),
    },
    "/api/labels": {
        "filter": _f("color id name parent parent_id type"),
        "search": _f("name parent"),
        "sort": _f("color id name parent parent_id type"),
        # job_id, project_id and task_id are parameters of their own (the label's parent)
        "simple": _f("color name parent parent_id type"),
    },
    "/api/memberships": {
        "filter": _f("id role user"),
        "search": _f("user"),
        "sort": _f("id role user"),
        "simple": _f("role user"),
    },
    "/api/organizations": {
        "filter": _f("id name owner slug"),
        "search": _f("name owner slug"),
        "sort": _f("id name owner slug"),
        "simple": _f("name owner slug"),
    },
    "/api/projects": {
        "filter": _f("assignee id name owner status updated_date"),
        "search": _f("assignee name owner"),
        "sort": _f("assignee id name owner status updated_date"),
        "simple": _f("assignee name owner status"),
    },
    "/api/quality/settings": {
        "filter": _f("created_date id inherit project_id task_id updated_date"),
        "search": _f(""),
        "sort": _f("created_date id inherit project_id task_id updated_date"),
        # project_id and parent_type are parameters of their own
        "simple": _f("inherit task_id"),
    },
    "/api/requests": {
        "filter": _f(
            "action format job_id org org_id project_id status subresource target task_id"
        ),
        "search": _f(""),
        "sort": _f("action created_date status"),
        # org and org_id select the organization context (the same rows)
        "simple": _f("action format job_id project_id status subresource target task_id"),
    },
    "/api/tasks": {
        "filter": _f(
            "assignee dimension id media_type mode name owner project_id project_name status "
            "subset tracker_link updated_date validation_mode"
        ),
        "search": _f("assignee name owner project_name subset tracker_link"),
        "sort": _f(
            "assignee dimension id media_type mode name owner project_id project_name status "
            "subset tracker_link updated_date validation_mode"
        ),
        "simple": _f(
            "assignee dimension media_type mode name owner project_id project_name status "
            "subset tracker_link validation_mode"
        ),
    },
    "/api/users": {
        "filter": _f("first_name id is_active last_name username"),
        "search": _f("first_name last_name username"),
        "sort": _f("first_name id is_active last_name username"),
        "simple": _f("first_name is_active last_name username"),
    },
    # (the schema's sort list is cut after "type..."; CVAT's ordering_fields end with
    # updated_date, and its filter_fields are the same names)
    "/api/webhooks": {
        "filter": _f("description id owner project_id target_url type updated_date"),
        "search": _f("description owner target_url"),
        "sort": _f("description id owner project_id target_url type updated_date"),
        "simple": _f("owner project_id target_url type"),
    },
    "/api/webhooks/{webhook_id}/deliveries": {
        "filter": _f(""),
        "search": _f(""),
        "sort": _f(""),
        "simple": _f(""),
    },
}

# Fields we accept beyond CVAT's, each with its reason.
EXTRAS: dict[str, dict[str, frozenset[str]]] = {
    # auto-annotation requests carry their function (CVAT keeps them apart, in /api/lambda)
    "/api/requests": {"filter": _f("function_id"), "simple": _f("function_id")},
    # which deliveries: pending, delivered or dead (CVAT has no such state)
    "/api/webhooks/{webhook_id}/deliveries": {"filter": _f("status"), "simple": _f("status")},
}

# Our table for each list endpoint.
TABLES: dict[str, ListSpec] = {
    "/api/auth/access_tokens": accounts.ACCESS_TOKEN_LIST,
    "/api/cloudstorages": cloud_storages.CLOUD_LIST,
    "/api/comments": issues.COMMENT_LIST,
    "/api/invitations": memberships.INVITATION_LIST,
    "/api/issues": issues.ISSUE_LIST,
    "/api/jobs": jobs.JOB_LIST,
    "/api/labels": label_api.LABEL_LIST,
    "/api/memberships": memberships.MEMBERSHIP_LIST,
    "/api/organizations": organizations.ORGANIZATION_LIST,
    "/api/projects": projects.PROJECT_LIST,
    "/api/quality/settings": quality.QUALITY_SETTINGS_LIST,
    "/api/requests": requests.REQUEST_LIST,
    "/api/tasks": tasks.TASK_LIST,
    "/api/users": users.USER_LIST,
    "/api/webhooks": webhooks.WEBHOOK_LIST,
    "/api/webhooks/{webhook_id}/deliveries": webhooks.DELIVERY_LIST,
}


def _ours(spec: ListSpec) -> dict[str, frozenset[str]]:
    return {
        "filter": frozenset(spec.fields),
        "search": frozenset(spec.search_fields),
        "sort": frozenset(spec.sort_fields),
        "simple": frozenset(spec.simple_filters),
    }


@pytest.mark.parametrize("path", sorted(CVAT))
def test_table_matches_cvat(path: str) -> None:
    ours = _ours(TABLES[path])
    extras = EXTRAS.get(path, {})
    for kind, cvat in CVAT[path].items():
        expected = cvat | extras.get(kind, frozenset())
        assert ours[kind] == expected, (
            f"{path} {kind}: missing {sorted(expected - ours[kind])}, "
            f"not in CVAT {sorted(ours[kind] - expected)}"
        )
    spec = TABLES[path]
    assert set(spec.search_fields) <= set(spec.fields)
    assert set(spec.simple_filters) <= set(spec.fields)


def test_every_list_route_has_a_table(app) -> None:
    """A new list endpoint (one that takes ``Listing``) must be added to the tables here."""
    listed = set()
    for route in app.routes:
        contexts = (
            list(route.effective_route_contexts())
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for item in contexts:
            dependant = getattr(item, "dependant", None)
            if dependant is None or "GET" not in getattr(item, "methods", ()):
                continue
            if any(d.call is list_params for d in dependant.dependencies):
                listed.add(item.path)
    assert len(listed) > 10
    assert listed == set(TABLES), (sorted(listed - set(TABLES)), sorted(set(TABLES) - listed))


def _sample(spec: ListSpec, name: str) -> str:
    """A value of the simple filter's type."""
    python_type = spec.fields[name].type.python_type
    if python_type is bool:
        return "false"
    if python_type is int:
        return "1"
    return "x"


async def test_every_field_is_answered(client_for, admin: Account) -> None:
    """Each field of each table compiles on this database: filtered on, searched, sorted both
    ways, and as a simple filter; none is refused and none fails in SQL."""
    api: httpx.AsyncClient = client_for(admin)
    failures: list[str] = []

    async def expect_ok(url: str, *also: int) -> None:
        r = await api.get(url)
        # a nested list (a webhook's deliveries) of a parent that does not exist is a 404
        nested = (404,) if "{" in url.split("?")[0] else ()
        if r.status_code not in (200, *also, *nested):
            failures.append(f"{url} -> {r.status_code} {r.text[:200]}")

    for path, spec in TABLES.items():
        for name in spec.fields:
            present = json.dumps({"and": [{"!!": [{"var": name}]}]})
            await expect_ok(f"{path}?filter={present}")
            contains = json.dumps({"in": ["1", {"var": name}]})
            await expect_ok(f"{path}?filter={contains}")
        for name in spec.sort_fields:
            await expect_ok(f"{path}?sort={name}")
            await expect_ok(f"{path}?sort=-{name}")
        if spec.search_fields:
            await expect_ok(f"{path}?search=x")
        for name in spec.simple_filters:
            # quality settings' task_id names the parent: a missing task is a 404
            parent = path == "/api/quality/settings" and name == "task_id"
            await expect_ok(f"{path}?{name}={_sample(spec, name)}", *((404,) if parent else ()))
    assert not failures, failures


async def _invitation(api: httpx.AsyncClient, invitee: Account) -> dict[str, Any]:
    await api.post("/api/organizations", json={"slug": "ui-org"})
    r = await api.post(
        "/api/invitations?org=ui-org", json={"role": "worker", "email": "bob@example.com"}
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_invitations_filter_the_ui_sends(client_for, alice: Account, bob: Account) -> None:
    """The UI asks for the caller's pending invitations on every page load."""
    invitation = await _invitation(client_for(alice), bob)
    api = client_for(bob)

    def pending_for(user_id: int, accepted: bool = False) -> str:
        expr = {
            "and": [
                {"==": [{"var": "user_id"}, str(user_id)]},
                {"==": [{"var": "accepted"}, accepted]},
            ]
        }
        return "/api/invitations?page=1&page_size=10&filter=" + json.dumps(expr)

    r = await api.get(pending_for(bob.id))
    assert r.status_code == 200, r.text
    assert [i["key"] for i in r.json()["results"]] == [invitation["key"]]
    assert (await api.get(pending_for(bob.id, accepted=True))).json()["count"] == 0
    mine = client_for(alice)
    assert (await mine.get(pending_for(alice.id))).json()["count"] == 0
    r = await mine.get("/api/invitations?owner=alice&sort=-owner")
    assert [i["key"] for i in r.json()["results"]] == [invitation["key"]]
    r = await mine.get("/api/invitations?search=ALI")
    assert r.json()["count"] == 1
    key_filter = json.dumps({"==": [{"var": "id"}, invitation["key"]]})
    assert (await mine.get(f"/api/invitations?filter={key_filter}")).json()["count"] == 1
    r = await mine.get("/api/invitations?filter=" + json.dumps({"==": [{"var": "role"}, "x"]}))
    assert r.status_code == 400 and "Allowed: accepted, id, owner, user_id" in r.text


async def test_requests_action_and_subresource(client_for, alice: Account) -> None:
    """CVAT's ``action`` is the part of the operation before the colon (``create`` of
    ``create:task``)."""
    from tests.factories import images, upload, wait

    api = client_for(alice)
    task = (await api.post("/api/tasks", json={"name": "t", "labels": [{"name": "a"}]})).json()
    r = await upload(api, task["id"], images(1))
    await wait(api, r.json()["rq_id"])

    def ids(r: httpx.Response) -> list[str]:
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["results"]]

    created = ids(await api.get("/api/requests?action=create"))
    assert created == [r.json()["rq_id"]]
    action = json.dumps({"==": [{"var": "action"}, "create"]})
    assert ids(await api.get(f"/api/requests?filter={action}")) == created
    assert ids(await api.get("/api/requests?action=export")) == []
    subresource = json.dumps({"!!": [{"var": "subresource"}]})
    assert ids(await api.get(f"/api/requests?filter={subresource}")) == []
    assert ids(await api.get("/api/requests?sort=-action")) == created
