"""``/api/jobs``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.jobs import JobPatch, JobRead
from cvat_ray.storage.services import jobs as job_service

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.get("", response_model=Paginated[JobRead])
async def list_jobs(request: Request, call: Call, params: Listing) -> Paginated[JobRead]:
    """CVAT ``GET /api/jobs`` (filters ``task_id``, ``project_id``, ``stage``, ``state``, ...)."""
    return paginated(request, params, await call(job_service.list_jobs, params))


@router.get("/{job_id}", response_model=JobRead)
async def retrieve_job(job_id: ObjectId, call: Call) -> JobRead:
    """CVAT ``GET /api/jobs/{id}``."""
    return await call(job_service.retrieve_job, job_id)


@router.patch("/{job_id}", response_model=JobRead)
async def partial_update_job(job_id: ObjectId, data: JobPatch, call: Call) -> JobRead:
    """CVAT ``PATCH /api/jobs/{id}``: assignee, stage and state; status and the task's status
    follow."""
    return await call(job_service.partial_update_job, job_id, data)
