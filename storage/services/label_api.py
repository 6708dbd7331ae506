"""``/api/labels``: list (by task, project or job), retrieve, partial update, delete.

A label is guarded by its parent: reading needs ``view`` on the task or project, changing it
needs ``update:desc`` there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.storage import changes
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Label, Project, Task
from cvat_ray.storage.query import (
    ListParams,
    ListSpec,
    apply_list_params,
    compile_policy,
    paginate,
    related,
)
from cvat_ray.storage.schemas.common import Page
from cvat_ray.storage.schemas.labels import LabelPatch, LabelRead
from cvat_ray.storage.services import labels as label_service
from cvat_ray.storage.services.projects import PROJECT_LIST
from cvat_ray.storage.services.resources import (
    get_job,
    get_project,
    get_task,
    job_resource,
    project_resource,
    task_resource,
)
from cvat_ray.storage.services.tasks import TASK_LIST, list_statement

LABEL_LIST = ListSpec(
    policy_paths={},
    fields={
        "id": Label.id,
        "name": Label.name,
        "parent": related(Label.name, Label.parent_id),
        "type": Label.type,
        "color": Label.color,
        "parent_id": Label.parent_id,
    },
    search_fields=("name", "parent"),
    sort_fields={
        "id": Label.id,
        "name": Label.name,
        "parent": related(Label.name, Label.parent_id),
        "type": Label.type,
        "color": Label.color,
        "parent_id": Label.parent_id,
    },
    default_sort=(Label.id.asc(),),
    simple_filters=("name", "parent", "type", "color", "parent_id"),
)


def _parent_resource(session: Session, label: Label) -> Resource:
    root = label
    if label.parent_id is not None:
        root = label_service.get_label(session, label.parent_id)
    if root.task_id is not None:
        return task_resource(session, get_task(session, root.task_id))
    assert root.project_id is not None
    return project_resource(get_project(session, root.project_id))


def _visible(session: Session, ctx: RequestContext) -> ColumnElement[bool]:
    """Labels of every task and project the caller may see, as SQL."""
    task_policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "task"), TASK_LIST.policy_paths
    )
    project_policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "project"), PROJECT_LIST.policy_paths
    )
    visible_tasks = list_statement().where(task_policy).with_only_columns(Task.id)
    visible_task_projects = (
        list_statement()
        .where(task_policy, Task.project_id.is_not(None))
        .with_only_columns(Task.project_id)
    )
    visible_projects = select(Project.id).where(project_policy)
    return or_(
        Label.task_id.in_(visible_tasks),
        Label.project_id.in_(visible_projects),
        Label.project_id.in_(visible_task_projects),
    )


def list_labels(
    session: Session,
    ctx: RequestContext,
    params: ListParams,
    *,
    task_id: int | None = None,
    project_id: int | None = None,
    job_id: int | None = None,
) -> Page[LabelRead]:
    if sum(x is not None for x in (task_id, project_id, job_id)) > 1:
        raise InvalidInput("Pass only one of task_id, project_id and job_id.", field="task_id")
    condition: Any
    if job_id is not None:
        job = get_job(session, job_id)
        authorize(ctx.principal, ctx.org, "view", job_resource(session, job))
        condition = label_service.owner_of(get_task(session, job.task_id)).condition()
    elif task_id is not None:
        task = get_task(session, task_id)
        authorize(ctx.principal, ctx.org, "view", task_resource(session, task))
        condition = label_service.owner_of(task).condition()
    elif project_id is not None:
        project = get_project(session, project_id)
        authorize(ctx.principal, ctx.org, "view", project_resource(project))
        condition = Label.project_id == project.id
    else:
        condition = _visible(session, ctx)
    stmt = select(Label).where(condition)
    if "parent_id" not in params.simple:
        stmt = stmt.where(Label.parent_id.is_(None))
    stmt = apply_list_params(stmt, LABEL_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=label_service.read_labels(session, [r[0] for r in rows]))


def retrieve_label(session: Session, ctx: RequestContext, label_id: int) -> LabelRead:
    label = label_service.get_label(session, label_id)
    authorize(ctx.principal, ctx.org, "view", _parent_resource(session, label))
    return label_service.read_labels(session, [label])[0]


def partial_update_label(
    session: Session, ctx: RequestContext, label_id: int, patch: LabelPatch
) -> LabelRead:
    label = label_service.get_label(session, label_id)
    authorize(ctx.principal, ctx.org, "update:desc", _parent_resource(session, label))
    owner = label_service.LabelOwner(
        task_id=label.task_id, project_id=label.project_id, actor=changes.Actor.of(ctx)
    )
    label_service.update_label(session, owner, label, patch)
    label_service.touch_owner(session, owner)
    session.flush()
    return label_service.read_labels(session, [label])[0]


def delete_label(session: Session, ctx: RequestContext, label_id: int) -> None:
    label = label_service.get_label(session, label_id)
    authorize(ctx.principal, ctx.org, "update:desc", _parent_resource(session, label))
    owner = label_service.LabelOwner(
        task_id=label.task_id, project_id=label.project_id, actor=changes.Actor.of(ctx)
    )
    label_service.record_label(session, owner, "delete", before=label_service.label_snapshot(label))
    session.delete(label)
    label_service.touch_owner(session, owner)
