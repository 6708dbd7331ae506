"""Authentication, the parts that need no database: what a request carries, how an
``Authorization`` header is read, and how a principal is built from a user's stored roles.

The lookups themselves (sessions, tokens, passwords, LDAP accounts) need the database and
live in the storage layer's ``services/authn.py`` (iam imports nothing of storage); the
throttle every credential check goes through is :mod:`cvat_ray.iam.throttle`.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cvat_ray.cluster.errors import NotAuthenticated
from cvat_ray.iam.principal import PRIVILEGES, AuthMethod, Principal

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Credentials:
    """What a request carries that may identify its caller. ``client`` is the caller's
    address as far as the server can tell (see :mod:`cvat_ray.iam.clients`); the throttle
    keys on it."""

    method: str
    authorization: str | None = None
    session_cookie: str | None = None
    csrf_cookie: str | None = None
    csrf_header: str | None = None
    client: str = "unknown"


def split_authorization(header: str) -> tuple[str, str]:
    """``(scheme in lower case, value)`` of an ``Authorization`` header."""
    scheme, _, value = header.strip().partition(" ")
    return scheme.lower(), value.strip()


def decode_basic(value: str) -> tuple[str, str]:
    """``(username, password)`` of an HTTP Basic value; 401 when it is not one."""
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise NotAuthenticated("Invalid basic header.") from exc
    username, sep, password = decoded.partition(":")
    if not sep:
        raise NotAuthenticated("Invalid basic header.")
    return username, password


def build_principal(
    user_id: int,
    username: str,
    is_superuser: bool,
    group_names: str | None,
    membership_roles: str | None,
    auth: AuthMethod,
    *,
    session_id: int | None = None,
    access_token_id: int | None = None,
    read_only: bool = False,
    first_name: str | None = None,
    last_name: str | None = None,
) -> Principal:
    """The principal of a user from the two columns a credential lookup reads: the user's
    groups (``"admin,user"``) and active memberships (``"<org id>:<role>,..."``)."""
    groups = [g for g in (group_names or "").split(",") if g]
    memberships: dict[int, str] = {}
    for item in (membership_roles or "").split(","):
        if item:
            org_id, _, role = item.partition(":")
            memberships[int(org_id)] = role
    return Principal(
        user_id=user_id,
        username=username,
        groups=tuple(sorted((g for g in groups if g in PRIVILEGES), key=PRIVILEGES.index)),
        is_superuser=is_superuser,
        auth=auth,
        memberships=memberships,
        session_id=session_id,
        access_token_id=access_token_id,
        read_only=read_only,
        first_name=first_name,
        last_name=last_name,
    )
