"""Authorization: every service decision goes through :func:`authorize`, and every list
through :func:`list_filter`.

This is the core platform's small rule set (admin, owner, assignee, organization role).
The permission engine issue replaces the rules behind these two functions with Rego
policies; their signatures are the contract the services rely on.
"""

from __future__ import annotations

from dataclasses import dataclass

from cluster.errors import PermissionDenied
from iam.filters import EVERYTHING, NOTHING, Eq, Filter, all_of, any_of
from iam.principal import OrgContext, Principal, privilege_rank, role_rank


@dataclass(frozen=True)
class Resource:
    """What a decision is about, with the relations the rules look at."""

    kind: str
    id: int | None = None
    owner_id: int | None = None
    assignee_id: int | None = None
    organization_id: int | None = None
    project_owner_id: int | None = None
    project_assignee_id: int | None = None
    task_owner_id: int | None = None
    task_assignee_id: int | None = None
    # for tasks: the caller, when assigned to one of the task's jobs
    job_assignee_ids: frozenset[int] = frozenset()
    # organizations the user is a member of (for users)
    member_of: frozenset[int] = frozenset()


# Scopes that only read.
_READ_PREFIXES = ("view", "export", "list")
# Scopes that change ownership/structure: a plain assignee may not do them.
_OWNER_SCOPES = frozenset(
    {
        "delete",
        "update:owner",
        "update:assignee",
        "update:project",
        "update:associated_storage",
        "update:stage",
        "update:organization",
    }
)
_CREATE_SCOPES = frozenset({"create", "import:backup"})


def _relations(user_id: int, r: Resource) -> set[str]:
    rel: set[str] = set()
    pairs = (
        ("owner", r.owner_id),
        ("assignee", r.assignee_id),
        ("project:owner", r.project_owner_id),
        ("project:assignee", r.project_assignee_id),
        ("task:owner", r.task_owner_id),
        ("task:assignee", r.task_assignee_id),
    )
    for name, uid in pairs:
        if uid is not None and uid == user_id:
            rel.add(name)
    if user_id in r.job_assignee_ids:
        rel.add("job:assignee")
    return rel


def _effective_org(org: OrgContext, resource: Resource | None) -> int | None:
    if org.specified or resource is None:
        return org.org_id
    return resource.organization_id


def authorize(
    principal: Principal, org: OrgContext, scope: str, resource: Resource | None = None
) -> None:
    """Allow or raise :class:`PermissionDenied` with the reason."""
    if principal.is_admin:
        return
    kind = resource.kind if resource else "server"
    # Servers, users, requests and tokens are not related to organizations.
    if kind == "server":
        return
    if kind == "user":
        _authorize_user(principal, scope, resource)
        return
    if kind in ("request", "access_token"):
        if resource is not None and resource.owner_id == principal.user_id:
            return
        raise PermissionDenied("Only the owner may access it.")

    if org.specified and resource is not None and resource.id is not None:
        if resource.organization_id != org.org_id:
            raise PermissionDenied("The resource belongs to another organization.")
    org_id = _effective_org(org, resource)
    role: str | None = None
    if org_id is not None:
        role = principal.memberships.get(org_id)
        if role is None:
            raise PermissionDenied("You are not a member of this organization.")

    rank = privilege_rank(principal.privilege)
    if kind == "cloudstorage":
        _authorize_cloudstorage(principal, scope, resource, role, rank)
        return
    if scope == "list":
        return
    if scope in _CREATE_SCOPES or scope == "create@project":
        if rank < privilege_rank("user"):
            raise PermissionDenied("Your system group may not create resources.")
        rel = _relations(principal.user_id, resource) if resource else set()
        works_on_project = bool(rel & {"project:owner", "project:assignee"})
        if role is not None and role_rank(role) < role_rank("supervisor") and not works_on_project:
            raise PermissionDenied("Your organization role may not create resources.")
        if scope == "create@project" and role is None and not works_on_project:
            raise PermissionDenied("Only the project's owner or assignee may add tasks to it.")
        return

    assert resource is not None, f"scope {scope} needs a resource"
    if role is not None and role_rank(role) >= role_rank("maintainer"):
        if scope.startswith(_READ_PREFIXES) or rank >= privilege_rank("user"):
            return
    rel = _relations(principal.user_id, resource)
    if not rel:
        raise PermissionDenied()
    if scope.startswith(_READ_PREFIXES):
        return
    if rank < privilege_rank("worker"):
        raise PermissionDenied("Your system group may not change resources.")
    # A plain assignee (of this object, or of one of a task's jobs) may work on it but not
    # delete it or change who owns or works on it.
    if scope in _OWNER_SCOPES and not rel - {"assignee", "job:assignee"}:
        raise PermissionDenied("Only the owner may do this.")


def _authorize_cloudstorage(
    principal: Principal, scope: str, resource: Resource | None, role: str | None, rank: int
) -> None:
    """CVAT's cloud storage table: users create their own (maintainers in an organization);
    the owner sees and manages one; organization supervisors see all, maintainers manage all."""
    if scope == "list":
        return
    if scope == "create":
        if rank < privilege_rank("user"):
            raise PermissionDenied("Your system group may not create cloud storages.")
        if role is not None and role_rank(role) < role_rank("maintainer"):
            raise PermissionDenied("Only organization maintainers may add cloud storages.")
        return
    is_owner = resource is not None and resource.owner_id == principal.user_id
    if scope in ("view", "list:content"):
        if is_owner:
            return
        if role is not None and role_rank(role) >= role_rank("supervisor"):
            return
        raise PermissionDenied()
    # update, delete
    if is_owner and rank >= privilege_rank("worker"):
        return
    if role is not None and role_rank(role) >= role_rank("maintainer"):
        if rank >= privilege_rank("user"):
            return
    raise PermissionDenied()


def _authorize_user(principal: Principal, scope: str, resource: Resource | None) -> None:
    is_self = resource is not None and resource.id == principal.user_id
    if scope == "list" or (is_self and scope in ("view", "update:personal_data", "delete")):
        return
    # Members of an organization see each other.
    if scope == "view" and resource is not None and resource.member_of & set(principal.memberships):
        return
    raise PermissionDenied()


# Ownership paths per listed kind, used by list filters.
_OWNERSHIP_FIELDS: dict[str, tuple[str, ...]] = {
    "project": ("owner_id", "assignee_id"),
    "task": (
        "owner_id",
        "assignee_id",
        "project.owner_id",
        "project.assignee_id",
        "jobs.assignee_id",
    ),
    "job": (
        "assignee_id",
        "task.owner_id",
        "task.assignee_id",
        "project.owner_id",
        "project.assignee_id",
    ),
    "cloudstorage": ("owner_id",),
}


def list_filter(principal: Principal, org: OrgContext, kind: str) -> Filter:
    """The rows of ``kind`` the principal may see in this org context, as a filter."""
    if kind == "user":
        return _user_list_filter(principal, org)
    if kind in ("request", "access_token"):
        return Eq("owner_id", principal.user_id)
    scope_filter: Filter = EVERYTHING
    if org.specified:
        scope_filter = Eq("organization_id", org.org_id)
    if principal.is_admin:
        return scope_filter
    if org.specified and org.org_id is not None:
        role = principal.memberships.get(org.org_id)
        if role is None:
            raise PermissionDenied("You are not a member of this organization.")
        sees_all = "supervisor" if kind == "cloudstorage" else "maintainer"
        if role_rank(role) >= role_rank(sees_all):
            return scope_filter
    mine = any_of(*(Eq(path, principal.user_id) for path in _OWNERSHIP_FIELDS[kind]))
    return all_of(scope_filter, mine)


def _user_list_filter(principal: Principal, org: OrgContext) -> Filter:
    if org.specified and org.org_id is not None:
        if not principal.is_admin and org.org_id not in principal.memberships:
            raise PermissionDenied("You are not a member of this organization.")
        return Eq("memberships.organization_id", org.org_id)
    if principal.is_admin:
        return EVERYTHING
    if not principal.memberships:
        return Eq("id", principal.user_id)
    return any_of(
        Eq("id", principal.user_id),
        *(Eq("memberships.organization_id", oid) for oid in principal.memberships),
    )


__all__ = ["NOTHING", "Resource", "authorize", "list_filter"]
