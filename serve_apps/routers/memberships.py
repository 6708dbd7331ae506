"""``/api/memberships``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.organizations import MembershipPatch, MembershipRead
from cvat_ray.storage.services import memberships as membership_service

router = APIRouter(prefix="/api/memberships", tags=["memberships"])


@router.get("", response_model=Paginated[MembershipRead])
async def list_memberships(
    request: Request, call: Call, params: Listing
) -> Paginated[MembershipRead]:
    """CVAT ``GET /api/memberships``: the members of the organization in context (or the
    caller's own memberships outside one)."""
    return paginated(request, params, await call(membership_service.list_memberships, params))


@router.get("/{membership_id}", response_model=MembershipRead)
async def retrieve_membership(membership_id: ObjectId, call: Call) -> MembershipRead:
    """CVAT ``GET /api/memberships/{id}``."""
    return await call(membership_service.retrieve_membership, membership_id)


@router.patch("/{membership_id}", response_model=MembershipRead)
async def partial_update_membership(
    membership_id: ObjectId, data: MembershipPatch, call: Call
) -> MembershipRead:
    """CVAT ``PATCH /api/memberships/{id}``: change a member's role."""
    return await call(membership_service.partial_update_membership, membership_id, data)


@router.delete("/{membership_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_membership(membership_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/memberships/{id}``: remove a member, or leave (your own)."""
    await call(membership_service.delete_membership, membership_id)
