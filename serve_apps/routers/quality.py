"""``/api/quality/settings``: quality-control settings of tasks and projects."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.quality import QualitySettings as QualitySettingsRead
from cvat_ray.storage.schemas.quality import QualitySettingsPatch
from cvat_ray.storage.services import quality as quality_service

router = APIRouter(prefix="/api/quality/settings", tags=["quality"])

OptionalId = Annotated[int | None, Query(ge=0, le=2_147_483_647)]


@router.get("", response_model=Paginated[QualitySettingsRead])
async def list_settings(
    request: Request,
    call: Call,
    params: Listing,
    project_id: OptionalId = None,
    parent_type: Annotated[Literal["project", "task"] | None, Query()] = None,
) -> Paginated[QualitySettingsRead]:
    """CVAT ``GET /api/quality/settings`` (``task_id=``, ``project_id=``, ``parent_type=``)."""
    page = await call(quality_service.list_quality_settings, params, project_id, parent_type)
    return paginated(request, params, page)


@router.get("/{settings_id}", response_model=QualitySettingsRead)
async def retrieve_settings(settings_id: ObjectId, call: Call) -> QualitySettingsRead:
    """CVAT ``GET /api/quality/settings/{id}``."""
    return await call(quality_service.retrieve_quality_settings, settings_id)


@router.patch("/{settings_id}", response_model=QualitySettingsRead)
async def partial_update_settings(
    settings_id: ObjectId, data: QualitySettingsPatch, call: Call
) -> QualitySettingsRead:
    """CVAT ``PATCH /api/quality/settings/{id}``."""
    return await call(quality_service.partial_update_quality_settings, settings_id, data)
