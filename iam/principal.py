"""Who is calling, and in which organization context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

# System groups, highest privilege first (the four of CVAT's admin guide).
PRIVILEGES: tuple[str, ...] = ("admin", "business", "user", "worker")
# Organization roles, highest first.
ORG_ROLES: tuple[str, ...] = ("owner", "maintainer", "supervisor", "worker")

AuthMethod = Literal["session", "token", "access_token", "basic"]


def privilege_rank(privilege: str | None) -> int:
    """Higher is more privileged; None (no group) is 0."""
    if privilege is None or privilege not in PRIVILEGES:
        return 0
    return len(PRIVILEGES) - PRIVILEGES.index(privilege)


def role_rank(role: str | None) -> int:
    if role is None or role not in ORG_ROLES:
        return 0
    return len(ORG_ROLES) - ORG_ROLES.index(role)


def highest_privilege(groups: list[str]) -> str | None:
    for name in PRIVILEGES:
        if name in groups:
            return name
    return None


@dataclass(frozen=True)
class Principal:
    """An authenticated user as the policy sees it."""

    user_id: int
    username: str
    groups: tuple[str, ...]
    is_superuser: bool
    auth: AuthMethod
    # org id -> the user's role there (active memberships only)
    memberships: Mapping[int, str] = field(default_factory=dict)
    # The login session (cookie or ``Token`` header) or access token the request came with.
    session_id: int | None = None
    access_token_id: int | None = None
    read_only: bool = False
    # The user's display names, where the credential lookup read them (payloads name the
    # sender without a look-up); None: not read.
    first_name: str | None = None
    last_name: str | None = None

    @property
    def privilege(self) -> str | None:
        return highest_privilege(list(self.groups))

    @property
    def is_admin(self) -> bool:
        return self.is_superuser or self.privilege == "admin"

    @property
    def has_analytics_access(self) -> bool:
        """Admins and the business group see the analytics dashboards."""
        return self.is_admin or "business" in self.groups


@dataclass(frozen=True)
class OrgContext:
    """The organization a request works in.

    ``specified`` is False when the request names no organization at all; then object-level
    checks use the object's own organization and lists show everything the user may see.
    ``specified`` with ``org_id`` None is the personal workspace (``org=``).
    """

    specified: bool = False
    org_id: int | None = None
    slug: str | None = None
    owner_id: int | None = None

    @property
    def is_sandbox(self) -> bool:
        return self.org_id is None


SANDBOX_UNSPECIFIED = OrgContext()
