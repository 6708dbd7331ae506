"""Projects: create, list, retrieve, partial update, delete."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, aliased

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.storage.changes import Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Data, Membership, Project, Task, User, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, compile_policy, paginate
from cvat_ray.storage.schemas.common import CountedLink, Link, Page, StorageRead, StorageWrite
from cvat_ray.storage.schemas.projects import ProjectPatch, ProjectRead, ProjectWrite
from cvat_ray.storage.services import labels as label_service
from cvat_ray.storage.services import recorded
from cvat_ray.storage.services.guides import guide_ids
from cvat_ray.storage.services.resources import get_project, project_resource
from cvat_ray.storage.services.users import basic_users, require_user

_Owner = aliased(User, name="project_owner")
_Assignee = aliased(User, name="project_assignee")

PROJECT_LIST = ListSpec(
    policy_paths={
        "owner_id": Project.owner_id,
        "assignee_id": Project.assignee_id,
        "organization_id": Project.organization_id,
    },
    fields={
        "id": Project.id,
        "name": Project.name,
        "owner": _Owner.username,
        "assignee": _Assignee.username,
        "status": Project.status,
        "updated_date": Project.updated_date,
    },
    search_fields=("name", "owner", "assignee"),
    sort_fields={
        "id": Project.id,
        "name": Project.name,
        "owner": _Owner.username,
        "assignee": _Assignee.username,
        "status": Project.status,
        "updated_date": Project.updated_date,
    },
    default_sort=(Project.id.desc(),),
    simple_filters=("name", "owner", "assignee", "status"),
)


def storage_json(value: StorageWrite | None) -> dict[str, Any] | None:
    return value.model_dump() if value is not None else None


def storage_read(value: dict[str, Any] | None) -> StorageRead | None:
    return StorageRead.model_validate(value) if value else None


def check_assignee(session: Session, user_id: int | None, org_id: int | None, field: str) -> None:
    """An assignee must exist and, inside an organization, be one of its members."""
    if user_id is None:
        return
    require_user(session, user_id, field)
    if org_id is not None:
        member = session.scalar(
            select(Membership.id).where(
                Membership.user_id == user_id,
                Membership.organization_id == org_id,
                Membership.is_active.is_(True),
            )
        )
        if member is None:
            raise InvalidInput("The user is not a member of the organization.", field=field)


def _to_reads(
    session: Session, ctx: RequestContext, projects: Sequence[Project]
) -> list[ProjectRead]:
    ids = [p.id for p in projects]
    users = basic_users(session, ctx, [u for p in projects for u in (p.owner_id, p.assignee_id)])
    task_counts: dict[int, int] = dict(
        session.execute(  # type: ignore[arg-type]
            select(Task.project_id, func.count())
            .where(Task.project_id.in_(ids))
            .group_by(Task.project_id)
        ).all()
    )
    _, guides = guide_ids(session, project_ids=ids)
    subsets: dict[int, list[str]] = {i: [] for i in ids}
    for pid, subset in session.execute(
        select(Task.project_id, Task.subset)
        .where(Task.project_id.in_(ids), Task.subset != "")
        .distinct()
        .order_by(Task.subset)
    ):
        if pid is not None:
            subsets[pid].append(subset)
    return [
        ProjectRead(
            url=ctx.url(f"/api/projects/{p.id}"),
            id=p.id,
            name=p.name,
            owner=users.get(p.owner_id) if p.owner_id else None,
            assignee=users.get(p.assignee_id) if p.assignee_id else None,
            assignee_updated_date=p.assignee_updated_date,
            bug_tracker=p.bug_tracker,
            task_subsets=subsets[p.id],
            created_date=p.created_date,
            updated_date=p.updated_date,
            status=p.status,
            dimension="2d" if task_counts.get(p.id) else None,
            organization=p.organization_id,
            organization_id=p.organization_id,
            source_storage=storage_read(p.source_storage),
            target_storage=storage_read(p.target_storage),
            tasks=CountedLink(
                url=ctx.url(f"/api/tasks?project_id={p.id}"), count=task_counts.get(p.id, 0)
            ),
            labels=Link(url=ctx.url(f"/api/labels?project_id={p.id}")),
            guide_id=guides.get(p.id),
        )
        for p in projects
    ]


def create_project(session: Session, ctx: RequestContext, data: ProjectWrite) -> ProjectRead:
    authorize(ctx.principal, ctx.org, "create", Resource(kind="project"))
    org_id = ctx.org.org_id
    # The creator may name another owner (CVAT's owner_id), who must be allowed in the org.
    owner_id = data.owner_id if data.owner_id is not None else ctx.principal.user_id
    if data.owner_id is not None:
        check_assignee(session, owner_id, org_id, "owner_id")
    check_assignee(session, data.assignee_id, org_id, "assignee_id")
    now = utcnow()
    project = Project(
        name=data.name,
        owner_id=owner_id,
        assignee_id=data.assignee_id,
        assignee_updated_date=now if data.assignee_id else None,
        bug_tracker=data.bug_tracker,
        organization_id=org_id,
        source_storage=storage_json(data.source_storage),
        target_storage=storage_json(data.target_storage),
        created_date=now,
        updated_date=now,
    )
    session.add(project)
    session.flush()
    label_service.create_labels(
        session, label_service.LabelOwner(project_id=project.id), data.labels
    )
    read = _to_reads(session, ctx, [project])[0]
    recorded.record(session, ctx, "create", "project", after=read, scope=project_scope(project))
    return read


def list_projects(session: Session, ctx: RequestContext, params: ListParams) -> Page[ProjectRead]:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "project"), PROJECT_LIST.policy_paths
    )
    stmt = (
        select(Project)
        .outerjoin(_Owner, _Owner.id == Project.owner_id)
        .outerjoin(_Assignee, _Assignee.id == Project.assignee_id)
        .where(policy)
    )
    stmt = apply_list_params(stmt, PROJECT_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_to_reads(session, ctx, [r[0] for r in rows]))


def retrieve_project(session: Session, ctx: RequestContext, project_id: int) -> ProjectRead:
    project = get_project(session, project_id)
    authorize(ctx.principal, ctx.org, "view", project_resource(project))
    return _to_reads(session, ctx, [project])[0]


def partial_update_project(
    session: Session, ctx: RequestContext, project_id: int, patch: ProjectPatch
) -> ProjectRead:
    project = get_project(session, project_id, for_update=True)
    before = _to_reads(session, ctx, [project])[0]
    old_scope = project_scope(project)
    resource = project_resource(project)
    fields = patch.model_fields_set
    moves = "organization_id" in fields and patch.organization_id != project.organization_id
    # CVAT: a PATCH that names no field with a scope of its own (or only fields that keep
    # their value) is checked as a description update.
    scoped = fields & {"source_storage", "target_storage", "owner_id", "assignee_id"}
    if fields & {"name", "bug_tracker", "labels"} or not (scoped or moves):
        authorize(ctx.principal, ctx.org, "update:desc", resource)
    if fields & {"source_storage", "target_storage"}:
        authorize(ctx.principal, ctx.org, "update:associated_storage", resource)
    if "owner_id" in fields:
        authorize(ctx.principal, ctx.org, "update:owner", resource)
        if patch.owner_id is None:
            raise InvalidInput("This field may not be null.", field="owner_id")
        require_user(session, patch.owner_id, "owner_id")
        project.owner_id = patch.owner_id
    if "assignee_id" in fields:
        authorize(ctx.principal, ctx.org, "update:assignee", resource)
        check_assignee(session, patch.assignee_id, project.organization_id, "assignee_id")
        if patch.assignee_id != project.assignee_id:
            project.assignee_id = patch.assignee_id
            project.assignee_updated_date = utcnow()
    if "organization_id" in fields and patch.organization_id != project.organization_id:
        move_to_organization(session, ctx, resource, patch.organization_id)
        project.organization_id = patch.organization_id
        session.execute(
            update(Task)
            .where(Task.project_id == project.id)
            .values(organization_id=patch.organization_id)
        )
    if patch.name is not None:
        project.name = patch.name
    if patch.bug_tracker is not None:
        project.bug_tracker = patch.bug_tracker
    if "source_storage" in fields:
        project.source_storage = storage_json(patch.source_storage)
    if "target_storage" in fields:
        project.target_storage = storage_json(patch.target_storage)
    if patch.labels:
        label_service.patch_labels(
            session, label_service.LabelOwner(project_id=project.id), patch.labels
        )
    project.updated_date = utcnow()
    session.flush()
    read = _to_reads(session, ctx, [project])[0]
    new_scope = project_scope(project)
    moved = new_scope.org_id != old_scope.org_id
    if moved:
        # moved between workspaces, as CVAT tells it: gone from the old organization,
        # created in the new one (the organizations' webhooks only)
        old_org, new_org = Scope(org_id=old_scope.org_id), Scope(org_id=new_scope.org_id)
        recorded.record(session, ctx, "delete", "project", before=before, scope=old_org)
        recorded.record(session, ctx, "create", "project", after=read, scope=new_org)
    # a move is an update for the project's own webhooks only
    scope = Scope(project_id=project.id) if moved else new_scope
    recorded.record(session, ctx, "update", "project", after=read, before=before, scope=scope)
    return read


def move_to_organization(
    session: Session, ctx: RequestContext, resource: Resource, org_id: int | None
) -> None:
    """Moving a project or task between workspaces: the caller must own it (or be an org
    maintainer where it is) and be a maintainer or owner of the target organization."""
    authorize(ctx.principal, ctx.org, "update:organization", resource)
    if org_id is None or ctx.principal.is_admin:
        return
    role = ctx.principal.memberships.get(org_id)
    if role not in ("owner", "maintainer"):
        raise InvalidInput(
            "You must be an owner or maintainer of the target organization.",
            field="organization_id",
        )


def project_scope(project: Project) -> Scope:
    return Scope(org_id=project.organization_id, project_id=project.id)


def delete_project(
    session: Session,
    ctx: RequestContext,
    project_id: int,
    on_delete: Callable[[Session, RequestContext, Project], None] | None = None,
) -> None:
    """Deletes the project with its tasks, their jobs and labels; nothing else.
    ``on_delete`` runs once it is authorized, before anything is deleted (the tasks service
    records the tasks that go with it: :func:`cvat_ray.storage.services.tasks.delete_project`)."""
    project = get_project(session, project_id, for_update=True)
    authorize(ctx.principal, ctx.org, "delete", project_resource(project))
    if on_delete is not None:
        on_delete(session, ctx, project)
    recorded.record(
        session,
        ctx,
        "delete",
        "project",
        before=_to_reads(session, ctx, [project])[0],
        scope=project_scope(project),
    )
    data_ids = [
        d for d in session.scalars(select(Task.data_id).where(Task.project_id == project.id)) if d
    ]
    session.delete(project)
    session.flush()
    if data_ids:
        session.execute(delete(Data).where(Data.id.in_(data_ids)))
