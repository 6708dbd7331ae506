"""Loading projects, tasks and jobs, and describing them to the policy.

The one place that knows how an object relates to users (owner, assignee, project, task), so
every service asks the policy about the same facts, in the shape the Rego policies read.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import NotFound
from cvat_ray.iam.authz import Resource, person
from cvat_ray.storage.models import Job, Organization, Project, Task

M = TypeVar("M", Project, Task, Job, Organization)


def fetch(session: Session, model: type[M], object_id: int, *, for_update: bool = False) -> M:
    """The object, row-locked when ``for_update``, or a 404 naming its kind."""
    stmt = select(model).where(model.id == object_id)
    if for_update:
        stmt = stmt.with_for_update()
    found = session.scalar(stmt)
    if found is None:
        raise NotFound(f"{model.__name__} not found.")
    return found


def get_project(session: Session, project_id: int, *, for_update: bool = False) -> Project:
    return fetch(session, Project, project_id, for_update=for_update)


def get_task(session: Session, task_id: int, *, for_update: bool = False) -> Task:
    return fetch(session, Task, task_id, for_update=for_update)


def get_job(session: Session, job_id: int, *, for_update: bool = False) -> Job:
    return fetch(session, Job, job_id, for_update=for_update)


def project_owned_by(user_id: object) -> Any:
    """``project_id`` condition for policy path ``project.owner_id``: a subquery rather than a
    join condition, so the database can use the index on ``project_id``."""
    return select(Project.id).where(Project.owner_id == user_id)


def project_assigned_to(user_id: object) -> Any:
    return select(Project.id).where(Project.assignee_id == user_id)


def people(owner_id: int | None, assignee_id: int | None) -> dict[str, object]:
    return {"owner": person(owner_id), "assignee": person(assignee_id)}


def project_resource(project: Project) -> Resource:
    return Resource(
        kind="project",
        id=project.id,
        owner_id=project.owner_id,
        assignee_id=project.assignee_id,
        organization_id=project.organization_id,
    )


def new_task_in(project: Project) -> Resource:
    """A task about to be created in (or moved to) ``project``: ``create@project``."""
    return Resource(
        kind="task",
        organization_id=project.organization_id,
        facts={"project": people(project.owner_id, project.assignee_id)},
    )


def _project_people(session: Session, project_id: int | None) -> dict[str, object] | None:
    if project_id is None:
        return None
    row = session.execute(
        select(Project.owner_id, Project.assignee_id).where(Project.id == project_id)
    ).one()
    return people(row[0], row[1])


def task_resource(
    session: Session,
    task: Task,
    project_people: tuple[int | None, int | None] | None = None,
) -> Resource:
    """The task as the policy sees it; ``project_people`` (owner and assignee of its project)
    saves a query when the caller has them already."""
    if project_people is not None:
        project = people(*project_people) if task.project_id is not None else None
    else:
        project = _project_people(session, task.project_id)
    return Resource(
        kind="task",
        id=task.id,
        owner_id=task.owner_id,
        assignee_id=task.assignee_id,
        organization_id=task.organization_id,
        facts={"project": project},
    )


def job_resource(session: Session, job: Job) -> Resource:
    row = session.execute(
        select(
            Task.owner_id,
            Task.assignee_id,
            Task.organization_id,
            Project.owner_id,
            Project.assignee_id,
        )
        .outerjoin(Project, Project.id == Task.project_id)
        .where(Task.id == job.task_id)
    ).one()
    task_owner, task_assignee, org_id, project_owner, project_assignee = row
    return Resource(
        kind="job",
        id=job.id,
        assignee_id=job.assignee_id,
        organization_id=org_id,
        facts={
            "task": people(task_owner, task_assignee),
            "project": people(project_owner, project_assignee),
        },
    )
