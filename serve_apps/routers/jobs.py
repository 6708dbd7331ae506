"""``/api/jobs``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serve_apps.deps import Ctx, DbSession, Listing, ObjectId
from serve_apps.pagination import paginated
from storage.schemas.common import Paginated
from storage.schemas.jobs import JobPatch, JobRead
from storage.services import jobs as job_service

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.get("", response_model=Paginated[JobRead])
def list_jobs(
    request: Request, session: DbSession, ctx: Ctx, params: Listing
) -> Paginated[JobRead]:
    """CVAT ``GET /api/jobs`` (filters ``task_id``, ``project_id``, ``stage``, ``state``, ...)."""
    return paginated(request, params, job_service.list_jobs(session, ctx, params))


@router.get("/{job_id}", response_model=JobRead)
def retrieve_job(job_id: ObjectId, session: DbSession, ctx: Ctx) -> JobRead:
    """CVAT ``GET /api/jobs/{id}``."""
    return job_service.retrieve_job(session, ctx, job_id)


@router.patch("/{job_id}", response_model=JobRead)
def partial_update_job(job_id: ObjectId, data: JobPatch, session: DbSession, ctx: Ctx) -> JobRead:
    """CVAT ``PATCH /api/jobs/{id}``: assignee, stage and state; status and the task's status
    follow."""
    return job_service.partial_update_job(session, ctx, job_id, data)
