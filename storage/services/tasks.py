"""Tasks: create, list, retrieve, partial update, delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, bindparam, cast, delete, func, null, select
from sqlalchemy.orm import Session, aliased

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.storage.changes import Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Data, Job, Project, Task, User, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, compile_policy, paginate
from cvat_ray.storage.schemas.common import BasicUser, Link, Page
from cvat_ray.storage.schemas.tasks import JobsSummary, TaskPatch, TaskRead, TaskWrite
from cvat_ray.storage.services import labels as label_service
from cvat_ray.storage.services import projects as project_service
from cvat_ray.storage.services import recorded
from cvat_ray.storage.services.guides import task_guide_id
from cvat_ray.storage.services.jobs import record_deleted_jobs
from cvat_ray.storage.services.projects import (
    check_assignee,
    move_to_organization,
    storage_json,
    storage_read,
)
from cvat_ray.storage.services.resources import (
    get_task,
    new_task_in,
    project_assigned_to,
    project_owned_by,
    task_resource,
)
from cvat_ray.storage.services.users import require_user

_Owner = aliased(User, name="task_owner")
_Assignee = aliased(User, name="task_assignee")
_Project = aliased(Project, name="task_project")


TASK_LIST = ListSpec(
    policy_paths={
        "owner_id": Task.owner_id,
        "assignee_id": Task.assignee_id,
        "organization_id": Task.organization_id,
        "project.owner_id": lambda uid: Task.project_id.in_(project_owned_by(uid)),
        "project.assignee_id": lambda uid: Task.project_id.in_(project_assigned_to(uid)),
    },
    fields={
        "id": Task.id,
        "name": Task.name,
        "owner": _Owner.username,
        "assignee": _Assignee.username,
        "project_id": Task.project_id,
        "project_name": _Project.name,
        "status": Task.status,
        "mode": Task.mode,
        "dimension": Task.dimension,
        "media_type": Task.media_type,
        "subset": Task.subset,
        "tracker_link": Task.bug_tracker,
        "updated_date": Task.updated_date,
        # no validation (ground-truth) modes yet: every task's is null
        "validation_mode": cast(null(), String(16)),
    },
    search_fields=("name", "owner", "assignee", "project_name", "subset", "tracker_link"),
    sort_fields={
        "id": Task.id,
        "name": Task.name,
        "owner": _Owner.username,
        "assignee": _Assignee.username,
        "project_id": Task.project_id,
        "project_name": _Project.name,
        "status": Task.status,
        "mode": Task.mode,
        "dimension": Task.dimension,
        "media_type": Task.media_type,
        "subset": Task.subset,
        "tracker_link": Task.bug_tracker,
        "updated_date": Task.updated_date,
        "validation_mode": cast(null(), String(16)),
    },
    default_sort=(Task.id.desc(),),
    simple_filters=(
        "name",
        "owner",
        "assignee",
        "project_id",
        "project_name",
        "status",
        "mode",
        "dimension",
        "media_type",
        "subset",
        "tracker_link",
        "validation_mode",
    ),
)


def _jobs(*conditions: ColumnElement[bool]) -> Any:
    return (
        select(func.count(Job.id))
        .where(Job.task_id == Task.id, *conditions)
        .correlate(Task)
        .scalar_subquery()
    )


# Everything a TaskRead needs, in one row per task (one query per page).
_READ_COLUMNS = (
    _Owner.username.label("owner_username"),
    _Owner.first_name.label("owner_first_name"),
    _Owner.last_name.label("owner_last_name"),
    _Assignee.username.label("assignee_username"),
    _Assignee.first_name.label("assignee_first_name"),
    _Assignee.last_name.label("assignee_last_name"),
    _Project.name.label("project_name"),
    _Project.owner_id.label("project_owner_id"),
    _Project.assignee_id.label("project_assignee_id"),
    Data.size.label("data_size"),
    Data.chunk_size.label("data_chunk_size"),
    Data.image_quality.label("data_image_quality"),
    Data.compressed_chunk_type.label("data_compressed_chunk_type"),
    Data.original_chunk_type.label("data_original_chunk_type"),
    Data.cloud_storage_id.label("data_cloud_storage_id"),
    _jobs().label("jobs_count"),
    _jobs(Job.status == "completed").label("jobs_completed"),
    _jobs(Job.stage == "validation").label("jobs_validation"),
    task_guide_id(Task.id).label("guide_id"),
)


def list_statement() -> Any:
    """Tasks with their owner, assignee, project, data record and job counts."""
    return (
        select(Task, *_READ_COLUMNS)
        .outerjoin(_Owner, _Owner.id == Task.owner_id)
        .outerjoin(_Assignee, _Assignee.id == Task.assignee_id)
        .outerjoin(_Project, _Project.id == Task.project_id)
        .outerjoin(Data, Data.id == Task.data_id)
    )


def _user(ctx: RequestContext, user_id: int | None, row: Any, prefix: str) -> BasicUser | None:
    if user_id is None:
        return None
    return BasicUser(
        url=ctx.url(f"/api/users/{user_id}"),
        id=user_id,
        username=getattr(row, f"{prefix}_username"),
        first_name=getattr(row, f"{prefix}_first_name"),
        last_name=getattr(row, f"{prefix}_last_name"),
    )


def _to_read(ctx: RequestContext, row: Any) -> TaskRead:
    t: Task = row.Task
    has_data = t.data_id is not None
    return TaskRead(
        url=ctx.url(f"/api/tasks/{t.id}"),
        id=t.id,
        name=t.name,
        project_id=t.project_id,
        project_name=row.project_name,
        mode=t.mode,
        owner=_user(ctx, t.owner_id, row, "owner"),
        assignee=_user(ctx, t.assignee_id, row, "assignee"),
        assignee_updated_date=t.assignee_updated_date,
        bug_tracker=t.bug_tracker,
        created_date=t.created_date,
        updated_date=t.updated_date,
        overlap=t.overlap,
        segment_size=t.segment_size,
        status=t.status,
        data_chunk_size=row.data_chunk_size,
        data_compressed_chunk_type=row.data_compressed_chunk_type,
        data_original_chunk_type=row.data_original_chunk_type,
        data_cloud_storage_id=row.data_cloud_storage_id,
        image_quality=row.data_image_quality if has_data else 70,
        data=t.data_id,
        dimension=t.dimension,
        media_type=t.media_type,
        subset=t.subset,
        organization=t.organization_id,
        organization_id=t.organization_id,
        size=row.data_size or 0,
        source_storage=storage_read(t.source_storage),
        target_storage=storage_read(t.target_storage),
        jobs=JobsSummary(
            url=ctx.url(f"/api/jobs?task_id={t.id}"),
            count=row.jobs_count,
            completed=row.jobs_completed,
            validation=row.jobs_validation,
        ),
        labels=Link(url=ctx.url(f"/api/labels?task_id={t.id}")),
        guide_id=row.guide_id,
        consensus_enabled=t.consensus_replicas > 0,
        initial_replicas=t.consensus_replicas,
    )


_READ_ONE = list_statement().where(Task.id == bindparam("task_id"))


def _read_row(session: Session, task_id: int) -> Any:
    row = session.execute(_READ_ONE, {"task_id": task_id}).first()
    if row is None:
        raise NotFound("Task not found.")
    return row


def _read_one(session: Session, ctx: RequestContext, task_id: int) -> TaskRead:
    return _to_read(ctx, _read_row(session, task_id))


def _project_for_task(session: Session, project_id: int, field: str) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise InvalidInput(f"Project {project_id} does not exist.", field=field)
    return project


def create_task(session: Session, ctx: RequestContext, data: TaskWrite) -> TaskRead:
    org_id = ctx.org.org_id
    project: Project | None = None
    if data.project_id is not None:
        project = _project_for_task(session, data.project_id, "project_id")
        authorize(ctx.principal, ctx.org, "create@project", new_task_in(project))
        org_id = project.organization_id
        if data.labels:
            raise InvalidInput(
                "A task in a project uses the project's labels; do not pass labels.",
                field="labels",
            )
    else:
        authorize(ctx.principal, ctx.org, "create", Resource(kind="task"))
        if not data.labels:
            raise InvalidInput("Label set or project_id must be present.", field="labels")
    owner_id = data.owner_id if data.owner_id is not None else ctx.principal.user_id
    if data.owner_id is not None:
        check_assignee(session, owner_id, org_id, "owner_id")
    check_assignee(session, data.assignee_id, org_id, "assignee_id")
    now = utcnow()
    task = Task(
        name=data.name,
        project_id=data.project_id,
        owner_id=owner_id,
        assignee_id=data.assignee_id,
        assignee_updated_date=now if data.assignee_id else None,
        bug_tracker=data.bug_tracker,
        overlap=data.overlap,
        segment_size=data.segment_size,
        subset=data.subset,
        consensus_replicas=data.consensus_replicas,
        organization_id=org_id,
        source_storage=storage_json(data.source_storage),
        target_storage=storage_json(data.target_storage),
        created_date=now,
        updated_date=now,
    )
    session.add(task)
    session.flush()
    if project is None:
        label_service.create_labels(session, label_service.LabelOwner(task_id=task.id), data.labels)
    else:
        project.updated_date = now
    read = _read_one(session, ctx, task.id)
    recorded.record(session, ctx, "create", "task", after=read, scope=task_scope(task))
    return read


def task_scope(task: Task) -> Scope:
    return Scope(org_id=task.organization_id, project_id=task.project_id, task_id=task.id)


def task_reads(session: Session, ctx: RequestContext, tasks: list[Task]) -> list[TaskRead]:
    return [_read_one(session, ctx, t.id) for t in tasks]


def _record_project_tasks(session: Session, ctx: RequestContext, project: Project) -> None:
    """The tasks deleted with their project, each as ``delete:task`` (CVAT signals the
    cascade)."""
    tasks = list(session.scalars(select(Task).where(Task.project_id == project.id)))
    for read, task in zip(task_reads(session, ctx, tasks), tasks, strict=True):
        record_deleted_jobs(session, ctx, task)
        recorded.record(session, ctx, "delete", "task", before=read, scope=task_scope(task))


def delete_project(session: Session, ctx: RequestContext, project_id: int) -> None:
    """``DELETE /api/projects/{id}``: the project and its tasks, each task's deletion
    recorded as a domain change too."""
    project_service.delete_project(session, ctx, project_id, on_delete=_record_project_tasks)


def list_tasks(session: Session, ctx: RequestContext, params: ListParams) -> Page[TaskRead]:
    policy = compile_policy(list_filter(ctx.principal, ctx.org, "task"), TASK_LIST.policy_paths)
    stmt = apply_list_params(list_statement().where(policy), TASK_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=[_to_read(ctx, r) for r in rows])


def retrieve_task(session: Session, ctx: RequestContext, task_id: int) -> TaskRead:
    row = _read_row(session, task_id)
    people = (row.project_owner_id, row.project_assignee_id)
    authorize(ctx.principal, ctx.org, "view", task_resource(session, row.Task, people))
    return _to_read(ctx, row)


def partial_update_task(
    session: Session, ctx: RequestContext, task_id: int, patch: TaskPatch
) -> TaskRead:
    task = get_task(session, task_id, for_update=True)
    before = _read_one(session, ctx, task.id)
    old_scope = task_scope(task)
    resource = task_resource(session, task)
    fields = patch.model_fields_set
    moves = ("project_id" in fields and patch.project_id != task.project_id) or (
        "organization_id" in fields and patch.organization_id != task.organization_id
    )
    # CVAT: a PATCH that names no field with a scope of its own (or only fields that keep
    # their value) is checked as a description update.
    scoped = fields & {"source_storage", "target_storage", "owner_id", "assignee_id"}
    if fields & {"name", "bug_tracker", "labels", "subset"} or not (scoped or moves):
        authorize(ctx.principal, ctx.org, "update:desc", resource)
    if fields & {"source_storage", "target_storage"}:
        authorize(ctx.principal, ctx.org, "update:associated_storage", resource)
    if "owner_id" in fields:
        authorize(ctx.principal, ctx.org, "update:owner", resource)
        if patch.owner_id is None:
            raise InvalidInput("This field may not be null.", field="owner_id")
        require_user(session, patch.owner_id, "owner_id")
        task.owner_id = patch.owner_id
    if "assignee_id" in fields:
        authorize(ctx.principal, ctx.org, "update:assignee", resource)
        check_assignee(session, patch.assignee_id, task.organization_id, "assignee_id")
        if patch.assignee_id != task.assignee_id:
            task.assignee_id = patch.assignee_id
            task.assignee_updated_date = utcnow()
    if "project_id" in fields and patch.project_id != task.project_id:
        _move_to_project(session, ctx, task, resource, patch.project_id)
    if "organization_id" in fields and patch.organization_id != task.organization_id:
        if task.project_id is not None:
            raise InvalidInput(
                "A task in a project moves with its project.", field="organization_id"
            )
        move_to_organization(session, ctx, resource, patch.organization_id)
        task.organization_id = patch.organization_id
    if patch.labels:
        if task.project_id is not None:
            raise InvalidInput("This task uses its project's labels.", field="labels")
        label_service.patch_labels(session, label_service.LabelOwner(task_id=task.id), patch.labels)
    for name in ("name", "bug_tracker", "subset"):
        value = getattr(patch, name)
        if value is not None:
            setattr(task, name, value)
    if "source_storage" in fields:
        task.source_storage = storage_json(patch.source_storage)
    if "target_storage" in fields:
        task.target_storage = storage_json(patch.target_storage)
    task.updated_date = utcnow()
    session.flush()
    read = _read_one(session, ctx, task.id)
    new_scope = task_scope(task)
    moved = new_scope.org_id != old_scope.org_id
    if moved:  # as CVAT tells a move: gone from the old organization, new in the other
        old_org, new_org = Scope(org_id=old_scope.org_id), Scope(org_id=new_scope.org_id)
        recorded.record(session, ctx, "delete", "task", before=before, scope=old_org)
        recorded.record(session, ctx, "create", "task", after=read, scope=new_org)
    scope = Scope(project_id=task.project_id, task_id=task.id) if moved else new_scope
    recorded.record(session, ctx, "update", "task", after=read, before=before, scope=scope)
    return read


def _move_to_project(
    session: Session, ctx: RequestContext, task: Task, resource: Resource, project_id: int | None
) -> None:
    """Move a task into a project. Its labels are matched to the project's by name (all must
    exist there) and then dropped; its annotations are re-pointed to the project's ids."""
    authorize(ctx.principal, ctx.org, "update:project", resource)
    if project_id is None:
        raise InvalidInput("A task cannot be taken out of its project.", field="project_id")
    if task.project_id is not None:
        raise InvalidInput("The task already belongs to a project.", field="project_id")
    project = _project_for_task(session, project_id, "project_id")
    authorize(ctx.principal, ctx.org, "create@project", new_task_in(project))
    if project.organization_id != task.organization_id:
        raise InvalidInput("The project belongs to another organization.", field="project_id")
    label_service.move_task_labels(session, task.id, project.id)
    task.project_id = project.id
    project.updated_date = utcnow()


def delete_task(session: Session, ctx: RequestContext, task_id: int) -> None:
    """Deletes the task with its data record, segments, jobs and labels."""
    task = get_task(session, task_id, for_update=True)
    authorize(ctx.principal, ctx.org, "delete", task_resource(session, task))
    record_deleted_jobs(session, ctx, task)
    recorded.record(
        session,
        ctx,
        "delete",
        "task",
        before=_read_one(session, ctx, task.id),
        scope=task_scope(task),
    )
    data_id = task.data_id
    session.delete(task)
    session.flush()
    if data_id is not None:
        session.execute(delete(Data).where(Data.id == data_id))
