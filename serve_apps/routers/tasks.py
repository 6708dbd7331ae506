"""``/api/tasks``."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.tasks import TaskPatch, TaskRead, TaskWrite
from cvat_ray.storage.services import tasks as task_service

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


@router.get("", response_model=Paginated[TaskRead])
async def list_tasks(request: Request, call: Call, params: Listing) -> Paginated[TaskRead]:
    """CVAT ``GET /api/tasks``."""
    return paginated(request, params, await call(task_service.list_tasks, params))


@router.post("", response_model=TaskRead, status_code=status.HTTP_201_CREATED)
async def create_task(data: TaskWrite, call: Call) -> TaskRead:
    """CVAT ``POST /api/tasks``: with labels, or inside a project (``project_id``)."""
    return await call(task_service.create_task, data)


@router.get("/{task_id}", response_model=TaskRead)
async def retrieve_task(task_id: ObjectId, call: Call) -> TaskRead:
    """CVAT ``GET /api/tasks/{id}``."""
    return await call(task_service.retrieve_task, task_id)


@router.patch("/{task_id}", response_model=TaskRead)
async def partial_update_task(task_id: ObjectId, data: TaskPatch, call: Call) -> TaskRead:
    """CVAT ``PATCH /api/tasks/{id}``."""
    return await call(task_service.partial_update_task, task_id, data)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_task(task_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/tasks/{id}``: with its data record, jobs and labels."""
    await call(task_service.delete_task, task_id)
