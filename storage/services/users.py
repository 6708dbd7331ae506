"""Users and system groups."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import Conflict, InvalidInput, NotFound
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.iam.passwords import hash_password
from cvat_ray.iam.principal import PRIVILEGES
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Group, Membership, User, user_groups, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, compile_policy, paginate
from cvat_ray.storage.schemas.common import USERNAME_PATTERN, BasicUser, Page
from cvat_ray.storage.schemas.users import UserPatch, UserRead


def groups_of(session: Session, user_ids: Iterable[int]) -> dict[int, list[str]]:
    ids = list(set(user_ids))
    result: dict[int, list[str]] = {uid: [] for uid in ids}
    if not ids:
        return result
    rows = session.execute(
        select(user_groups.c.user_id, Group.name)
        .join(Group, Group.id == user_groups.c.group_id)
        .where(user_groups.c.user_id.in_(ids))
    )
    for uid, name in rows:
        result[uid].append(name)
    for names in result.values():
        names.sort(key=PRIVILEGES.index)
    return result


def set_groups(session: Session, user_id: int, names: Iterable[str]) -> None:
    wanted = set(names)
    unknown = wanted - set(PRIVILEGES)
    if unknown:
        raise InvalidInput(f"Unknown groups: {', '.join(sorted(unknown))}", field="groups")
    session.execute(delete(user_groups).where(user_groups.c.user_id == user_id))
    if wanted:
        group_ids = session.scalars(select(Group.id).where(Group.name.in_(wanted))).all()
        session.execute(
            insert(user_groups), [{"user_id": user_id, "group_id": gid} for gid in group_ids]
        )


def create_user(
    session: Session,
    *,
    username: str,
    password: str | None,
    email: str = "",
    first_name: str = "",
    last_name: str = "",
    groups: Iterable[str] = ("user",),
    is_superuser: bool = False,
    auth_source: str = "local",
) -> User:
    if session.scalar(select(exists().where(User.username == username))):
        raise Conflict(f"A user with username {username!r} already exists.")
    user = User(
        username=username,
        email=email,
        first_name=first_name,
        last_name=last_name,
        password_hash=hash_password(password) if password is not None else None,
        is_superuser=is_superuser,
        is_staff=is_superuser,
        auth_source=auth_source,
    )
    session.add(user)
    session.flush()
    set_groups(session, user.id, groups)
    return user


# Accounts made for an invitation to an e-mail nobody has registered yet; whoever registers
# (or logs in through LDAP) with that e-mail takes the account over. Until then it cannot log in.
INVITED = "invited"


def invited_account(session: Session, email: str) -> User:
    """The account an invitation to ``email`` goes to: the one registered with it, or a new
    placeholder (named after the e-mail when that is a valid username), as CVAT does."""
    user = session.scalar(select(User).where(User.email == email).order_by(User.id).limit(1))
    if user is not None:
        return user
    username = email
    taken = session.scalar(select(exists().where(User.username == username)))
    if taken or len(username) > 150 or not re.fullmatch(USERNAME_PATTERN, username):
        username = f"invited-{secrets.token_hex(6)}"
    user = create_user(
        session, username=username, password=None, email=email, groups=(), auth_source=INVITED
    )
    user.is_active = False
    session.flush()
    return user


def claim_invited(session: Session, email: str, username: str, auth_source: str) -> User | None:
    """The placeholder account invited under ``email``, renamed and handed to its owner, who
    has just registered (or logged in through LDAP) with that e-mail; None when there is none.
    The caller sets the password and groups."""
    user = session.scalar(
        select(User).where(User.email == email, User.auth_source == INVITED).limit(1)
    )
    if user is None:
        return None
    user.username = username
    user.auth_source = auth_source
    user.is_active = True
    user.date_joined = utcnow()
    return user


def basic_users(
    session: Session, ctx: RequestContext, ids: Iterable[int | None]
) -> dict[int, BasicUser]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(
        select(User.id, User.username, User.first_name, User.last_name).where(User.id.in_(wanted))
    )
    return {
        r.id: BasicUser(
            url=ctx.url(f"/api/users/{r.id}"),
            id=r.id,
            username=r.username,
            first_name=r.first_name,
            last_name=r.last_name,
        )
        for r in rows
    }


def require_user(session: Session, user_id: int, field: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise InvalidInput(f"User {user_id} does not exist.", field=field)
    return user


def _to_read(ctx: RequestContext, user: User, groups: list[str]) -> UserRead:
    return UserRead(
        url=ctx.url(f"/api/users/{user.id}"),
        id=user.id,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        email=user.email,
        groups=groups,
        is_staff=user.is_staff,
        is_superuser=user.is_superuser,
        is_active=user.is_active,
        last_login=user.last_login,
        date_joined=user.date_joined,
        has_analytics_access=user.is_superuser or "admin" in groups,
    )


def _in_org(org_id: object) -> object:
    # Active members only: an invitee who has not accepted is not a member yet.
    return User.id.in_(
        select(Membership.user_id).where(
            Membership.organization_id == org_id, Membership.is_active.is_(True)
        )
    )


USER_LIST = ListSpec(
    policy_paths={"id": User.id, "memberships.organization_id": _in_org},  # type: ignore[dict-item]
    fields={
        "id": User.id,
        "username": User.username,
        "first_name": User.first_name,
        "last_name": User.last_name,
        "is_active": User.is_active,
    },
    search_fields=("username", "first_name", "last_name"),
    sort_fields={
        "id": User.id,
        "username": User.username,
        "first_name": User.first_name,
        "last_name": User.last_name,
        "is_active": User.is_active,
    },
    default_sort=(User.id.asc(),),
    simple_filters=("username", "first_name", "last_name", "is_active"),
)


def _basic(ctx: RequestContext, user: User) -> BasicUser:
    return BasicUser(
        url=ctx.url(f"/api/users/{user.id}"),
        id=user.id,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
    )


def _present(
    session: Session, ctx: RequestContext, users: Sequence[User], *, full_for_self: bool
) -> list[UserRead | BasicUser]:
    """CVAT's rule: admins see whole user records; everybody else sees the basic shape
    (no e-mail, groups, flags or login times), except their own record when they read it."""
    me = ctx.principal
    full = [u.id for u in users if me.is_admin or (full_for_self and u.id == me.user_id)]
    groups = groups_of(session, full)
    return [_to_read(ctx, u, groups[u.id]) if u.id in groups else _basic(ctx, u) for u in users]


def list_users(
    session: Session, ctx: RequestContext, params: ListParams
) -> Page[UserRead | BasicUser]:
    policy = compile_policy(list_filter(ctx.principal, ctx.org, "user"), USER_LIST.policy_paths)
    stmt = apply_list_params(select(User).where(policy), USER_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    users = [r[0] for r in rows]
    return Page(count=count, results=_present(session, ctx, users, full_for_self=False))


def _get(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("User not found.")
    return user


def retrieve_user(session: Session, ctx: RequestContext, user_id: int) -> UserRead | BasicUser:
    user = _get(session, user_id)
    facts: dict[str, object] = {}
    if ctx.org.org_id is not None:
        # CVAT: inside an organization, its members see each other.
        role = session.scalar(
            select(Membership.role).where(
                Membership.user_id == user.id,
                Membership.organization_id == ctx.org.org_id,
                Membership.is_active.is_(True),
            )
        )
        facts["membership"] = {"role": role}
    authorize(ctx.principal, ctx.org, "view", Resource(kind="user", id=user.id, facts=facts))
    return _present(session, ctx, [user], full_for_self=True)[0]


def retrieve_self(session: Session, ctx: RequestContext) -> UserRead:
    user = _get(session, ctx.principal.user_id)
    authorize(ctx.principal, ctx.org, "view", Resource(kind="user", id=user.id))
    return _to_read(ctx, user, groups_of(session, [user.id])[user.id])


def _record(
    session: Session,
    ctx: RequestContext,
    action: str,
    *,
    after: UserRead | None = None,
    before: UserRead | None = None,
) -> None:
    from cvat_ray.storage.services import recorded  # (recorded imports nothing of ours)

    recorded.record(session, ctx, action, "user", after=after, before=before)


def record_new_user(session: Session, user: User, base_url: str) -> None:
    """``create:user`` for an account made by registering (the user is its own sender)."""
    from cvat_ray.storage.services import recorded

    session.flush()
    ctx = recorded.background_context(session, user.id, base_url)
    if ctx is not None:
        groups = groups_of(session, [user.id]).get(user.id, [])
        _record(session, ctx, "create", after=_to_read(ctx, user, groups))


def partial_update_user(
    session: Session, ctx: RequestContext, user_id: int, patch: UserPatch
) -> UserRead | BasicUser:
    user = _get(session, user_id)
    before = _to_read(ctx, user, groups_of(session, [user.id]).get(user.id, []))
    fields = patch.model_fields_set
    resource = Resource(kind="user", id=user.id)
    personal = fields & {"first_name", "last_name"}
    permissions = fields & {"is_active", "is_staff", "is_superuser", "groups"}
    # An empty patch changes nothing but is still a personal-data update.
    if personal or not fields:
        authorize(ctx.principal, ctx.org, "update:personal_data", resource)
    if "email" in fields:
        authorize(ctx.principal, ctx.org, "update:email", resource)
    if permissions:
        authorize(ctx.principal, ctx.org, "update:permissions", resource)
    for name in ("first_name", "last_name", "email", "is_active", "is_staff", "is_superuser"):
        if name in fields:
            value = getattr(patch, name)
            if value is None:
                raise InvalidInput("This field may not be null.", field=name)
            setattr(user, name, value)
    if "groups" in fields:
        set_groups(session, user.id, patch.groups or [])
    session.flush()
    after = _to_read(ctx, user, groups_of(session, [user.id]).get(user.id, []))
    _record(session, ctx, "update", after=after, before=before)
    return _present(session, ctx, [user], full_for_self=False)[0]


def delete_user(session: Session, ctx: RequestContext, user_id: int) -> None:
    user = _get(session, user_id)
    authorize(ctx.principal, ctx.org, "delete", Resource(kind="user", id=user.id))
    before = _to_read(ctx, user, groups_of(session, [user.id]).get(user.id, []))
    _record(session, ctx, "delete", before=before)
    session.delete(user)
