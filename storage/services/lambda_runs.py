"""The database side of a whole-task auto-annotation run, for the driver that runs the
model (``cvat_ray.actors.autoannotate``): what to read, where to write, progress and cancellation.

The run was authorized when its request was created (``lambda_functions.create_request``);
these functions act for it without a caller. Dataset runs are planned (and authorized, task
by task) here too: :func:`plan_dataset_run`.

``cleanup`` replaces the annotations of the run's jobs, and only when the run finishes:
:func:`load_run` notes the last annotation id of each table (under the jobs' lock, so no
writer is half-way), the run adds its output as it goes, and :func:`finish` deletes the jobs'
objects up to those ids in the transaction that marks the run finished. A run that fails or
is cancelled leaves the old annotations, and :func:`abandon` removes what it wrote (objects
with ``source: auto`` after the noted ids), so the jobs are as before the run. Objects that
users add or change while the run goes on are theirs: added ones stay, and old ones are
replaced all the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import Resource, authorize
from cvat_ray.storage import changes
from cvat_ray.storage.annotations import bulk
from cvat_ray.storage.annotations.merge import JobRange
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.functions.mapping import LabelMap, resolve, to_labeled_data
from cvat_ray.storage.functions.spec import FunctionSpec
from cvat_ray.storage.media.render import RenderPlan
from cvat_ray.storage.models import BackgroundRequest, Task, User
from cvat_ray.storage.schemas.lambda_ import DatasetRunRequest, FunctionCallRequest
from cvat_ray.storage.services import annotations as annotation_service
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.data_access import deleted_frames, frames_plan
from cvat_ray.storage.services.lambda_functions import (
    OPERATION,
    get_spec,
    running_for_task,
    task_labels,
)
from cvat_ray.storage.services.recorded import ORIGIN, background_actor
from cvat_ray.storage.services.resources import task_resource


@dataclass(frozen=True)
class RunPlan:
    request_id: str
    task_id: int
    job_id: int | None
    spec: FunctionSpec
    frames: list[int]
    # decodes frames[i] from ``plan.frames[i]``
    plan: RenderPlan
    label_map: LabelMap
    threshold: float
    cleanup: bool
    conv_mask_to_poly: bool
    roi: list[float] | None
    jobs: tuple[JobRange, ...]
    # cleanup runs: the last id of each of ``bulk.ALL_TABLES`` when the run started; the
    # jobs' objects up to them are what the run replaces
    replaces: tuple[int, ...] | None = None
    # who asked for the run (its annotation events name them)
    actor: changes.Actor = field(default_factory=changes.Actor)


def _job_frames(jobs: Sequence[JobRange]) -> list[int]:
    frames: set[int] = set()
    for job in jobs:
        frames.update(job.frames if job.frames is not None else range(job.start, job.stop + 1))
    return sorted(frames)


def load_run(session: Session, settings: Settings, request_id: str) -> RunPlan:
    """The plan of a claimed request (frames in order, deleted frames skipped)."""
    row = session.get(BackgroundRequest, request_id)
    if row is None or row.task_id is None or row.function_id is None:
        raise NotFound("The request is gone.")
    params = dict(row.params or {})
    origin = params.pop(ORIGIN, None) or {}
    body = FunctionCallRequest.model_validate(params)
    task = session.get(Task, row.task_id)
    if task is None:
        raise NotFound("The task was deleted.")
    spec = get_spec(session, row.function_id)
    jobs = annotation_service.run_jobs(session, task.id, row.job_id)
    skip = deleted_frames(session, task)
    frames = [f for f in _job_frames(jobs) if f not in skip]
    replaces = None
    if body.cleanup:
        annotation_service.lock_run_jobs(session, task.id, jobs)
        replaces = tuple(
            session.scalar(select(func.max(table.c.id))) or 0 for table in bulk.ALL_TABLES
        )
    return RunPlan(
        request_id=request_id,
        task_id=task.id,
        job_id=row.job_id,
        spec=spec,
        frames=frames,
        plan=frames_plan(session, task, settings, frames),
        label_map=resolve(spec, task_labels(session, task), body.mapping),
        threshold=0.5 if body.threshold is None else body.threshold,
        cleanup=body.cleanup,
        conv_mask_to_poly=body.conv_mask_to_poly,
        roi=body.roi,
        jobs=tuple(jobs),
        replaces=replaces,
        actor=background_actor(session, row, origin),
    )


def _delete_run_rows(session: Session, run: RunPlan, *, old: bool) -> None:
    """``old``: the jobs' objects the run replaces; else what the run wrote."""
    if run.replaces is None or not run.jobs:
        return
    annotation_service.lock_run_jobs(session, run.task_id, run.jobs)
    job_ids = [j.id for j in run.jobs]
    for table, mark in zip(bulk.ALL_TABLES, run.replaces, strict=True):
        mine = (table.c.id > mark) & (table.c.source == "auto")
        session.execute(
            delete(table).where(table.c.job_id.in_(job_ids), table.c.id <= mark if old else mine)
        )


def save(
    session: Session, run: RunPlan, results: Sequence[tuple[int, list[dict[str, Any]]]]
) -> tuple[int, list[str]]:
    """Write model output of some frames; returns (objects written, dropped reasons)."""
    task = session.get(Task, run.task_id)
    if task is None:
        raise NotFound("The task was deleted.")
    data = to_labeled_data(results, run.label_map, roi=run.roi)
    return annotation_service.add_model_annotations(
        session, task, run.jobs, data, run.actor, run.job_id
    )


def report(session: Session, request_id: str, progress: float, message: str) -> bool:
    """Record progress of a started run; False when it is not running any more (cancelled)."""
    result = session.execute(
        update(BackgroundRequest)
        .where(BackgroundRequest.id == request_id, BackgroundRequest.status == "started")
        .values(progress=min(1.0, max(0.0, progress)), message=message)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish(session: Session, run: RunPlan, message: str) -> bool:
    """Mark the run finished unless it was cancelled meanwhile (then False, nothing
    changed). A cleanup run's old annotations are deleted in the same transaction."""
    row = session.scalar(
        select(BackgroundRequest).where(BackgroundRequest.id == run.request_id).with_for_update()
    )
    if row is None or row.status != "started":
        return False
    _delete_run_rows(session, run, old=True)
    request_service.transition(session, run.request_id, "finished", message=message)
    return True


def abandon(session: Session, run: RunPlan) -> None:
    """A cleanup run that will not finish (cancelled, failed): remove what it wrote, so the
    jobs hold their annotations as before the run. Other runs keep what they saved."""
    _delete_run_rows(session, run, old=False)


def fail(session: Session, request_id: str, message: str, run: RunPlan | None = None) -> None:
    """Fail the request (unless it ended already) and :func:`abandon` the run, if loaded."""
    request_service.fail_if_unfinished(session, request_id, message)
    if run is not None:
        abandon(session, run)


# ---------------------------------------------------------------------------------- datasets


def default_run_name(
    function_id: str,
    task_ids: Sequence[int] = (),
    project_id: int | None = None,
    organization: str | None = None,
) -> str:
    """The name of a dataset run when none is given: the same function and scope give the
    same name, so submitting the same run again resumes it."""
    import hashlib

    if task_ids:
        scope = "tasks=" + ",".join(map(str, sorted(task_ids)))
    elif project_id is not None:
        scope = f"project={project_id}"
    else:
        scope = f"organization={organization}"
    digest = hashlib.sha256(f"{function_id}|{scope}".encode()).hexdigest()[:10]
    return f"{function_id}-{digest}"


def dataset_argv(
    function_id: str,
    *,
    task_ids: Sequence[int] = (),
    project_id: int | None = None,
    organization: str | None = None,
    threshold: float | None = None,
    cleanup: bool = False,
    run: str | None = None,
    owner: str | None = None,
) -> list[str]:
    """The arguments of ``python -m cvat_ray.actors.dataset_run`` for a dataset run (the API and
    the CLI submit the same job)."""
    argv = ["--function", function_id]
    for task_id in task_ids:
        argv += ["--task", str(task_id)]
    if project_id is not None:
        argv += ["--project", str(project_id)]
    if organization is not None:
        argv += ["--organization", organization]
    if threshold is not None:
        argv += ["--threshold", str(threshold)]
    if cleanup:
        argv.append("--cleanup")
    if run:
        argv += ["--run", run]
    if owner:
        argv += ["--owner", owner]
    return argv


@dataclass(frozen=True)
class DatasetTask:
    task_id: int
    name: str
    # "run": to annotate; "done": annotated by an earlier attempt of the same run;
    # "no data": nothing to annotate
    state: str


def dataset_tasks(
    session: Session,
    *,
    task_ids: Sequence[int] = (),
    project_id: int | None = None,
    organization: str | None = None,
    function_id: str,
    run: str,
) -> list[DatasetTask]:
    """The tasks of a dataset run, in id order, with what is left to do."""
    from sqlalchemy import select

    from cvat_ray.storage.models import Organization

    stmt = select(Task.id, Task.name, Task.data_id).order_by(Task.id)
    if task_ids:
        stmt = stmt.where(Task.id.in_(list(task_ids)))
    elif project_id is not None:
        stmt = stmt.where(Task.project_id == project_id)
    elif organization is not None:
        org_id = session.scalar(select(Organization.id).where(Organization.slug == organization))
        if org_id is None:
            raise NotFound(f"No organization {organization!r}.")
        stmt = stmt.where(Task.organization_id == org_id)
    rows = session.execute(stmt).all()
    if task_ids:
        missing = sorted(set(task_ids) - {r.id for r in rows})
        if missing:
            raise NotFound(f"No tasks with ids {', '.join(map(str, missing))}.")
    done = set(
        session.scalars(
            select(BackgroundRequest.task_id).where(
                BackgroundRequest.operation_type == OPERATION,
                BackgroundRequest.function_id == function_id,
                BackgroundRequest.status == "finished",
                BackgroundRequest.params["run"].as_string() == run,
            )
        )
    )
    return [
        DatasetTask(
            r.id, r.name, "done" if r.id in done else ("no data" if r.data_id is None else "run")
        )
        for r in rows
    ]


def new_dataset_request(
    session: Session,
    *,
    owner_id: int | None,
    task_id: int,
    function_id: str,
    run: str,
    params: dict[str, Any],
) -> str:
    """A request row for one task of a dataset run (as its operator, no caller). Requests of
    the same run left unfinished by an interrupted attempt are failed first."""
    for request_id in running_for_task(session, task_id):
        request_service.transition(
            session, request_id, "failed", message="Interrupted; a new attempt took over."
        )
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"Task {task_id} was deleted.")
    body = FunctionCallRequest.model_validate({**params, "function": function_id, "task": task_id})
    row = request_service.add_request(
        session,
        OPERATION,
        "task",
        owner_id=owner_id,
        organization_id=task.organization_id,
        project_id=task.project_id,
        task_id=task_id,
        function_id=function_id,
        params=body.model_dump(mode="json") | {"run": run},
    )
    return row.id


@dataclass(frozen=True)
class DatasetRunPlan:
    """A dataset run the caller may start: the arguments of ``cvat_ray.actors.dataset_run``."""

    run: str
    function: str
    tasks: int
    to_annotate: int
    argv: list[str]


def plan_dataset_run(
    session: Session, ctx: RequestContext, body: DatasetRunRequest
) -> DatasetRunPlan:
    """``POST /api/lambda/runs``: the caller needs ``call:offline`` and, on every task of
    the scope, ``update:annotations`` (the first task refused is named).

    The job gets the ids of the tasks authorized here, never the scope: a task added to the
    project or organization before the job starts is not annotated without a check. The run's
    name still comes from the scope, so submitting the same scope again resumes it."""
    authorize(ctx.principal, ctx.org, "call:offline", Resource(kind="lambda"))
    spec = get_spec(session, body.function)
    if spec.kind != "detector":
        raise InvalidInput(
            f"The function {spec.id!r} is a {spec.kind}; dataset runs take detectors.",
            field="function",
        )
    run = body.run or default_run_name(body.function, body.tasks, body.project, body.organization)
    tasks = dataset_tasks(
        session,
        task_ids=body.tasks,
        project_id=body.project,
        organization=body.organization,
        function_id=spec.id,
        run=run,
    )
    if not tasks:
        raise InvalidInput("The scope holds no tasks.", field="tasks")
    for item in tasks:
        task = session.get(Task, item.task_id)
        assert task is not None
        authorize(ctx.principal, ctx.org, "update:annotations", task_resource(session, task))
    user = session.get(User, ctx.principal.user_id)
    assert user is not None
    argv = dataset_argv(
        spec.id,
        task_ids=[t.task_id for t in tasks],
        threshold=body.threshold,
        cleanup=body.cleanup,
        run=run,
        owner=user.username,
    )
    return DatasetRunPlan(
        run=run,
        function=spec.id,
        tasks=len(tasks),
        to_annotate=sum(1 for t in tasks if t.state == "run"),
        argv=argv,
    )
