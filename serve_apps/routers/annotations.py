"""``/api/jobs/{id}/annotations`` and ``/api/tasks/{id}/annotations``.

Clients call these with a trailing slash (``/annotations/``); the compat middleware strips it.
Bodies are read here with a size cap and decoded in the database thread (they may hold a
million shapes); GET streams its JSON from the database.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import Response, StreamingResponse

from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.bodies import MIB, body_rule
from cvat_ray.serve_apps.deps import Call, ObjectId, read_body
from cvat_ray.storage.schemas.annotations import LabeledData, encode_chunks
from cvat_ray.storage.services import annotations as service

router = APIRouter(tags=["annotations"])


def _written(data: LabeledData) -> StreamingResponse:
    return StreamingResponse(encode_chunks(data), media_type="application/json")


def _payload_limit(settings: Settings) -> int:
    return settings.api.max_annotation_payload_mb * MIB


# The body guard authenticates the caller and caps the body at this limit as well.
_annotation_body = body_rule(_payload_limit)


async def _body(request: Request) -> bytes:
    settings: Settings = request.app.state.settings
    return await read_body(request, settings.api.max_annotation_payload_mb)


def _format(request: Request) -> None:
    service.require_no_format(request.query_params.get("format"))


@router.get("/api/jobs/{job_id}/annotations")
async def retrieve_job_annotations(job_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``GET /api/jobs/{id}/annotations/``: the job's ``LabeledData``, streamed."""
    _format(request)
    return await call.stream(service.job_annotations, job_id)


@router.put("/api/jobs/{job_id}/annotations")
@_annotation_body
async def update_job_annotations(job_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``PUT /api/jobs/{id}/annotations/``: replace the job's annotations."""
    _format(request)
    body = await _body(request)
    return _written(await call(service.put_job_annotations, job_id, body))


@router.patch("/api/jobs/{job_id}/annotations")
@_annotation_body
async def partial_update_job_annotations(
    job_id: ObjectId, request: Request, call: Call
) -> Response:
    """CVAT ``PATCH /api/jobs/{id}/annotations/?action=create|update|delete``."""
    action = request.query_params.get("action")
    body = await _body(request)
    return _written(await call(service.patch_job_annotations, job_id, action, body))


@router.delete("/api/jobs/{job_id}/annotations", status_code=status.HTTP_204_NO_CONTENT)
async def destroy_job_annotations(job_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/jobs/{id}/annotations/``: remove all of the job's annotations."""
    await call(service.delete_job_annotations, job_id)


@router.get("/api/tasks/{task_id}/annotations")
async def retrieve_task_annotations(task_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``GET /api/tasks/{id}/annotations/``: the union of the task's jobs, streamed."""
    _format(request)
    return await call.stream(service.task_annotations, task_id)


@router.put("/api/tasks/{task_id}/annotations")
@_annotation_body
async def update_task_annotations(task_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``PUT /api/tasks/{id}/annotations/``: replace the annotations of every job."""
    _format(request)
    body = await _body(request)
    return _written(await call(service.put_task_annotations, task_id, body))


@router.patch("/api/tasks/{task_id}/annotations")
@_annotation_body
async def partial_update_task_annotations(
    task_id: ObjectId, request: Request, call: Call
) -> Response:
    """CVAT ``PATCH /api/tasks/{id}/annotations/?action=create|update|delete``."""
    action = request.query_params.get("action")
    body = await _body(request)
    return _written(await call(service.patch_task_annotations, task_id, action, body))


@router.delete("/api/tasks/{task_id}/annotations", status_code=status.HTTP_204_NO_CONTENT)
async def destroy_task_annotations(task_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/tasks/{id}/annotations/``: remove the annotations of every job."""
    await call(service.delete_task_annotations, task_id)
