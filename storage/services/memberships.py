"""Memberships (list, retrieve, change role, remove or leave) and invitations (create by e-mail
or username, list, retrieve, accept, decline, resend, delete; they expire). An e-mail nobody
has registered is invited all the same (to a placeholder account its owner takes over by
registering), so an invitation does not tell whether an address is known."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from cvat_ray.cluster.errors import Conflict, InvalidInput, NotFound
from cvat_ray.cluster.settings import get_settings
from cvat_ray.iam.authz import Resource, authorize, list_filter, person
from cvat_ray.storage.changes import Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Invitation, Membership, Organization, User, utcnow
from cvat_ray.storage.query import (
    ListParams,
    ListSpec,
    apply_list_params,
    compile_policy,
    paginate,
    related,
)
from cvat_ray.storage.schemas.common import Page
from cvat_ray.storage.schemas.organizations import (
    AcceptedInvitation,
    InvitationRead,
    InvitationWrite,
    MembershipPatch,
    MembershipRead,
)
from cvat_ray.storage.services import recorded
from cvat_ray.storage.services.users import basic_users, invited_account

_Member = aliased(User, name="member_user")

MEMBERSHIP_LIST = ListSpec(
    policy_paths={"user_id": Membership.user_id, "organization_id": Membership.organization_id},
    fields={
        "id": Membership.id,
        "user": _Member.username,
        "role": Membership.role,
    },
    search_fields=("user",),
    sort_fields={"id": Membership.id, "user": _Member.username, "role": Membership.role},
    default_sort=(Membership.id.asc(),),
    simple_filters=("user", "role"),
)

INVITATION_LIST = ListSpec(
    policy_paths={
        "owner_id": Invitation.owner_id,
        "invitee_id": Membership.user_id,
        "organization_id": Membership.organization_id,
    },
    fields={
        # an invitation's primary key is its key (CVAT's too)
        "id": Invitation.key,
        "owner": related(User.username, Invitation.owner_id),
        "user_id": Membership.user_id,
        "accepted": Membership.is_active,
    },
    search_fields=("owner",),
    sort_fields={
        "accepted": Membership.is_active,
        "created_date": Invitation.created_date,
        "owner": related(User.username, Invitation.owner_id),
        "user_id": Membership.user_id,
    },
    default_sort=(Invitation.created_date.desc(),),
    simple_filters=("accepted", "owner", "user_id"),
)


def _ttl() -> timedelta:
    return timedelta(days=get_settings().iam.invitation_ttl_days)


# --------------------------------------------------------------------------- memberships


def membership_resource(m: Membership) -> Resource:
    return Resource(
        kind="membership",
        id=m.id,
        organization_id=m.organization_id,
        facts={"user": person(m.user_id), "role": m.role},
    )


def _membership_reads(
    session: Session, ctx: RequestContext, rows: Sequence[Membership]
) -> list[MembershipRead]:
    users = basic_users(session, ctx, [m.user_id for m in rows])
    keys = dict(
        session.execute(
            select(Invitation.membership_id, Invitation.key).where(
                Invitation.membership_id.in_([m.id for m in rows])
            )
        ).all()
    )
    return [
        MembershipRead(
            id=m.id,
            user=users[m.user_id],
            organization=m.organization_id,
            is_active=m.is_active,
            joined_date=m.joined_date,
            role=m.role,
            invitation=keys.get(m.id),
        )
        for m in rows
        if m.user_id is not None
    ]


def _get_membership(session: Session, membership_id: int) -> Membership:
    m = session.get(Membership, membership_id)
    if m is None:
        raise NotFound("Membership not found.")
    return m


def list_memberships(
    session: Session, ctx: RequestContext, params: ListParams
) -> Page[MembershipRead]:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "membership"), MEMBERSHIP_LIST.policy_paths
    )
    stmt = (
        select(Membership)
        .join(_Member, _Member.id == Membership.user_id)
        .where(policy, Membership.is_active.is_(True))
    )
    stmt = apply_list_params(stmt, MEMBERSHIP_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_membership_reads(session, ctx, [r[0] for r in rows]))


def retrieve_membership(
    session: Session, ctx: RequestContext, membership_id: int
) -> MembershipRead:
    m = _get_membership(session, membership_id)
    authorize(ctx.principal, ctx.org, "view", membership_resource(m))
    return _membership_reads(session, ctx, [m])[0]


def partial_update_membership(
    session: Session, ctx: RequestContext, membership_id: int, patch: MembershipPatch
) -> MembershipRead:
    m = _get_membership(session, membership_id)
    authorize(ctx.principal, ctx.org, "change:role", membership_resource(m))
    if m.user_id == ctx.principal.user_id:
        raise InvalidInput("You cannot change your own role.", field="role")
    before = _membership_reads(session, ctx, [m])[0]
    m.role = patch.role
    session.flush()
    read = _membership_reads(session, ctx, [m])[0]
    recorded.record(
        session, ctx, "update", "membership", after=read, before=before, scope=_scope(m)
    )
    return read


def _scope(m: Membership) -> Scope:
    return Scope(org_id=m.organization_id)


def delete_membership(session: Session, ctx: RequestContext, membership_id: int) -> None:
    """Remove a member, or leave the organization (your own membership; owners cannot)."""
    m = _get_membership(session, membership_id)
    authorize(ctx.principal, ctx.org, "delete", membership_resource(m))
    if m.role == "owner":
        raise InvalidInput("The owner cannot leave or be removed from the organization.")
    reads = _membership_reads(session, ctx, [m])
    if reads and m.is_active:
        recorded.record(session, ctx, "delete", "membership", before=reads[0], scope=_scope(m))
    session.delete(m)


# --------------------------------------------------------------------------- invitations


def invitation_resource(inv: Invitation, m: Membership) -> Resource:
    return Resource(
        kind="invitation",
        id=m.id,
        owner_id=inv.owner_id,
        organization_id=m.organization_id,
        facts={"invitee": person(m.user_id), "role": m.role},
    )


def _invitation_reads(
    session: Session, ctx: RequestContext, rows: Sequence[tuple[Invitation, Membership]]
) -> list[InvitationRead]:
    users = basic_users(session, ctx, [u for inv, m in rows for u in (inv.owner_id, m.user_id)])
    orgs = {
        o.id: o
        for o in session.scalars(
            select(Organization).where(Organization.id.in_({m.organization_id for _, m in rows}))
        )
    }
    now = utcnow()
    return [
        InvitationRead(
            key=inv.key,
            role=m.role,
            user=users[m.user_id],
            organization=m.organization_id,
            organization_info={
                "id": m.organization_id,
                "slug": orgs[m.organization_id].slug,
                "name": orgs[m.organization_id].name,
            },
            owner=users.get(inv.owner_id) if inv.owner_id else None,
            created_date=inv.created_date,
            sent_date=inv.sent_date,
            expired=(inv.sent_date or inv.created_date) + _ttl() < now,
        )
        for inv, m in rows
        if m.user_id is not None
    ]


def _get_invitation(session: Session, key: str) -> tuple[Invitation, Membership]:
    row = session.execute(
        select(Invitation, Membership)
        .join(Membership, Membership.id == Invitation.membership_id)
        .where(Invitation.key == key)
    ).first()
    if row is None:
        raise NotFound("Invitation not found.")
    return row[0], row[1]


def create_invitation(
    session: Session, ctx: RequestContext, data: InvitationWrite
) -> InvitationRead:
    org_id = ctx.org.org_id
    resource = Resource(kind="invitation", organization_id=org_id, facts={"role": data.role})
    authorize(ctx.principal, ctx.org, "create", resource)
    if org_id is None:
        raise InvalidInput("Invite inside an organization (org, org_id or X-Organization).")
    if not data.email and not data.username:
        raise InvalidInput("Give the e-mail or the username of the user to invite.", field="email")
    user: User | None
    if data.email:
        # Known or not, an e-mail gets an invitation: the answer must not tell whether
        # somebody has registered with it (an unknown one gets a placeholder account).
        user = invited_account(session, data.email)
    else:
        user = session.scalar(select(User).where(User.username == data.username))
        if user is None:
            raise InvalidInput("No user has this username.", field="username")
    existing = session.scalar(
        select(Membership).where(
            Membership.user_id == user.id, Membership.organization_id == org_id
        )
    )
    if existing is not None:
        if existing.is_active:
            raise Conflict("The user is already a member of the organization.")
        session.delete(existing)  # an older invitation is replaced
        session.flush()
    now = utcnow()
    m = Membership(user_id=user.id, organization_id=org_id, role=data.role, is_active=False)
    session.add(m)
    session.flush()
    inv = Invitation(
        key=secrets.token_urlsafe(32),
        membership_id=m.id,
        owner_id=ctx.principal.user_id,
        created_date=now,
        sent_date=now,
    )
    session.add(inv)
    session.flush()
    read = _invitation_reads(session, ctx, [(inv, m)])[0]
    recorded.record(session, ctx, "create", "invitation", after=read, scope=_scope(m))
    return read


def list_invitations(
    session: Session, ctx: RequestContext, params: ListParams
) -> Page[InvitationRead]:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "invitation"), INVITATION_LIST.policy_paths
    )
    stmt = (
        select(Invitation, Membership)
        .join(Membership, Membership.id == Invitation.membership_id)
        .join(_Member, _Member.id == Membership.user_id)
        .where(policy, Membership.is_active.is_(False))
    )
    stmt = apply_list_params(stmt, INVITATION_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_invitation_reads(session, ctx, [(r[0], r[1]) for r in rows]))


def retrieve_invitation(session: Session, ctx: RequestContext, key: str) -> InvitationRead:
    inv, m = _get_invitation(session, key)
    authorize(ctx.principal, ctx.org, "view", invitation_resource(inv, m))
    return _invitation_reads(session, ctx, [(inv, m)])[0]


def _pending(
    session: Session, ctx: RequestContext, key: str, scope: str
) -> tuple[Invitation, Membership]:
    inv, m = _get_invitation(session, key)
    authorize(ctx.principal, ctx.org, scope, invitation_resource(inv, m))
    if m.is_active:
        raise Conflict("The invitation was already accepted.")
    return inv, m


def accept_invitation(session: Session, ctx: RequestContext, key: str) -> AcceptedInvitation:
    inv, m = _pending(session, ctx, key, "accept")
    if (inv.sent_date or inv.created_date) + _ttl() < utcnow():
        raise InvalidInput("The invitation has expired; ask for a new one.")
    m.is_active = True
    m.joined_date = utcnow()
    org = session.get(Organization, m.organization_id)
    assert org is not None
    session.flush()
    # the member joins: CVAT's membership is saved active
    recorded.record(
        session,
        ctx,
        "create",
        "membership",
        after=_membership_reads(session, ctx, [m])[0],
        scope=_scope(m),
    )
    return AcceptedInvitation(organization_slug=org.slug)


def decline_invitation(session: Session, ctx: RequestContext, key: str) -> None:
    inv, m = _pending(session, ctx, key, "accept")
    _record_deleted_invitation(session, ctx, inv, m)
    session.delete(m)


def _record_deleted_invitation(
    session: Session, ctx: RequestContext, inv: Invitation, m: Membership
) -> None:
    read = _invitation_reads(session, ctx, [(inv, m)])[0]
    recorded.record(session, ctx, "delete", "invitation", before=read, scope=_scope(m))


def resend_invitation(session: Session, ctx: RequestContext, key: str) -> None:
    """Renews the invitation's expiry (no mail server is configured: the invitee sees it in
    their invitation list)."""
    inv, _ = _pending(session, ctx, key, "resend")
    inv.sent_date = utcnow()


def delete_invitation(session: Session, ctx: RequestContext, key: str) -> None:
    inv, m = _pending(session, ctx, key, "delete")
    _record_deleted_invitation(session, ctx, inv, m)
    session.delete(m)
