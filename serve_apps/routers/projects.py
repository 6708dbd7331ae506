"""``/api/projects``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from serve_apps.deps import Ctx, DbSession, Listing, ObjectId
from serve_apps.pagination import paginated
from storage.schemas.common import Paginated
from storage.schemas.projects import ProjectPatch, ProjectRead, ProjectWrite
from storage.services import projects as project_service

router = APIRouter(prefix="/api/projects", tags=["projects"])


@router.get("", response_model=Paginated[ProjectRead])
def list_projects(
    request: Request, session: DbSession, ctx: Ctx, params: Listing
) -> Paginated[ProjectRead]:
    """CVAT ``GET /api/projects``."""
    return paginated(request, params, project_service.list_projects(session, ctx, params))


@router.post("", response_model=ProjectRead, status_code=status.HTTP_201_CREATED)
def create_project(data: ProjectWrite, session: DbSession, ctx: Ctx) -> ProjectRead:
    """CVAT ``POST /api/projects``: with its labels, in the request's organization."""
    return project_service.create_project(session, ctx, data)


@router.get("/{project_id}", response_model=ProjectRead)
def retrieve_project(project_id: ObjectId, session: DbSession, ctx: Ctx) -> ProjectRead:
    """CVAT ``GET /api/projects/{id}``."""
    return project_service.retrieve_project(session, ctx, project_id)


@router.patch("/{project_id}", response_model=ProjectRead)
def partial_update_project(
    project_id: ObjectId, data: ProjectPatch, session: DbSession, ctx: Ctx
) -> ProjectRead:
    """CVAT ``PATCH /api/projects/{id}``: labels are added, updated (``id``) or deleted
    (``deleted: true``)."""
    return project_service.partial_update_project(session, ctx, project_id, data)


@router.delete("/{project_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_project(project_id: ObjectId, session: DbSession, ctx: Ctx) -> None:
    """CVAT ``DELETE /api/projects/{id}``: with its tasks, jobs and labels."""
    project_service.delete_project(session, ctx, project_id)
