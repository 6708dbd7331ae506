"""``/api/labels``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.labels import LabelPatch, LabelRead
from cvat_ray.storage.services import label_api

router = APIRouter(prefix="/api/labels", tags=["labels"])

OptionalId = Annotated[int | None, Query(ge=0, le=2_147_483_647)]


@router.get("", response_model=Paginated[LabelRead])
async def list_labels(
    request: Request,
    call: Call,
    params: Listing,
    task_id: OptionalId = None,
    project_id: OptionalId = None,
    job_id: OptionalId = None,
) -> Paginated[LabelRead]:
    """CVAT ``GET /api/labels`` (``task_id``, ``project_id`` or ``job_id``)."""
    page = await call(
        label_api.list_labels, params, task_id=task_id, project_id=project_id, job_id=job_id
    )
    return paginated(request, params, page)


@router.get("/{label_id}", response_model=LabelRead)
async def retrieve_label(label_id: ObjectId, call: Call) -> LabelRead:
    """CVAT ``GET /api/labels/{id}``."""
    return await call(label_api.retrieve_label, label_id)


@router.patch("/{label_id}", response_model=LabelRead)
async def partial_update_label(label_id: ObjectId, data: LabelPatch, call: Call) -> LabelRead:
    """CVAT ``PATCH /api/labels/{id}``."""
    return await call(label_api.partial_update_label, label_id, data)


@router.delete("/{label_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_label(label_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/labels/{id}``."""
    await call(label_api.delete_label, label_id)
