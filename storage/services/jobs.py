"""Jobs: list, retrieve, partial update (assignee, stage, state)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.iam.authz import authorize, list_filter
from cvat_ray.storage.changes import Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Data, Job, Project, Segment, Task, User, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, compile_policy, paginate
from cvat_ray.storage.schemas.common import CountedLink, Link, Page
from cvat_ray.storage.schemas.jobs import JobPatch, JobRead
from cvat_ray.storage.services import recorded
from cvat_ray.storage.services.guides import guide_ids
from cvat_ray.storage.services.issues import issue_counts
from cvat_ray.storage.services.projects import check_assignee, storage_read
from cvat_ray.storage.services.resources import get_job, get_task, job_resource
from cvat_ray.storage.services.segments import job_status, refresh_task_status
from cvat_ray.storage.services.users import basic_users

_Assignee = aliased(User, name="job_assignee")
_Project = aliased(Project, name="job_project")

JOB_LIST = ListSpec(
    policy_paths={
        "assignee_id": Job.assignee_id,
        "organization_id": Task.organization_id,
        "task.owner_id": Task.owner_id,
        "task.assignee_id": Task.assignee_id,
        "project.owner_id": _Project.owner_id,
        "project.assignee_id": _Project.assignee_id,
    },
    fields={
        "id": Job.id,
        "task_id": Job.task_id,
        "project_id": Task.project_id,
        "task_name": Task.name,
        "project_name": _Project.name,
        "assignee": _Assignee.username,
        "state": Job.state,
        "stage": Job.stage,
        "type": Job.type,
        "dimension": Task.dimension,
        "media_type": Task.media_type,
        "mode": Task.mode,
        "parent_job_id": Job.parent_job_id,
        "updated_date": Job.updated_date,
    },
    search_fields=("task_name", "project_name", "assignee"),
    sort_fields={
        "id": Job.id,
        "task_id": Job.task_id,
        "project_id": Task.project_id,
        "task_name": Task.name,
        "project_name": _Project.name,
        "assignee": _Assignee.username,
        "state": Job.state,
        "stage": Job.stage,
        "type": Job.type,
        "dimension": Task.dimension,
        "media_type": Task.media_type,
        "mode": Task.mode,
        "parent_job_id": Job.parent_job_id,
        "updated_date": Job.updated_date,
    },
    default_sort=(Job.id.desc(),),
    simple_filters=(
        "task_id",
        "project_id",
        "task_name",
        "project_name",
        "assignee",
        "state",
        "stage",
        "type",
        "dimension",
        "media_type",
        "mode",
        "parent_job_id",
    ),
)


def _to_reads(
    session: Session, ctx: RequestContext, rows: Sequence[tuple[Job, Segment, Task]]
) -> list[JobRead]:
    users = basic_users(session, ctx, [job.assignee_id for job, _, _ in rows])
    projects: dict[int, str] = dict(
        session.execute(
            select(Project.id, Project.name).where(
                Project.id.in_({t.project_id for _, _, t in rows if t.project_id})
            )
        ).all()
    )
    data: dict[int, Data] = {
        d.id: d
        for d in session.scalars(
            select(Data).where(Data.id.in_({t.data_id for _, _, t in rows if t.data_id}))
        )
    }
    issues = issue_counts(session, [job.id for job, _, _ in rows])
    task_guides, project_guides = guide_ids(
        session, task_ids=[t.id for _, _, t in rows], project_ids=[t.project_id for _, _, t in rows]
    )
    reads = []
    for job, segment, task in rows:
        d = data.get(task.data_id) if task.data_id else None
        frame_count = (
            len(segment.frames)
            if segment.frames is not None
            else segment.stop_frame - segment.start_frame + 1
        )
        reads.append(
            JobRead(
                url=ctx.url(f"/api/jobs/{job.id}"),
                id=job.id,
                task_id=task.id,
                task_name=task.name,
                project_id=task.project_id,
                project_name=projects.get(task.project_id) if task.project_id else None,
                assignee=users.get(job.assignee_id) if job.assignee_id else None,
                assignee_updated_date=job.assignee_updated_date,
                dimension=task.dimension,
                media_type=task.media_type,
                bug_tracker=task.bug_tracker or None,
                status=job.status,
                stage=job.stage,
                state=job.state,
                mode=task.mode,
                frame_count=frame_count,
                start_frame=segment.start_frame,
                stop_frame=segment.stop_frame,
                data_chunk_size=d.chunk_size if d else None,
                data_compressed_chunk_type=d.compressed_chunk_type if d else None,
                data_original_chunk_type=d.original_chunk_type if d else None,
                created_date=job.created_date,
                updated_date=job.updated_date,
                issues=CountedLink(
                    url=ctx.url(f"/api/issues?job_id={job.id}"), count=issues.get(job.id, 0)
                ),
                labels=Link(url=ctx.url(f"/api/labels?job_id={job.id}")),
                type=job.type,
                organization=task.organization_id,
                source_storage=storage_read(task.source_storage),
                target_storage=storage_read(task.target_storage),
                parent_job_id=job.parent_job_id,
                guide_id=task_guides.get(task.id, project_guides.get(task.project_id or -1)),
            )
        )
    return reads


def _stmt() -> Any:
    return (
        select(Job, Segment, Task)
        .join(Segment, Segment.id == Job.segment_id)
        .join(Task, Task.id == Job.task_id)
        .outerjoin(_Project, _Project.id == Task.project_id)
        .outerjoin(_Assignee, _Assignee.id == Job.assignee_id)
    )


def list_jobs(session: Session, ctx: RequestContext, params: ListParams) -> Page[JobRead]:
    policy = compile_policy(list_filter(ctx.principal, ctx.org, "job"), JOB_LIST.policy_paths)
    stmt = apply_list_params(_stmt().where(policy), JOB_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_to_reads(session, ctx, [tuple(r) for r in rows]))


def _read_one(session: Session, ctx: RequestContext, job_id: int) -> JobRead:
    row = session.execute(_stmt().where(Job.id == job_id)).one()
    return _to_reads(session, ctx, [tuple(row)])[0]


def retrieve_job(session: Session, ctx: RequestContext, job_id: int) -> JobRead:
    job = get_job(session, job_id)
    authorize(ctx.principal, ctx.org, "view", job_resource(session, job))
    return _read_one(session, ctx, job.id)


def partial_update_job(
    session: Session, ctx: RequestContext, job_id: int, patch: JobPatch
) -> JobRead:
    job = get_job(session, job_id, for_update=True)
    before = _read_one(session, ctx, job.id)
    resource = job_resource(session, job)
    fields = patch.model_fields_set
    now = utcnow()
    for name in ("stage", "state"):
        if name in fields and getattr(patch, name) is None:
            raise InvalidInput("This field may not be null.", field=name)
    if not fields & {"assignee", "stage", "state"}:
        # Nothing to change: still only for those who may see the job.
        authorize(ctx.principal, ctx.org, "view", resource)
    if "assignee" in fields:
        authorize(ctx.principal, ctx.org, "update:assignee", resource)
        check_assignee(session, patch.assignee, resource.organization_id, "assignee")
        if patch.assignee != job.assignee_id:
            job.assignee_id = patch.assignee
            job.assignee_updated_date = now
    if patch.stage is not None:
        authorize(ctx.principal, ctx.org, "update:stage", resource)
        if patch.stage != job.stage:
            job.stage = patch.stage
            # CVAT: a new stage without an explicit state starts over as "new".
            if patch.state is None:
                job.state = "new"
    if patch.state is not None:
        authorize(ctx.principal, ctx.org, "update:state", resource)
        job.state = patch.state
    job.status = job_status(job.stage, job.state)
    job.updated_date = now
    task = get_task(session, job.task_id)
    refresh_task_status(session, task)
    task.updated_date = now
    session.flush()
    read = _read_one(session, ctx, job.id)
    recorded.record(
        session, ctx, "update", "job", after=read, before=before, scope=job_scope(task, job)
    )
    return read


def job_scope(task: Task, job: Job) -> Scope:
    return Scope(
        org_id=task.organization_id, project_id=task.project_id, task_id=task.id, job_id=job.id
    )


def record_created_jobs(session: Session, ctx: RequestContext, task: Task) -> None:
    """``create:job`` for each job of a task whose data was just attached."""
    rows = session.execute(_stmt().where(Job.task_id == task.id).order_by(Job.id)).all()
    reads = _to_reads(session, ctx, [tuple(r) for r in rows])
    for read, row in zip(reads, rows, strict=True):
        recorded.record(session, ctx, "create", "job", after=read, scope=job_scope(task, row[0]))


def record_deleted_jobs(session: Session, ctx: RequestContext, task: Task) -> None:
    """``delete:job`` for each job of a task about to be deleted (CVAT signals the cascade),
    with the snapshot taken before."""
    rows = session.execute(_stmt().where(Job.task_id == task.id).order_by(Job.id)).all()
    reads = _to_reads(session, ctx, [tuple(r) for r in rows])
    for read, row in zip(reads, rows, strict=True):
        recorded.record(session, ctx, "delete", "job", before=read, scope=job_scope(task, row[0]))
