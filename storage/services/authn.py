"""Authentication against the database: login sessions, personal access tokens, HTTP Basic,
local passwords and LDAP accounts.

Two kinds of login session exist. A *cookie* session (what ``/api/auth/login`` and
``/api/auth/register`` start) is accepted only from the ``sessionid`` cookie, and unsafe
requests made with it must carry its CSRF token. A *token* session is accepted only as
``Authorization: Token <key>`` (CVAT's deprecated token scheme); the API never hands one out,
tools on the server start them directly. Personal access tokens come as ``Bearer``.

Session keys and tokens are random strings stored only as SHA-256 digests; passwords are
Argon2id hashes. Whatever a caller could be guessing (a password, over the login form, Basic
or LDAP; a ``Token``/``Bearer`` value that matches nothing) goes through the login throttle
(:mod:`cvat_ray.iam.throttle`) before it is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NoReturn

from sqlalchemy import String, bindparam, cast, delete, func, literal_column, or_, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotAuthenticated, PermissionDenied
from cvat_ray.cluster.settings import get_settings
from cvat_ray.iam.authn import (
    UNSAFE_METHODS,
    Credentials,
    build_principal,
    decode_basic,
    split_authorization,
)
from cvat_ray.iam.keys import digest, new_csrf_token, new_session_key, same
from cvat_ray.iam.ldap import LdapDirectory, LdapIdentity, map_groups
from cvat_ray.iam.passwords import burn_verification_time, verify_password
from cvat_ray.iam.principal import AuthMethod, Principal
from cvat_ray.iam.throttle import LoginThrottle
from cvat_ray.storage.models import (
    AccessToken,
    AuthSession,
    Group,
    Membership,
    User,
    user_groups,
    utcnow,
)
from cvat_ray.storage.services.users import claim_invited, create_user, set_groups

SessionKind = Literal["cookie", "token"]
# last_used_date of an access token is written at most this often (CVAT does the same).
_TOKEN_USE_RESOLUTION = timedelta(minutes=1)
# A token session has no CSRF token: header credentials are never sent by a browser on its
# own, so there is no cross-site request to tell apart.
_NO_CSRF = ""


@dataclass(frozen=True)
class LoginSession:
    key: str
    csrf_token: str
    expiry_date: datetime


def _roles_columns() -> tuple[Any, Any]:
    """A user's groups and active memberships as two correlated subqueries (comma-joined
    ``name`` and ``org_id:role``), so a credential lookup reads everything in one query."""
    groups = (
        select(func.aggregate_strings(Group.name, ","))
        .join(user_groups, user_groups.c.group_id == Group.id)
        .where(user_groups.c.user_id == User.id)
        .correlate(User)
        .scalar_subquery()
    )
    memberships = (
        select(
            func.aggregate_strings(
                cast(Membership.organization_id, String) + literal_column("':'") + Membership.role,
                ",",
            )
        )
        .where(Membership.user_id == User.id, Membership.is_active.is_(True))
        .correlate(User)
        .scalar_subquery()
    )
    return groups.label("group_names"), memberships.label("membership_roles")


_ROLES = _roles_columns()
# Built once: these run on every request, and building a statement costs more than running it.
_SESSION_LOOKUP = (
    select(AuthSession, User, *_ROLES)
    .join(User, User.id == AuthSession.user_id)
    .where(AuthSession.key_hash == bindparam("key_hash"))
)
_TOKEN_LOOKUP = (
    select(AccessToken, User, *_ROLES)
    .join(User, User.id == AccessToken.owner_id)
    .where(AccessToken.key_hash == bindparam("key_hash"))
)
_ROLES_OF_USER = select(*_ROLES).where(User.id == bindparam("user_id"))


def principal_for(
    session: Session,
    user: User,
    auth: AuthMethod,
    roles: tuple[str | None, str | None] | None = None,
    **extra: Any,
) -> Principal:
    """The principal of ``user``; ``roles`` are the two columns of :func:`_roles_columns`
    when the caller already read them."""
    if roles is None:
        row = session.execute(_ROLES_OF_USER, {"user_id": user.id}).one()
        roles = (row[0], row[1])
    return build_principal(
        user.id,
        user.username,
        user.is_superuser,
        *roles,
        auth,
        first_name=user.first_name,
        last_name=user.last_name,
        **extra,
    )


def authenticate(session: Session, creds: Credentials, throttle: LoginThrottle) -> Principal | None:
    """The caller, None when anonymous. Raises 401 for bad credentials, 429 while the
    throttle holds the caller back, and 403 for a cookie-authenticated unsafe request
    without the session's CSRF token."""
    if creds.authorization:
        scheme, value = split_authorization(creds.authorization)
        match scheme:
            case "bearer":
                return _by_access_token(session, value, throttle, creds.client)
            case "token":
                return _by_token_session(session, value, throttle, creds.client)
            case "basic":
                return _by_basic(session, value, throttle, creds.client)
            case _:
                raise NotAuthenticated("Unsupported authorization scheme.")
    if creds.session_cookie:
        found = _session_row(session, creds.session_cookie, "cookie")
        if found is None:
            return None  # an expired or ended session: the caller is anonymous
        auth_session, user, roles = found
        if creds.method in UNSAFE_METHODS:
            header = creds.csrf_header or ""
            if not header or not same(header, auth_session.csrf_token):
                raise PermissionDenied("CSRF Failed: CSRF token missing or incorrect.")
        return principal_for(session, user, "session", roles, session_id=auth_session.id)
    return None


def _session_row(
    session: Session, key: str, kind: SessionKind
) -> tuple[AuthSession, User, tuple[str | None, str | None]] | None:
    row = session.execute(_SESSION_LOOKUP, {"key_hash": digest(key)}).first()
    if row is None:
        return None
    auth_session, user, group_names, membership_roles = row
    if (auth_session.csrf_token == _NO_CSRF) != (kind == "token"):
        return None  # a cookie session's key is no header token, and the reverse
    if auth_session.expiry_date <= utcnow() or not user.is_active:
        return None
    return auth_session, user, (group_names, membership_roles)


def _unknown_key(throttle: LoginThrottle, client: str) -> NoReturn:
    """A ``Token``/``Bearer`` value that matches nothing counts against the address."""
    throttle.check(None, client)
    throttle.failed(None, client)
    raise NotAuthenticated("Invalid token.")


def _by_token_session(
    session: Session, key: str, throttle: LoginThrottle, client: str
) -> Principal:
    found = _session_row(session, key, "token")
    if found is None:
        _unknown_key(throttle, client)
    auth_session, user, roles = found
    return principal_for(session, user, "token", roles, session_id=auth_session.id)


def _by_access_token(
    session: Session, value: str, throttle: LoginThrottle, client: str
) -> Principal:
    row = session.execute(_TOKEN_LOOKUP, {"key_hash": digest(value)}).first()
    if row is None:
        _unknown_key(throttle, client)
    token, user, group_names, membership_roles = row
    now = utcnow()
    if token.expiry_date is not None and token.expiry_date <= now:
        raise NotAuthenticated("The token has expired.")
    if not user.is_active:
        raise NotAuthenticated("User inactive or deleted.")
    if token.last_used_date is None or now - token.last_used_date > _TOKEN_USE_RESOLUTION:
        token.last_used_date = now
    return principal_for(
        session,
        user,
        "access_token",
        (group_names, membership_roles),
        access_token_id=token.id,
        read_only=token.read_only,
    )


def _by_basic(session: Session, value: str, throttle: LoginThrottle, client: str) -> Principal:
    username, password = decode_basic(value)
    user = checked_login(session, throttle, client, username, password)
    if user is None:
        raise NotAuthenticated("Invalid username/password.")
    return principal_for(session, user, "basic")


def checked_login(
    session: Session, throttle: LoginThrottle, client: str, username: str, password: str
) -> User | None:
    """:func:`verify_credentials` behind the throttle: a throttled caller gets 429 before
    any password hash or directory bind is spent on it."""
    throttle.check(username, client)
    user = verify_credentials(session, username, password)
    if user is None:
        throttle.failed(username, client)
        return None
    throttle.succeeded(username, client)
    return user


def verify_credentials(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None.

    With LDAP on, local accounts (the superuser created at setup, for instance) still log in
    with their local password, so an administrator can log in while the directory is down;
    every other username is checked against the directory, and its account is created or
    re-synced (names, e-mail, system groups) on each successful login. A directory that
    cannot be reached raises :class:`Unavailable` (503).
    """
    settings = get_settings().ldap
    if not settings.enabled:
        return check_password(session, username, password)
    local = session.scalar(select(User).where(User.username == username))
    if local is not None and local.auth_source == "local":
        return check_password(session, username, password)
    identity = LdapDirectory(settings).authenticate(username, password)
    if identity is None:
        return None
    return sync_ldap_user(session, identity, map_groups(settings, identity.group_dns))


def sync_ldap_user(session: Session, identity: LdapIdentity, groups: list[str]) -> User | None:
    user = session.scalar(select(User).where(User.username == identity.username))
    if user is None and identity.email:
        # Invited by e-mail before the first login: the invitation's account becomes theirs
        # (and is synced below like any directory account).
        user = claim_invited(session, identity.email, identity.username, "ldap")
    if user is None:
        user = create_user(
            session,
            username=identity.username,
            password=None,
            email=identity.email,
            first_name=identity.first_name,
            last_name=identity.last_name,
            groups=groups,
            is_superuser="admin" in groups,
            auth_source="ldap",
        )
    elif user.auth_source != "ldap":
        return None  # a local account of the same name is not taken over
    else:
        user.email = identity.email
        user.first_name, user.last_name = identity.first_name, identity.last_name
        user.is_superuser = user.is_staff = "admin" in groups
        set_groups(session, user.id, groups)
    session.flush()
    return user if user.is_active else None


def check_password(session: Session, username: str, password: str) -> User | None:
    """The active local user with these credentials, or None (in constant-ish time)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.password_hash:
        burn_verification_time(password)
        return None
    if not verify_password(user.password_hash, password) or not user.is_active:
        return None
    return user


def find_login_user(session: Session, username: str | None, email: str | None) -> str:
    """CVAT logs in by username or by e-mail; returns the username to check."""
    if username:
        return username
    if email:
        found = session.scalar(select(User.username).where(User.email == email))
        return found or email
    raise InvalidInput("Must include either username or email.", field="username")


def start_session(
    session: Session, user: User, ttl_s: int, kind: SessionKind = "cookie"
) -> LoginSession:
    """A new login session of ``user``: a cookie session (with its CSRF token) or a token
    session (``csrf_token`` empty)."""
    now = utcnow()
    key = new_session_key()
    csrf = new_csrf_token() if kind == "cookie" else _NO_CSRF
    expiry = now + timedelta(seconds=ttl_s)
    session.add(
        AuthSession(key_hash=digest(key), csrf_token=csrf, user_id=user.id, expiry_date=expiry)
    )
    user.last_login = now
    # Expired sessions of this user are cleaned up on each login.
    session.execute(
        delete(AuthSession).where(AuthSession.user_id == user.id, AuthSession.expiry_date <= now)
    )
    return LoginSession(key=key, csrf_token=csrf, expiry_date=expiry)


def end_session(session: Session, key: str | None, authorization: str | None) -> None:
    """Forget the login session named by the cookie or by a ``Token`` header."""
    keys = [k for k in (key,) if k]
    if authorization:
        scheme, value = split_authorization(authorization)
        if scheme == "token" and value:
            keys.append(value)
    if keys:
        session.execute(
            delete(AuthSession).where(or_(*(AuthSession.key_hash == digest(k) for k in keys)))
        )


def revoke_other_credentials(session: Session, principal: Principal) -> None:
    """End every login session and personal access token of the principal's user except the
    one this request came with (after a password change: whoever knew the old password may
    have started either)."""
    sessions = delete(AuthSession).where(AuthSession.user_id == principal.user_id)
    if principal.session_id is not None:
        sessions = sessions.where(AuthSession.id != principal.session_id)
    tokens = delete(AccessToken).where(AccessToken.owner_id == principal.user_id)
    if principal.access_token_id is not None:
        tokens = tokens.where(AccessToken.id != principal.access_token_id)
    session.execute(sessions)
    session.execute(tokens)
