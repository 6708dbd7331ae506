"""Authorization: every service decision goes through :func:`authorize`, and every list
through :func:`list_filter`. Both ask the Rego policies (:mod:`cvat_ray.iam.engine`) in-process.

Organization context follows CVAT: a decision about an existing object of an organization is
taken in that object's organization (the caller must be an active member of it, admins aside);
creating something or listing uses the organization named by the request (``org``, ``org_id``,
``X-Organization``), and no organization means the sandbox.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cvat_ray.cluster.errors import PermissionDenied
from cvat_ray.cluster.settings import get_settings
from cvat_ray.iam.engine import DEFAULT_RULES_DIR, PolicyEngine, load_engine
from cvat_ray.iam.filters import EVERYTHING, NOTHING, AllOf, AnyOf, Eq, Filter, all_of
from cvat_ray.iam.principal import OrgContext, Principal

# Resource kind -> policy package.
PACKAGES: dict[str, str] = {
    "project": "projects",
    "task": "tasks",
    "job": "jobs",
    "issue": "issues",
    "comment": "comments",
    "cloudstorage": "cloudstorages",
    "webhook": "webhooks",
    "annotationguide": "annotationguides",
    "user": "users",
    "membership": "memberships",
    "invitation": "invitations",
    "organization": "organizations",
    "server": "server",
    "lambda": "lambda",
    "events": "events",
    "analytics": "analytics",
    "request": "requests",
    "access_token": "access_tokens",
}
# Kinds whose objects live in an organization (or in the sandbox when it is None).
ORG_BOUND = frozenset(
    {
        "project",
        "task",
        "job",
        "issue",
        "comment",
        "cloudstorage",
        "webhook",
        "annotationguide",
        "membership",
        "invitation",
    }
)
_MEMBER_REQUIRED = "You should be an active member in the organization."


@dataclass(frozen=True)
class Resource:
    """What a decision is about, in the shape the policies read (CVAT's OPA input).

    ``facts`` holds the related objects, e.g. ``{"project": {"owner": {"id": 3}}}``,
    ``{"task": {...}}``, ``{"job": {"assignee": {"id": 5}}}``, ``{"role": "worker"}``.
    """

    kind: str
    id: int | None = None
    owner_id: int | None = None
    assignee_id: int | None = None
    organization_id: int | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    def as_input(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, **self.facts}
        if self.owner_id is not None:
            data["owner"] = {"id": self.owner_id}
        if self.assignee_id is not None:
            data["assignee"] = {"id": self.assignee_id}
        if self.kind in ORG_BOUND:
            data["organization"] = (
                {"id": self.organization_id} if self.organization_id is not None else None
            )
        return data


def person(user_id: int | None) -> dict[str, Any] | None:
    """``{"id": user_id}`` or None, for facts."""
    return {"id": user_id} if user_id is not None else None


def engine() -> PolicyEngine:
    return load_engine(get_settings().iam.rules_dir or DEFAULT_RULES_DIR)


# --------------------------------------------------------------------------- decisions count

_tracker = threading.local()


def start_tracking() -> None:
    """Count decisions on this thread from now on (the API checks each call made one)."""
    _tracker.count = 0


def decisions_made() -> int:
    count: int = getattr(_tracker, "count", 0)
    return count


def _record() -> None:
    if hasattr(_tracker, "count"):
        _tracker.count += 1


# --------------------------------------------------------------------------- inputs


def _auth(principal: Principal, org_id: int | None) -> dict[str, Any]:
    user = {
        "id": principal.user_id,
        "privilege": "admin" if principal.is_admin else principal.privilege,
        "has_analytics_access": principal.has_analytics_access,
    }
    organization = None
    if org_id is not None:
        organization = {"id": org_id, "user": {"role": principal.memberships.get(org_id)}}
    return {"user": user, "organization": organization}


def decision_input(
    principal: Principal, org: OrgContext, scope: str, resource: Resource | None
) -> dict[str, Any]:
    """The policy input of a decision, and the organization it is taken in."""
    kind = resource.kind if resource else "server"
    org_id = org.org_id
    if resource is not None and resource.id is not None:
        if kind in ORG_BOUND:
            org_id = resource.organization_id
        elif kind == "organization":
            org_id = resource.id
    elif resource is not None and kind in ORG_BOUND and resource.organization_id is not None:
        # Created inside a parent (a task in a project): it goes to the parent's organization.
        org_id = resource.organization_id
    # Organizations and invitations are decided for non-members too (an invitee joins).
    if org_id is not None and not principal.is_admin and org_id not in principal.memberships:
        if kind not in ("organization", "invitation"):
            raise PermissionDenied(_MEMBER_REQUIRED)
    data = resource.as_input() if resource else {}
    if resource is not None and resource.id is None and kind in ORG_BOUND:
        # Something being created lives in the request's organization.
        data["organization"] = {"id": org_id} if org_id is not None else None
    return {"scope": scope, "auth": _auth(principal, org_id), "resource": data}


def authorize(
    principal: Principal, org: OrgContext, scope: str, resource: Resource | None = None
) -> None:
    """Allow or raise :class:`PermissionDenied`."""
    _record()
    kind = resource.kind if resource else "server"
    data = decision_input(principal, org, scope, resource)
    if not engine().allow(PACKAGES[kind], data):
        raise PermissionDenied()


# --------------------------------------------------------------------------- lists


def parse_filter(node: Any) -> Filter:
    """The policies' filter expression as :mod:`cvat_ray.iam.filters` nodes."""
    if not isinstance(node, dict) or "op" not in node:
        raise ValueError(f"bad filter node {node!r}")
    op = node["op"]
    if op == "all":
        return EVERYTHING
    if op == "none":
        return NOTHING
    if op == "eq":
        return Eq(str(node["field"]), node.get("value"))
    items = tuple(parse_filter(i) for i in node.get("items", ()))
    if op == "or":
        return AnyOf(items) if items else NOTHING
    if op == "and":
        return AllOf(items) if items else EVERYTHING
    raise ValueError(f"bad filter operator {op!r}")


def list_filter(principal: Principal, org: OrgContext, kind: str) -> Filter:
    """The rows of ``kind`` the principal may list in the request's organization context."""
    _record()
    if org.org_id is not None and not principal.is_admin:
        if org.org_id not in principal.memberships:
            raise PermissionDenied(_MEMBER_REQUIRED)
    data = {
        "scope": "list",
        "auth": _auth(principal, org.org_id),
        "resource": {},
    }
    package = PACKAGES[kind]
    policy = engine()
    if not policy.allow(package, data):
        raise PermissionDenied()
    visible = parse_filter(policy.filter(package, data))
    # CVAT's organization filter backend: a named workspace restricts every list to it.
    if org.specified and kind in ORG_BOUND:
        visible = all_of(Eq("organization_id", org.org_id), visible)
    return visible


__all__ = ["NOTHING", "Resource", "authorize", "list_filter", "person"]
