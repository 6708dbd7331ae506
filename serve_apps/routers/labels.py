"""``/api/labels``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from serve_apps.deps import Ctx, DbSession, Listing, ObjectId
from serve_apps.pagination import paginated
from storage.schemas.common import Paginated
from storage.schemas.labels import LabelPatch, LabelRead
from storage.services import label_api

router = APIRouter(prefix="/api/labels", tags=["labels"])

OptionalId = Annotated[int | None, Query(ge=0, le=2_147_483_647)]


@router.get("", response_model=Paginated[LabelRead])
def list_labels(
    request: Request,
    session: DbSession,
    ctx: Ctx,
    params: Listing,
    task_id: OptionalId = None,
    project_id: OptionalId = None,
    job_id: OptionalId = None,
) -> Paginated[LabelRead]:
    """CVAT ``GET /api/labels`` (``task_id``, ``project_id`` or ``job_id``)."""
    page = label_api.list_labels(
        session, ctx, params, task_id=task_id, project_id=project_id, job_id=job_id
    )
    return paginated(request, params, page)


@router.get("/{label_id}", response_model=LabelRead)
def retrieve_label(label_id: ObjectId, session: DbSession, ctx: Ctx) -> LabelRead:
    """CVAT ``GET /api/labels/{id}``."""
    return label_api.retrieve_label(session, ctx, label_id)


@router.patch("/{label_id}", response_model=LabelRead)
def partial_update_label(
    label_id: ObjectId, data: LabelPatch, session: DbSession, ctx: Ctx
) -> LabelRead:
    """CVAT ``PATCH /api/labels/{id}``."""
    return label_api.partial_update_label(session, ctx, label_id, data)


@router.delete("/{label_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_label(label_id: ObjectId, session: DbSession, ctx: Ctx) -> None:
    """CVAT ``DELETE /api/labels/{id}``."""
    label_api.delete_label(session, ctx, label_id)
