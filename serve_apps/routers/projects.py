"""``/api/projects``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.projects import ProjectPatch, ProjectRead, ProjectWrite
from cvat_ray.storage.services import projects as project_service
from cvat_ray.storage.services import tasks as task_service

router = APIRouter(prefix="/api/projects", tags=["projects"])


@router.get("", response_model=Paginated[ProjectRead])
async def list_projects(request: Request, call: Call, params: Listing) -> Paginated[ProjectRead]:
    """CVAT ``GET /api/projects``."""
    return paginated(request, params, await call(project_service.list_projects, params))


@router.post("", response_model=ProjectRead, status_code=status.HTTP_201_CREATED)
async def create_project(data: ProjectWrite, call: Call) -> ProjectRead:
    """CVAT ``POST /api/projects``: with its labels, in the request's organization."""
    return await call(project_service.create_project, data)


@router.get("/{project_id}", response_model=ProjectRead)
async def retrieve_project(project_id: ObjectId, call: Call) -> ProjectRead:
    """CVAT ``GET /api/projects/{id}``."""
    return await call(project_service.retrieve_project, project_id)


@router.patch("/{project_id}", response_model=ProjectRead)
async def partial_update_project(
    project_id: ObjectId, data: ProjectPatch, call: Call
) -> ProjectRead:
    """CVAT ``PATCH /api/projects/{id}``: labels are added, updated (``id``) or deleted
    (``deleted: true``)."""
    return await call(project_service.partial_update_project, project_id, data)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_project(project_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/projects/{id}``: with its tasks, jobs and labels."""
    await call(task_service.delete_project, project_id)
