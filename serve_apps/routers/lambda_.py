"""CVAT's lambda API: ``/api/lambda/functions`` (list, describe, call online) and
``/api/lambda/requests`` (whole-task runs)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Response

from cvat_ray.cluster.errors import AppError, InvalidInput
from cvat_ray.serve_apps.deps import Call, FunctionsDep, LauncherDep, MediaDep, SettingsDep
from cvat_ray.storage.schemas.lambda_ import (
    DatasetRunRead,
    DatasetRunRequest,
    FunctionCall,
    FunctionCallRequest,
    OnlineCallRequest,
)
from cvat_ray.storage.services import lambda_functions as service
from cvat_ray.storage.services import lambda_runs

router = APIRouter(prefix="/api/lambda", tags=["lambda"])


class JobsUnavailable(AppError):
    status = 503
    default_detail = "The cluster's Jobs API is not available."


FunctionId = Annotated[str, Path(min_length=1, max_length=64)]
RequestId = Annotated[str, Path(max_length=128)]


@router.get("/functions")
async def list_functions(call: Call) -> list[dict[str, Any]]:
    """CVAT ``GET /api/lambda/functions``: every deployed function (a plain list)."""
    return await call(service.list_functions)


@router.get("/functions/{func_id}")
async def retrieve_function(func_id: FunctionId, call: Call) -> dict[str, Any]:
    """CVAT ``GET /api/lambda/functions/{id}``."""
    return await call(service.retrieve_function, func_id)


def _box(value: Any) -> tuple[float, float, float, float] | None:
    if not value:
        return None
    flat = [float(v) for p in value for v in (p if isinstance(p, list | tuple) else [p])]
    if len(flat) != 4:
        raise InvalidInput("obj_bbox is two points or four numbers.", field="obj_bbox")
    return (flat[0], flat[1], flat[2], flat[3])


@router.post("/functions/{func_id}")
async def call_function(
    func_id: FunctionId,
    call: Call,
    settings: SettingsDep,
    media: MediaDep,
    runner: FunctionsDep,
    body: Annotated[OnlineCallRequest, Body(default_factory=OnlineCallRequest)],
) -> Response:
    """CVAT ``POST /api/lambda/functions/{id}``: the function on one frame, synchronously
    (every field has a default, so an empty body is a call with defaults).
    Detectors answer annotations with task label ids; interactors ``{points, mask}``;
    trackers ``{shapes, states}``."""
    plan = await call(service.prepare_online, func_id, body, settings)
    image = await media.decode(plan.frame)
    kind = plan.spec.kind
    if kind == "detector":
        output = await runner.call(
            plan.spec, "detect", image, plan.threshold, body.conv_mask_to_poly
        )
    elif kind == "interactor":
        output = await runner.call(
            plan.spec,
            "interact",
            image,
            [tuple(p) for p in body.pos_points],
            [tuple(p) for p in body.neg_points],
            _box(body.obj_bbox),
        )
    else:
        output = await runner.call(plan.spec, "track", image, body.shapes, body.states)
    return Response(service.online_answer(plan, output), media_type="application/json")


@router.post("/runs", response_model=DatasetRunRead, status_code=202)
async def create_dataset_run(
    body: DatasetRunRequest, call: Call, launcher: LauncherDep
) -> DatasetRunRead:
    """Ours (CVAT has none): annotate the ``tasks``, a ``project`` or an ``organization``
    with one function as a Ray job, task after task; the same ``run`` name resumes. Each
    task's progress shows in ``/api/lambda/requests``."""
    plan = await call(lambda_runs.plan_dataset_run, body)
    try:
        job_id = await asyncio.to_thread(launcher.submit_dataset, plan.argv)
    except Exception as exc:
        raise JobsUnavailable(f"The Ray job could not be submitted: {exc}"[:500]) from exc
    return DatasetRunRead(
        run=plan.run,
        function=plan.function,
        tasks=plan.tasks,
        to_annotate=plan.to_annotate,
        job_id=job_id,
    )


@router.post("/requests", response_model=FunctionCall)
async def create_request(
    body: FunctionCallRequest, call: Call, launcher: LauncherDep
) -> FunctionCall:
    """CVAT ``POST /api/lambda/requests``: annotate a whole task (or job) in the background."""
    return await call(service.create_request, body, launcher.submit)


@router.get("/requests", response_model=list[FunctionCall])
async def list_requests(call: Call) -> list[FunctionCall]:
    """CVAT ``GET /api/lambda/requests``: a plain list, not paginated."""
    return await call(service.list_requests)


@router.get("/requests/{request_id}", response_model=FunctionCall)
async def retrieve_request(request_id: RequestId, call: Call) -> FunctionCall:
    """CVAT ``GET /api/lambda/requests/{id}``: status and progress (0-100)."""
    return await call(service.retrieve_request, request_id)


@router.delete("/requests/{request_id}", status_code=204)
async def cancel_request(request_id: RequestId, call: Call) -> Response:
    """CVAT ``DELETE /api/lambda/requests/{id}``: cancel; annotations saved so far stay."""
    await call(service.cancel_request, request_id)
    return Response(status_code=204)
