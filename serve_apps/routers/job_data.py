"""``/api/jobs/{id}/data`` and previews of jobs and projects."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from cvat_ray.serve_apps.compat import unless_empty_preferred
from cvat_ray.serve_apps.deps import Call, MediaDep, ObjectId, SettingsDep
from cvat_ray.storage.schemas.data import DataMetaPatch, DataMetaRead
from cvat_ray.storage.services import data_access

router = APIRouter(tags=["job data"])

Number = Annotated[int | None, Query(ge=0, le=2_147_483_647)]


@router.get("/api/jobs/{job_id}/data", response_model=None)
async def retrieve_job_data(
    job_id: ObjectId,
    call: Call,
    settings: SettingsDep,
    media: MediaDep,
    type: Annotated[Literal["chunk", "frame", "context_image"], Query()],
    number: Number = None,
    index: Number = None,
    quality: Annotated[Literal["original", "compressed"], Query()] = "compressed",
) -> Response:
    """CVAT ``GET /api/jobs/{id}/data?type=&index=|number=&quality=``: ``index`` counts the
    job's own chunks from 0; ``number`` is a task chunk or frame number."""
    plan = await call(data_access.job_data, job_id, type, number, index, quality, settings)
    return await media.response(plan)


@router.get("/api/jobs/{job_id}/data/meta", response_model=DataMetaRead)
async def retrieve_job_data_meta(job_id: ObjectId, call: Call) -> DataMetaRead:
    """CVAT ``GET /api/jobs/{id}/data/meta``."""
    return await call(data_access.job_meta, job_id)


@router.patch("/api/jobs/{job_id}/data/meta", response_model=DataMetaRead)
async def partial_update_job_data_meta(
    job_id: ObjectId, data: DataMetaPatch, call: Call
) -> DataMetaRead:
    """CVAT ``PATCH /api/jobs/{id}/data/meta``: deleted frames within the job."""
    return await call(data_access.update_job_meta, job_id, data)


@router.get("/api/jobs/{job_id}/preview", response_model=None)
async def retrieve_job_preview(
    job_id: ObjectId, request: Request, call: Call, settings: SettingsDep, media: MediaDep
) -> Response:
    """CVAT ``GET /api/jobs/{id}/preview``: a thumbnail of the job's first frame."""
    plan = await unless_empty_preferred(request, call(data_access.job_preview, job_id, settings))
    if plan is None:
        return Response(status_code=204)
    return await media.response(plan)


@router.get("/api/projects/{project_id}/preview", response_model=None)
async def retrieve_project_preview(
    project_id: ObjectId, request: Request, call: Call, settings: SettingsDep, media: MediaDep
) -> Response:
    """CVAT ``GET /api/projects/{id}/preview``: the preview of its first task with data."""
    plan = await unless_empty_preferred(
        request, call(data_access.project_preview, project_id, settings)
    )
    if plan is None:
        return Response(status_code=204)
    return await media.response(plan)
