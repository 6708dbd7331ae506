"""``/api/organizations``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.organizations import (
    OrganizationPatch,
    OrganizationRead,
    OrganizationWrite,
)
from cvat_ray.storage.services import organizations as org_service

router = APIRouter(prefix="/api/organizations", tags=["organizations"])


@router.get("", response_model=Paginated[OrganizationRead])
async def list_organizations(
    request: Request, call: Call, params: Listing
) -> Paginated[OrganizationRead]:
    """CVAT ``GET /api/organizations``: the organizations the caller owns or belongs to."""
    return paginated(request, params, await call(org_service.list_organizations, params))


@router.post("", response_model=OrganizationRead, status_code=status.HTTP_201_CREATED)
async def create_organization(data: OrganizationWrite, call: Call) -> OrganizationRead:
    """CVAT ``POST /api/organizations``: the creator becomes its owner."""
    return await call(org_service.create_organization, data)


@router.get("/{org_id}", response_model=OrganizationRead)
async def retrieve_organization(org_id: ObjectId, call: Call) -> OrganizationRead:
    """CVAT ``GET /api/organizations/{id}``."""
    return await call(org_service.retrieve_organization, org_id)


@router.patch("/{org_id}", response_model=OrganizationRead)
async def partial_update_organization(
    org_id: ObjectId, data: OrganizationPatch, call: Call
) -> OrganizationRead:
    """CVAT ``PATCH /api/organizations/{id}``."""
    return await call(org_service.partial_update_organization, org_id, data)


@router.delete("/{org_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_organization(org_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/organizations/{id}``: with its memberships, projects and tasks."""
    await call(org_service.delete_organization, org_id)
