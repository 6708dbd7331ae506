"""Loading projects, tasks and jobs, and describing them to the policy.

The one place that knows how an object relates to users (owner, assignee, project, task),
so every service asks the policy about the same facts.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cluster.errors import NotFound
from iam.authz import Resource
from iam.principal import Principal
from storage.models import Job, Project, Task


def get_project(session: Session, project_id: int, *, for_update: bool = False) -> Project:
    stmt = select(Project).where(Project.id == project_id)
    if for_update:
        stmt = stmt.with_for_update()
    project = session.scalar(stmt)
    if project is None:
        raise NotFound("Project not found.")
    return project


def get_task(session: Session, task_id: int, *, for_update: bool = False) -> Task:
    stmt = select(Task).where(Task.id == task_id)
    if for_update:
        stmt = stmt.with_for_update()
    task = session.scalar(stmt)
    if task is None:
        raise NotFound("Task not found.")
    return task


def get_job(session: Session, job_id: int, *, for_update: bool = False) -> Job:
    stmt = select(Job).where(Job.id == job_id)
    if for_update:
        stmt = stmt.with_for_update()
    job = session.scalar(stmt)
    if job is None:
        raise NotFound("Job not found.")
    return job


def project_resource(project: Project) -> Resource:
    return Resource(
        kind="project",
        id=project.id,
        owner_id=project.owner_id,
        assignee_id=project.assignee_id,
        organization_id=project.organization_id,
        project_owner_id=project.owner_id,
        project_assignee_id=project.assignee_id,
    )


def task_resource(
    session: Session,
    task: Task,
    principal: Principal,
    project_people: tuple[int | None, int | None] | None = None,
) -> Resource:
    """The task as the policy sees it. ``project_people`` (owner, assignee of its project)
    saves a query when the caller has them already. Whether the caller works on one of the
    task's jobs is looked up only when nothing else relates them."""
    project_owner = project_assignee = None
    if project_people is not None:
        project_owner, project_assignee = project_people
    elif task.project_id is not None:
        row = session.execute(
            select(Project.owner_id, Project.assignee_id).where(Project.id == task.project_id)
        ).one()
        project_owner, project_assignee = row
    me = principal.user_id
    job_assignees: frozenset[int] = frozenset()
    if not principal.is_admin and me not in (
        task.owner_id,
        task.assignee_id,
        project_owner,
        project_assignee,
    ):
        works_on_a_job = session.scalar(
            select(Job.id).where(Job.task_id == task.id, Job.assignee_id == me).limit(1)
        )
        if works_on_a_job is not None:
            job_assignees = frozenset({me})
    return Resource(
        kind="task",
        id=task.id,
        owner_id=task.owner_id,
        assignee_id=task.assignee_id,
        organization_id=task.organization_id,
        project_owner_id=project_owner,
        project_assignee_id=project_assignee,
        job_assignee_ids=job_assignees,
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
        task_owner_id=task_owner,
        task_assignee_id=task_assignee,
        project_owner_id=project_owner,
        project_assignee_id=project_assignee,
    )
