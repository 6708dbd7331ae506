"""``/api/tasks``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from serve_apps.deps import Ctx, DbSession, Listing, ObjectId
from serve_apps.pagination import paginated
from storage.schemas.common import Paginated
from storage.schemas.tasks import TaskPatch, TaskRead, TaskWrite
from storage.services import tasks as task_service

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


@router.get("", response_model=Paginated[TaskRead])
def list_tasks(
    request: Request, session: DbSession, ctx: Ctx, params: Listing
) -> Paginated[TaskRead]:
    """CVAT ``GET /api/tasks``."""
    return paginated(request, params, task_service.list_tasks(session, ctx, params))


@router.post("", response_model=TaskRead, status_code=status.HTTP_201_CREATED)
def create_task(data: TaskWrite, session: DbSession, ctx: Ctx) -> TaskRead:
    """CVAT ``POST /api/tasks``: with labels, or inside a project (``project_id``)."""
    return task_service.create_task(session, ctx, data)


@router.get("/{task_id}", response_model=TaskRead)
def retrieve_task(task_id: ObjectId, session: DbSession, ctx: Ctx) -> TaskRead:
    """CVAT ``GET /api/tasks/{id}``."""
    return task_service.retrieve_task(session, ctx, task_id)


@router.patch("/{task_id}", response_model=TaskRead)
def partial_update_task(
    task_id: ObjectId, data: TaskPatch, session: DbSession, ctx: Ctx
) -> TaskRead:
    """CVAT ``PATCH /api/tasks/{id}``."""
    return task_service.partial_update_task(session, ctx, task_id, data)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_task(task_id: ObjectId, session: DbSession, ctx: Ctx) -> None:
    """CVAT ``DELETE /api/tasks/{id}``: with its data record, jobs and labels."""
    task_service.delete_task(session, ctx, task_id)
