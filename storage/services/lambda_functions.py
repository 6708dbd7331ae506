"""CVAT's lambda API over our function registry: list and describe functions, prepare
online calls (one frame), and whole-task requests (``/api/lambda/requests``).

Models never run here. An online call is prepared in one database call (authorize, find the
frame, resolve the label mapping) and its model output is turned into CVAT's answer by
:func:`online_answer`, a pure function; whole-task runs are requests rows that a driver
(``cvat_ray.actors.autoannotate``) claims, feeds and finishes through
:mod:`cvat_ray.storage.services.lambda_runs` (which also plans dataset runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import Conflict, InvalidInput, NotFound
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.storage import changes
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.functions.mapping import LabelMap, TaskLabel, resolve, to_labeled_data
from cvat_ray.storage.functions.spec import FunctionSpec, parse_spec
from cvat_ray.storage.media.render import RenderPlan
from cvat_ray.storage.models import (
    AttributeSpec,
    BackgroundRequest,
    Job,
    Label,
    LambdaFunction,
    Segment,
    Task,
    utcnow,
)
from cvat_ray.storage.query import compile_policy
from cvat_ray.storage.schemas.annotations import encode
from cvat_ray.storage.schemas.lambda_ import (
    FunctionCall,
    FunctionCallParams,
    FunctionCallRequest,
    OnlineCallRequest,
)
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.annotations import task_size
from cvat_ray.storage.services.data_access import frames_plan, job_frames
from cvat_ray.storage.services.recorded import ORIGIN, origin_of
from cvat_ray.storage.services.resources import get_job, get_task, job_resource, task_resource

OPERATION = "autoannotate:task"
APP_PREFIX = "cvat-fn-"
_LAMBDA = Resource(kind="lambda")


def app_name(function_id: str) -> str:
    """The Ray Serve application of a function."""
    return APP_PREFIX + function_id


# ---------------------------------------------------------------------------------- registry


def register(session: Session, spec: FunctionSpec, source: str) -> LambdaFunction:
    """Add or replace a function (the CLI's ``functions deploy`` and ``up``)."""
    row = session.get(LambdaFunction, spec.id)
    body = spec.model_dump(mode="json", by_alias=True)
    if row is None:
        row = LambdaFunction(id=spec.id, spec=body, source=source, app_name=app_name(spec.id))
        session.add(row)
    else:
        row.spec = body
        row.source = source
        row.updated_date = utcnow()
    session.flush()
    return row


def unregister(session: Session, function_id: str) -> bool:
    result = session.execute(delete(LambdaFunction).where(LambdaFunction.id == function_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def replace_source(session: Session, specs: list[FunctionSpec], source: str) -> list[str]:
    """Make ``specs`` the functions registered from ``source`` (a deployment's Serve config):
    each is added or replaced, and those of that source no longer among them are removed.
    Returns the ids removed."""
    for spec in specs:
        register(session, spec, source)
    keep = [spec.id for spec in specs]
    stale = list(
        session.scalars(
            select(LambdaFunction.id).where(
                LambdaFunction.source == source, LambdaFunction.id.not_in(keep)
            )
        )
    )
    for function_id in stale:
        unregister(session, function_id)
    return stale


def registered(session: Session) -> list[FunctionSpec]:
    rows = session.scalars(select(LambdaFunction).order_by(LambdaFunction.id))
    return [parse_spec(r.spec, source=f"function {r.id}") for r in rows]


def get_spec(session: Session, function_id: str) -> FunctionSpec:
    row = session.get(LambdaFunction, function_id)
    if row is None:
        raise NotFound(f"Unknown function {function_id!r}.")
    return parse_spec(row.spec, source=f"function {function_id}")


# ---------------------------------------------------------------------------------- functions


def task_labels(session: Session, task: Task) -> list[TaskLabel]:
    """The task's top-level labels (its project's when it has one) with their attributes."""
    owner = (
        Label.project_id == task.project_id
        if task.project_id is not None
        else Label.task_id == task.id
    )
    rows = session.execute(
        select(Label.id, Label.name, Label.type).where(owner, Label.parent_id.is_(None))
    ).all()
    attrs: dict[int, dict[str, tuple[int, str, tuple[str, ...]]]] = {r.id: {} for r in rows}
    if rows:
        for a in session.scalars(
            select(AttributeSpec).where(AttributeSpec.label_id.in_(list(attrs)))
        ):
            values = tuple(a.values.split("\n")) if a.values else ()
            attrs[a.label_id][a.name] = (a.id, a.input_type, values)
    return [TaskLabel(r.id, r.name, r.type, attrs[r.id]) for r in rows]


def list_functions(session: Session, ctx: RequestContext) -> list[dict[str, Any]]:
    """CVAT ``GET /api/lambda/functions``: a plain list."""
    authorize(ctx.principal, ctx.org, "list", _LAMBDA)
    return [spec.to_cvat() for spec in registered(session)]


def retrieve_function(session: Session, ctx: RequestContext, function_id: str) -> dict[str, Any]:
    authorize(ctx.principal, ctx.org, "view", _LAMBDA)
    return get_spec(session, function_id).to_cvat()


@dataclass(frozen=True)
class OnlinePlan:
    """Everything an online call needs after its database call."""

    spec: FunctionSpec
    frame: RenderPlan
    frame_number: int
    body: OnlineCallRequest
    label_map: LabelMap
    threshold: float


def prepare_online(
    session: Session,
    ctx: RequestContext,
    function_id: str,
    body: OnlineCallRequest,
    settings: Settings,
) -> OnlinePlan:
    """CVAT ``POST /api/lambda/functions/{id}``: authorize (the function's ``call:online`` and
    the frame's ``view:data``), check the frame, resolve the mapping."""
    authorize(ctx.principal, ctx.org, "call:online", _LAMBDA)
    spec = get_spec(session, function_id)
    if body.job is not None:
        job = get_job(session, body.job)
        authorize(ctx.principal, ctx.org, "view:data", job_resource(session, job))
        segment = session.get(Segment, job.segment_id)
        task = session.get(Task, job.task_id)
        assert segment is not None and task is not None
        if body.frame not in job_frames(segment):
            raise InvalidInput(f"Frame {body.frame} is not in job {job.id}.", field="frame")
        if body.task is not None and body.task != task.id:
            raise InvalidInput(f"Job {job.id} is not in task {body.task}.", field="job")
    elif body.task is not None:
        task = get_task(session, body.task)
        authorize(ctx.principal, ctx.org, "view:data", task_resource(session, task))
    else:
        raise InvalidInput("Either 'job' or 'task' is required.", field="task")
    if task.data_id is None:
        raise InvalidInput("The task has no data.", field="task")
    size = task_size(session, task)
    if body.frame >= size:
        raise InvalidInput(f"The frame must be between 0 and {size - 1}.", field="frame")
    plan = frames_plan(session, task, settings, [body.frame])
    label_map: LabelMap = {}
    if spec.kind == "detector":
        label_map = resolve(spec, task_labels(session, task), body.mapping)
    _check_kind_input(spec, body)
    _record_call(
        session,
        ctx,
        spec.id,
        "interactive",
        task,
        body.job,
        {"frame": body.frame, "threshold": body.threshold, "kind": spec.kind},
    )
    return OnlinePlan(
        spec=spec,
        frame=plan,
        frame_number=body.frame,
        body=body,
        label_map=label_map,
        threshold=0.5 if body.threshold is None else body.threshold,
    )


def _check_kind_input(spec: FunctionSpec, body: OnlineCallRequest) -> None:
    if spec.kind == "interactor":
        need = spec.interactor.min_pos_points
        if len(body.pos_points) < need and not body.obj_bbox:
            raise InvalidInput(
                f"The interactor needs at least {need} positive point(s) or a box.",
                field="pos_points",
            )
        if (
            spec.interactor.min_neg_points > 0
            and len(body.neg_points) < spec.interactor.min_neg_points
        ):
            raise InvalidInput(
                f"The interactor needs at least {spec.interactor.min_neg_points} negative point(s).",
                field="neg_points",
            )
    elif spec.kind == "tracker":
        if not body.shapes and not body.states:
            raise InvalidInput("A tracker needs 'shapes' to start or 'states' to continue.")
        if body.shapes and body.states and len(body.shapes) != len(body.states):
            raise InvalidInput("'shapes' and 'states' must have the same length.")
        for i, shape in enumerate(body.shapes or []):
            if len(shape) != 4:
                raise InvalidInput(
                    "A tracked shape is a rectangle: 4 values.", field=f"shapes[{i}]"
                )
    elif spec.kind == "reid":
        raise InvalidInput("ReID functions are not callable online here.", field="function")


def online_answer(plan: OnlinePlan, output: Any) -> bytes:
    """CVAT's answer to an online call from the model's output, as JSON.

    Detector: ``{version, tags, shapes, tracks, intervals}`` with task label ids. Interactor
    and tracker answers pass through (``{points, mask}``, ``{shapes, states}``)."""
    if plan.spec.kind != "detector":
        return encode(output)
    data = to_labeled_data([(plan.frame_number, list(output))], plan.label_map, roi=plan.body.roi)
    return encode(data)


# ---------------------------------------------------------------------------------- requests


def _to_call(row: BackgroundRequest) -> FunctionCall:
    params = row.params or {}
    message = row.message or ""
    return FunctionCall(
        id=row.id,
        function=FunctionCallParams(
            id=row.function_id,
            task=row.task_id,
            threshold=params.get("threshold"),
            job=row.job_id,
        ),
        status=row.status,
        progress=None if row.progress is None else round(row.progress * 100),
        enqueued=row.created_date,
        started=row.started_date,
        ended=row.finished_date,
        exc_info=message if row.status == "failed" else None,
    )


def create_request(
    session: Session,
    ctx: RequestContext,
    body: FunctionCallRequest,
    launch: request_service.Submit,
) -> FunctionCall:
    """CVAT ``POST /api/lambda/requests``: annotate a whole task (or one of its jobs)."""
    authorize(ctx.principal, ctx.org, "call:offline", _LAMBDA)
    spec = get_spec(session, body.function)
    task = get_task(session, body.task, for_update=True)
    authorize(ctx.principal, ctx.org, "update:annotations", task_resource(session, task))
    if spec.kind != "detector":
        raise InvalidInput(
            f"The function {spec.id!r} is a {spec.kind}; whole-task runs take detectors.",
            field="function",
        )
    if task.data_id is None:
        raise InvalidInput("The task has no data.", field="task")
    if body.job is not None:
        job = session.get(Job, body.job)
        if job is None or job.task_id != task.id:
            raise InvalidInput(f"Job {body.job} is not in task {task.id}.", field="job")
    label_map = resolve(spec, task_labels(session, task), body.mapping)
    if not label_map:
        raise InvalidInput(
            f"None of the labels of {spec.id!r} ({', '.join(lb.name for lb in spec.labels)}) "
            "matches a task label; pass a 'mapping'.",
            field="mapping",
        )
    if running_for_task(session, task.id):
        raise Conflict("Only one running request is allowed for the same task.")
    row = request_service.new_request(
        session,
        ctx,
        OPERATION,
        "task",
        project_id=task.project_id,
        task_id=task.id,
        job_id=body.job,
        function_id=spec.id,
        params={**body.model_dump(mode="json"), ORIGIN: origin_of(ctx)},
    )
    request_service.launch_after_commit(session, row, launch)
    _record_call(
        session,
        ctx,
        spec.id,
        "batch",
        task,
        body.job,
        {"threshold": body.threshold, "cleanup": body.cleanup, "rq_id": row.id},
    )
    return _to_call(row)


def _record_call(
    session: Session,
    ctx: RequestContext,
    function_id: str,
    category: str,
    task: Task,
    job_id: int | None,
    parameters: dict[str, Any],
) -> None:
    """CVAT's ``call:function`` event (online calls: ``interactive``; whole-task: ``batch``)."""
    changes.record(
        session,
        changes.Change(
            action="call",
            resource="function",
            scope_ids=changes.Scope(
                org_id=task.organization_id,
                project_id=task.project_id,
                task_id=task.id,
                job_id=job_id,
            ),
            actor=changes.Actor.of(ctx),
            extra={
                "event": {
                    "obj_name": function_id,
                    "payload": {
                        "function": {"id": function_id},
                        "category": category,
                        "parameters": parameters,
                    },
                }
            },
        ),
    )


def running_for_task(session: Session, task_id: int) -> list[str]:
    """Ids of the task's queued or started whole-task runs."""
    return list(
        session.scalars(
            select(BackgroundRequest.id).where(
                BackgroundRequest.operation_type == OPERATION,
                BackgroundRequest.task_id == task_id,
                BackgroundRequest.status.in_(("queued", "started")),
            )
        )
    )


def _visible(session: Session, ctx: RequestContext) -> Any:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "request"), request_service.REQUEST_LIST.policy_paths
    )
    return select(BackgroundRequest).where(policy, BackgroundRequest.operation_type == OPERATION)


def list_requests(session: Session, ctx: RequestContext) -> list[FunctionCall]:
    """CVAT ``GET /api/lambda/requests``: a plain list (the caller's runs; all for admins)."""
    rows = session.scalars(_visible(session, ctx).order_by(BackgroundRequest.created_date.desc()))
    return [_to_call(r) for r in rows]


def _own(session: Session, ctx: RequestContext, request_id: str) -> BackgroundRequest:
    row: BackgroundRequest | None = session.scalar(
        _visible(session, ctx).where(BackgroundRequest.id == request_id)
    )
    if row is None:
        raise NotFound("Request not found.")
    return row


def retrieve_request(session: Session, ctx: RequestContext, request_id: str) -> FunctionCall:
    return _to_call(_own(session, ctx, request_id))


CANCELLED = "Cancelled by the user."


def cancel_request(session: Session, ctx: RequestContext, request_id: str) -> None:
    """CVAT ``DELETE /api/lambda/requests/{id}``: stop the run; what it saved stays."""
    row = _own(session, ctx, request_id)
    if row.status in ("finished", "failed"):
        return
    request_service.transition(session, row.id, "failed", message=CANCELLED)


def retrieve_status(session: Session, request_id: str) -> str:
    """The status of a run (its operator's view, no caller)."""
    row = session.get(BackgroundRequest, request_id)
    return row.status if row is not None else "gone"
