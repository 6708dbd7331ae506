"""Authentication: login sessions (cookie + CSRF), ``Token`` and ``Bearer`` headers, HTTP Basic.

Session keys, login tokens and personal access tokens are random strings stored only as
SHA-256 digests; passwords are Argon2id hashes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, bindparam, cast, delete, func, literal_column, or_, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotAuthenticated, PermissionDenied
from cvat_ray.cluster.settings import get_settings
from cvat_ray.iam.keys import digest, new_csrf_token, new_session_key, same
from cvat_ray.iam.ldap import LdapDirectory, LdapIdentity, map_groups
from cvat_ray.iam.passwords import burn_verification_time, verify_password
from cvat_ray.iam.principal import PRIVILEGES, AuthMethod, Principal
from cvat_ray.storage.models import (
    AccessToken,
    AuthSession,
    Group,
    Membership,
    User,
    user_groups,
    utcnow,
)
from cvat_ray.storage.services.users import create_user, set_groups

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# last_used_date of an access token is written at most this often (CVAT does the same).
_TOKEN_USE_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class Credentials:
    """What a request carries that may identify its caller."""

    method: str
    authorization: str | None = None
    session_cookie: str | None = None
    csrf_cookie: str | None = None
    csrf_header: str | None = None


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
    **extra: object,
) -> Principal:
    """The principal of ``user``; ``roles`` are the two columns of :func:`_roles_columns`
    when the caller already read them."""
    if roles is None:
        row = session.execute(_ROLES_OF_USER, {"user_id": user.id}).one()
        roles = (row[0], row[1])
    group_names, membership_roles = roles
    groups = [g for g in (group_names or "").split(",") if g]
    memberships: dict[int, str] = {}
    for item in (membership_roles or "").split(","):
        if item:
            org_id, _, role = item.partition(":")
            memberships[int(org_id)] = role
    return Principal(
        user_id=user.id,
        username=user.username,
        groups=tuple(sorted((g for g in groups if g in PRIVILEGES), key=PRIVILEGES.index)),
        is_superuser=user.is_superuser,
        auth=auth,
        memberships=memberships,
        **extra,  # type: ignore[arg-type]
    )


def authenticate(session: Session, creds: Credentials) -> Principal | None:
    """The caller, None when anonymous. Raises 401 for bad credentials and 403 for a
    session-authenticated unsafe request without a valid CSRF token."""
    if creds.authorization:
        scheme, _, value = creds.authorization.strip().partition(" ")
        value = value.strip()
        match scheme.lower():
            case "bearer":
                return _by_access_token(session, value)
            case "token":
                principal = _by_session_key(session, value, "token")
                if principal is None:
                    raise NotAuthenticated("Invalid token.")
                return principal
            case "basic":
                return _by_basic(session, value)
            case _:
                raise NotAuthenticated("Unsupported authorization scheme.")
    if creds.session_cookie:
        found = _session_row(session, creds.session_cookie)
        if found is None:
            return None
        auth_session, user, roles = found
        if creds.method in UNSAFE_METHODS:
            header = creds.csrf_header or ""
            if not header or not same(header, auth_session.csrf_token):
                raise PermissionDenied("CSRF Failed: CSRF token missing or incorrect.")
        return principal_for(session, user, "session", roles)
    return None


def _session_row(
    session: Session, key: str
) -> tuple[AuthSession, User, tuple[str | None, str | None]] | None:
    row = session.execute(_SESSION_LOOKUP, {"key_hash": digest(key)}).first()
    if row is None:
        return None
    auth_session, user, group_names, membership_roles = row
    if auth_session.expiry_date <= utcnow() or not user.is_active:
        return None
    return auth_session, user, (group_names, membership_roles)


def _by_session_key(session: Session, key: str, method: AuthMethod) -> Principal | None:
    found = _session_row(session, key)
    return principal_for(session, found[1], method, found[2]) if found else None


def _by_access_token(session: Session, value: str) -> Principal:
    row = session.execute(_TOKEN_LOOKUP, {"key_hash": digest(value)}).first()
    if row is None:
        raise NotAuthenticated("Invalid token.")
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


def _by_basic(session: Session, value: str) -> Principal:
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise NotAuthenticated("Invalid basic header.") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise NotAuthenticated("Invalid basic header.")
    user = verify_credentials(session, username, password)
    if user is None:
        raise NotAuthenticated("Invalid username/password.")
    return principal_for(session, user, "basic")


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


def start_session(session: Session, user: User, ttl_s: int) -> LoginSession:
    now = utcnow()
    key = new_session_key()
    csrf = new_csrf_token()
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
    if authorization and authorization.lower().startswith("token "):
        keys.append(authorization[6:].strip())
    if keys:
        session.execute(
            delete(AuthSession).where(or_(*(AuthSession.key_hash == digest(k) for k in keys)))
        )
