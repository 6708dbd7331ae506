"""Organizations: create (the creator becomes its owner), list, retrieve, update, delete."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, aliased

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.storage.changes import Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Data, Membership, Organization, Task, User, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, compile_policy, paginate
from cvat_ray.storage.schemas.common import Page
from cvat_ray.storage.schemas.organizations import (
    OrganizationPatch,
    OrganizationRead,
    OrganizationWrite,
)
from cvat_ray.storage.services import recorded
from cvat_ray.storage.services.resources import fetch
from cvat_ray.storage.services.users import basic_users

_Owner = aliased(User, name="organization_owner")


def _has_member(user_id: object) -> object:
    return exists().where(
        Membership.organization_id == Organization.id,
        Membership.user_id == user_id,
        Membership.is_active.is_(True),
    )


ORGANIZATION_LIST = ListSpec(
    policy_paths={
        "owner_id": Organization.owner_id,
        "memberships.user_id": _has_member,  # type: ignore[dict-item]
    },
    fields={
        "id": Organization.id,
        "slug": Organization.slug,
        "name": Organization.name,
        "owner": _Owner.username,
    },
    search_fields=("slug", "name", "owner"),
    sort_fields={
        "id": Organization.id,
        "slug": Organization.slug,
        "name": Organization.name,
        "owner": _Owner.username,
    },
    default_sort=(Organization.id.asc(),),
    simple_filters=("slug", "name", "owner"),
)


def organization_resource(org: Organization) -> Resource:
    return Resource(kind="organization", id=org.id, owner_id=org.owner_id)


def get_organization(session: Session, org_id: int, *, for_update: bool = False) -> Organization:
    return fetch(session, Organization, org_id, for_update=for_update)


def to_reads(
    session: Session, ctx: RequestContext, orgs: Sequence[Organization]
) -> list[OrganizationRead]:
    users = basic_users(session, ctx, [o.owner_id for o in orgs])
    return [
        OrganizationRead(
            id=o.id,
            slug=o.slug,
            name=o.name,
            description=o.description,
            created_date=o.created_date,
            updated_date=o.updated_date,
            contact=o.contact or {},
            owner=users.get(o.owner_id) if o.owner_id else None,
        )
        for o in orgs
    ]


def _check_slug_free(session: Session, slug: str, org_id: int | None = None) -> None:
    stmt = select(Organization.id).where(Organization.slug == slug)
    if org_id is not None:
        stmt = stmt.where(Organization.id != org_id)
    if session.scalar(stmt) is not None:
        raise InvalidInput("An organization with this slug already exists.", field="slug")


def create_organization(
    session: Session, ctx: RequestContext, data: OrganizationWrite
) -> OrganizationRead:
    authorize(ctx.principal, ctx.org, "create", Resource(kind="organization"))
    _check_slug_free(session, data.slug)
    now = utcnow()
    org = Organization(
        slug=data.slug,
        name=data.name,
        description=data.description,
        contact=dict(data.contact),
        owner_id=ctx.principal.user_id,
        created_date=now,
        updated_date=now,
    )
    session.add(org)
    session.flush()
    session.add(
        Membership(
            user_id=ctx.principal.user_id,
            organization_id=org.id,
            role="owner",
            is_active=True,
            joined_date=now,
        )
    )
    session.flush()
    read = to_reads(session, ctx, [org])[0]
    recorded.record(session, ctx, "create", "organization", after=read, scope=Scope(org_id=org.id))
    return read


def list_organizations(
    session: Session, ctx: RequestContext, params: ListParams
) -> Page[OrganizationRead]:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "organization"), ORGANIZATION_LIST.policy_paths
    )
    stmt = select(Organization).outerjoin(_Owner, _Owner.id == Organization.owner_id).where(policy)
    stmt = apply_list_params(stmt, ORGANIZATION_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=to_reads(session, ctx, [r[0] for r in rows]))


def retrieve_organization(session: Session, ctx: RequestContext, org_id: int) -> OrganizationRead:
    org = get_organization(session, org_id)
    authorize(ctx.principal, ctx.org, "view", organization_resource(org))
    return to_reads(session, ctx, [org])[0]


def partial_update_organization(
    session: Session, ctx: RequestContext, org_id: int, patch: OrganizationPatch
) -> OrganizationRead:
    org = get_organization(session, org_id, for_update=True)
    authorize(ctx.principal, ctx.org, "update", organization_resource(org))
    before = to_reads(session, ctx, [org])[0]
    if patch.slug is not None and patch.slug != org.slug:
        _check_slug_free(session, patch.slug, org.id)
        org.slug = patch.slug
    if patch.name is not None:
        org.name = patch.name
    if patch.description is not None:
        org.description = patch.description
    if patch.contact is not None:
        org.contact = dict(patch.contact)
    org.updated_date = utcnow()
    session.flush()
    read = to_reads(session, ctx, [org])[0]
    recorded.record(
        session,
        ctx,
        "update",
        "organization",
        after=read,
        before=before,
        scope=Scope(org_id=org.id),
    )
    return read


def delete_organization(session: Session, ctx: RequestContext, org_id: int) -> None:
    """Deletes the organization with its memberships, invitations, projects and tasks."""
    org = get_organization(session, org_id, for_update=True)
    authorize(ctx.principal, ctx.org, "delete", organization_resource(org))
    recorded.record(
        session,
        ctx,
        "delete",
        "organization",
        before=to_reads(session, ctx, [org])[0],
        scope=Scope(org_id=org.id),
    )
    data_ids = [
        d for d in session.scalars(select(Task.data_id).where(Task.organization_id == org.id)) if d
    ]
    session.delete(org)
    session.flush()
    if data_ids:
        session.execute(delete(Data).where(Data.id.in_(data_ids)))
