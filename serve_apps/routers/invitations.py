"""``/api/invitations``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, status

from cvat_ray.serve_apps.deps import Call, Listing
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.organizations import (
    AcceptedInvitation,
    InvitationRead,
    InvitationWrite,
)
from cvat_ray.storage.services import memberships as membership_service

router = APIRouter(prefix="/api/invitations", tags=["invitations"])

Key = Annotated[str, Path(max_length=64)]


@router.get("", response_model=Paginated[InvitationRead])
async def list_invitations(
    request: Request, call: Call, params: Listing
) -> Paginated[InvitationRead]:
    """CVAT ``GET /api/invitations``: pending invitations the caller sent or received."""
    return paginated(request, params, await call(membership_service.list_invitations, params))


@router.post("", response_model=InvitationRead, status_code=status.HTTP_201_CREATED)
async def create_invitation(data: InvitationWrite, call: Call) -> InvitationRead:
    """CVAT ``POST /api/invitations``: invite a user (by e-mail or username) with a role."""
    return await call(membership_service.create_invitation, data)


@router.get("/{key}", response_model=InvitationRead)
async def retrieve_invitation(key: Key, call: Call) -> InvitationRead:
    """CVAT ``GET /api/invitations/{key}``."""
    return await call(membership_service.retrieve_invitation, key)


@router.post("/{key}/accept", response_model=AcceptedInvitation)
async def accept_invitation(key: Key, call: Call) -> AcceptedInvitation:
    """CVAT ``POST /api/invitations/{key}/accept``: join the organization."""
    return await call(membership_service.accept_invitation, key)


@router.post("/{key}/decline", status_code=status.HTTP_204_NO_CONTENT)
async def decline_invitation(key: Key, call: Call) -> None:
    """CVAT ``POST /api/invitations/{key}/decline``."""
    await call(membership_service.decline_invitation, key)


@router.post("/{key}/resend", status_code=status.HTTP_204_NO_CONTENT)
async def resend_invitation(key: Key, call: Call) -> None:
    """CVAT ``POST /api/invitations/{key}/resend``: renews its expiry."""
    await call(membership_service.resend_invitation, key)


@router.delete("/{key}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_invitation(key: Key, call: Call) -> None:
    """CVAT ``DELETE /api/invitations/{key}``: withdraw it."""
    await call(membership_service.delete_invitation, key)
