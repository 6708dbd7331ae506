"""Annotation guides: one markdown text per task or per project, shown to annotators.

Guarded by CVAT's ``annotationguides`` table: the guide's target (its task or project) gives
the owner and assignee relations, and an assignee of one of the target's jobs may read it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.iam.authz import Resource, authorize, person
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import after_commit
from cvat_ray.storage.models import AnnotationGuide, Asset, Job, Project, Task, utcnow
from cvat_ray.storage.query import Column
from cvat_ray.storage.schemas.guides import GuidePatch, GuideRead, GuideWrite
from cvat_ray.storage.services.asset_files import remove_files
from cvat_ray.storage.services.resources import get_project, get_task, people
from cvat_ray.storage.services.users import basic_users

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def task_guide_id(task_id: Column) -> ColumnElement[Any]:
    """The id of the guide of the task ``task_id`` (a column), for read queries."""
    value: ColumnElement[Any] = (
        select(AnnotationGuide.id).where(AnnotationGuide.task_id == task_id).scalar_subquery()
    )
    return value


def guide_ids(
    session: Session, *, task_ids: Iterable[int] = (), project_ids: Iterable[int | None] = ()
) -> tuple[dict[int, int], dict[int, int]]:
    """Guide ids by task and by project, in one query (a job shows its task's guide, or its
    project's)."""
    tasks, projects = set(task_ids), {p for p in project_ids if p is not None}
    by_task: dict[int, int] = {}
    by_project: dict[int, int] = {}
    if not tasks and not projects:
        return by_task, by_project
    rows = session.execute(
        select(AnnotationGuide.id, AnnotationGuide.task_id, AnnotationGuide.project_id).where(
            or_(AnnotationGuide.task_id.in_(tasks), AnnotationGuide.project_id.in_(projects))
        )
    )
    for guide_id, task_id, project_id in rows:
        if task_id is not None:
            by_task[task_id] = guide_id
        if project_id is not None:
            by_project[project_id] = guide_id
    return by_task, by_project


def guide_resource(session: Session, ctx: RequestContext, target: Task | Project) -> Resource:
    """The guide of ``target`` as the policy sees it."""
    tasks = (
        select(Task.id).where(Task.id == target.id)
        if isinstance(target, Task)
        else select(Task.id).where(Task.project_id == target.id)
    )
    assigned = session.scalar(
        select(exists().where(Job.task_id.in_(tasks), Job.assignee_id == ctx.principal.user_id))
    )
    return Resource(
        kind="annotationguide",
        organization_id=target.organization_id,
        facts={
            "target": people(target.owner_id, target.assignee_id),
            "job": {"assignee": person(ctx.principal.user_id) if assigned else None},
        },
    )


def _target(session: Session, guide: AnnotationGuide) -> Task | Project:
    if guide.task_id is not None:
        return get_task(session, guide.task_id)
    assert guide.project_id is not None
    return get_project(session, guide.project_id)


def get_guide(session: Session, ctx: RequestContext, guide_id: int, scope: str) -> AnnotationGuide:
    """The guide, once the caller may ``scope`` it (a 404 or 403 otherwise)."""
    guide = session.get(AnnotationGuide, guide_id)
    if guide is None:
        raise NotFound("Annotation guide not found.")
    authorize(ctx.principal, ctx.org, scope, guide_resource(session, ctx, _target(session, guide)))
    return guide


def _read(session: Session, ctx: RequestContext, guide: AnnotationGuide) -> GuideRead:
    owners = basic_users(session, ctx, [guide.owner_id])
    return GuideRead(
        id=guide.id,
        task_id=guide.task_id,
        project_id=guide.project_id,
        owner=owners.get(guide.owner_id) if guide.owner_id is not None else None,
        created_date=guide.created_date,
        updated_date=guide.updated_date,
        markdown=guide.markdown,
    )


def create_guide(session: Session, ctx: RequestContext, data: GuideWrite) -> GuideRead:
    """CVAT ``POST /api/guides``: the guide of a task or of a project (one each)."""
    if (data.task_id is None) == (data.project_id is None):
        raise InvalidInput("Pass either task_id or project_id.", field="non_field_errors")
    target: Task | Project
    if data.task_id is not None:
        target, field = get_task(session, data.task_id), "task_id"
        taken = select(AnnotationGuide.id).where(AnnotationGuide.task_id == target.id)
    else:
        assert data.project_id is not None
        target, field = get_project(session, data.project_id), "project_id"
        taken = select(AnnotationGuide.id).where(AnnotationGuide.project_id == target.id)
    authorize(ctx.principal, ctx.org, "create", guide_resource(session, ctx, target))
    if session.scalar(taken) is not None:
        raise InvalidInput(f"This {field[:-3]} already has an annotation guide.", field=field)
    now = utcnow()
    guide = AnnotationGuide(
        task_id=data.task_id,
        project_id=data.project_id,
        owner_id=ctx.principal.user_id,
        markdown=data.markdown,
        created_date=now,
        updated_date=now,
    )
    session.add(guide)
    session.flush()
    return _read(session, ctx, guide)


def retrieve_guide(session: Session, ctx: RequestContext, guide_id: int) -> GuideRead:
    """CVAT ``GET /api/guides/{id}``."""
    return _read(session, ctx, get_guide(session, ctx, guide_id, "view"))


def partial_update_guide(
    session: Session, ctx: RequestContext, guide_id: int, patch: GuidePatch, data_dir: Path
) -> GuideRead:
    """CVAT ``PATCH /api/guides/{id}``: new markdown. Images the text no longer mentions are
    deleted with it, as CVAT does (the editor uploads an image before it is linked)."""
    guide = get_guide(session, ctx, guide_id, "update")
    if patch.markdown is not None and patch.markdown != guide.markdown:
        guide.markdown = patch.markdown
        mentioned = set(_UUID.findall(patch.markdown.lower()))
        unused = [
            a
            for a in session.scalars(select(Asset).where(Asset.guide_id == guide.id))
            if a.uuid not in mentioned
        ]
        for asset in unused:
            session.delete(asset)
        if unused:
            uuids = [a.uuid for a in unused]
            after_commit(session, lambda: remove_files(data_dir, uuids))
    guide.updated_date = utcnow()
    session.flush()
    return _read(session, ctx, guide)


def delete_guide(session: Session, ctx: RequestContext, guide_id: int, data_dir: Path) -> None:
    """CVAT ``DELETE /api/guides/{id}``: with its images."""
    guide = get_guide(session, ctx, guide_id, "delete")
    uuids = list(session.scalars(select(Asset.uuid).where(Asset.guide_id == guide.id)))
    session.delete(guide)
    session.flush()
    after_commit(session, lambda: remove_files(data_dir, uuids))
