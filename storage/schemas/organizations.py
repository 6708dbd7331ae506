"""``/api/organizations``, ``/api/memberships``, ``/api/invitations`` shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import BasicUser, WriteModel

OrgRole = Literal["owner", "maintainer", "supervisor", "worker"]
# CVAT's slug rule.
SLUG_PATTERN = r"^[-a-zA-Z0-9_]+$"


class OrganizationRead(BaseModel):
    id: int
    slug: str
    name: str
    description: str
    created_date: datetime
    updated_date: datetime
    contact: dict[str, Any]
    owner: BasicUser | None


class OrganizationWrite(WriteModel):
    slug: str = Field(min_length=1, max_length=16, pattern=SLUG_PATTERN)
    name: str = Field(default="", max_length=64)
    description: str = Field(default="", max_length=2048)
    contact: dict[str, str] = Field(default_factory=dict)


class OrganizationPatch(WriteModel):
    slug: str | None = Field(default=None, min_length=1, max_length=16, pattern=SLUG_PATTERN)
    name: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=2048)
    contact: dict[str, str] | None = None


class MembershipRead(BaseModel):
    id: int
    user: BasicUser
    organization: int
    is_active: bool
    joined_date: datetime | None
    role: OrgRole
    invitation: str | None


class MembershipPatch(WriteModel):
    role: Literal["maintainer", "supervisor", "worker"]


class InvitationRead(BaseModel):
    key: str
    role: OrgRole
    user: BasicUser
    organization: int
    organization_info: dict[str, Any]
    owner: BasicUser | None
    created_date: datetime
    sent_date: datetime | None
    expired: bool


class InvitationWrite(WriteModel):
    role: Literal["maintainer", "supervisor", "worker"]
    email: str | None = Field(default=None, max_length=254)
    username: str | None = Field(default=None, max_length=150)


class AcceptedInvitation(BaseModel):
    organization_slug: str
