"""``/api/jobs/{id}/annotations`` and ``/api/tasks/{id}/annotations``.

Clients call these with a trailing slash (``/annotations/``); the compat middleware strips it.
Bodies are read here with a size cap and decoded in the database thread by msgspec (they may
hold a million shapes, too many to build pydantic objects for in the event loop); their
schema, ``LabeledData``, is declared for ``/api/schema`` with ``openapi_extra``. GET streams
its JSON from the database.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import Response, StreamingResponse

from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.bodies import MIB, body_rule, described_body
from cvat_ray.serve_apps.deps import Call, ObjectId, SettingsDep, read_body
from cvat_ray.storage.schemas.annotations import LabeledData, encode_chunks
from cvat_ray.storage.services import annotations as service

router = APIRouter(tags=["annotations"])


def _written(data: LabeledData) -> StreamingResponse:
    return StreamingResponse(encode_chunks(data), media_type="application/json")


def _payload_limit(settings: Settings) -> int:
    return settings.api.max_annotation_payload_mb * MIB


# The body guard authenticates the caller and caps the body at this limit as well.
_annotation_body = body_rule(_payload_limit)
# What /api/schema says of the bodies these endpoints read themselves.
_LABELED_DATA = described_body({"application/json": LabeledData}, required=False)

# ``format`` (a dataset format) is refused with a 400 until dataset import/export exists.
Format = Annotated[str | None, Query(max_length=64)]
Action = Annotated[Literal["create", "update", "delete"], Query()]


async def _body(request: Request, settings: Settings) -> bytes:
    return await read_body(request, settings.api.max_annotation_payload_mb)


@router.get("/api/jobs/{job_id}/annotations")
async def retrieve_job_annotations(job_id: ObjectId, call: Call, format: Format = None) -> Response:
    """CVAT ``GET /api/jobs/{id}/annotations/``: the job's ``LabeledData``, streamed."""
    service.require_no_format(format)
    return await call.stream(service.job_annotations, job_id)


@router.put("/api/jobs/{job_id}/annotations", openapi_extra=_LABELED_DATA)
@_annotation_body
async def update_job_annotations(
    job_id: ObjectId,
    request: Request,
    call: Call,
    settings: SettingsDep,
    format: Format = None,
) -> Response:
    """CVAT ``PUT /api/jobs/{id}/annotations/``: replace the job's annotations."""
    service.require_no_format(format)
    body = await _body(request, settings)
    return _written(await call(service.put_job_annotations, job_id, body))


@router.patch("/api/jobs/{job_id}/annotations", openapi_extra=_LABELED_DATA)
@_annotation_body
async def partial_update_job_annotations(
    job_id: ObjectId, action: Action, request: Request, call: Call, settings: SettingsDep
) -> Response:
    """CVAT ``PATCH /api/jobs/{id}/annotations/?action=create|update|delete``."""
    body = await _body(request, settings)
    return _written(await call(service.patch_job_annotations, job_id, action, body))


@router.delete("/api/jobs/{job_id}/annotations", status_code=status.HTTP_204_NO_CONTENT)
async def destroy_job_annotations(job_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/jobs/{id}/annotations/``: remove all of the job's annotations."""
    await call(service.delete_job_annotations, job_id)


@router.get("/api/tasks/{task_id}/annotations")
async def retrieve_task_annotations(
    task_id: ObjectId, call: Call, format: Format = None
) -> Response:
    """CVAT ``GET /api/tasks/{id}/annotations/``: the union of the task's jobs, streamed."""
    service.require_no_format(format)
    return await call.stream(service.task_annotations, task_id)


@router.put("/api/tasks/{task_id}/annotations", openapi_extra=_LABELED_DATA)
@_annotation_body
async def update_task_annotations(
    task_id: ObjectId,
    request: Request,
    call: Call,
    settings: SettingsDep,
    format: Format = None,
) -> Response:
    """CVAT ``PUT /api/tasks/{id}/annotations/``: replace the annotations of every job."""
    service.require_no_format(format)
    body = await _body(request, settings)
    return _written(await call(service.put_task_annotations, task_id, body))


@router.patch("/api/tasks/{task_id}/annotations", openapi_extra=_LABELED_DATA)
@_annotation_body
async def partial_update_task_annotations(
    task_id: ObjectId, action: Action, request: Request, call: Call, settings: SettingsDep
) -> Response:
    """CVAT ``PATCH /api/tasks/{id}/annotations/?action=create|update|delete``."""
    body = await _body(request, settings)
    return _written(await call(service.patch_task_annotations, task_id, action, body))


@router.delete("/api/tasks/{task_id}/annotations", status_code=status.HTTP_204_NO_CONTENT)
async def destroy_task_annotations(task_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/tasks/{id}/annotations/``: remove the annotations of every job."""
    await call(service.delete_task_annotations, task_id)
