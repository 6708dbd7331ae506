"""Quality-control settings of tasks and projects (CVAT's ``/api/quality/settings``).

Every task and project has one settings row, made with CVAT's defaults the first time it is
asked for. Reading needs ``view`` on the task or project, changing ``update:desc`` (CVAT maps
them so). Only the settings exist here so far: ground-truth jobs, comparisons and reports
come later.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, exists, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.iam.authz import authorize, list_filter
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import Project, QualitySettings, Task, utcnow
from cvat_ray.storage.query import (
    AnySelect,
    ListParams,
    ListSpec,
    apply_list_params,
    compile_policy,
    paginate,
    validate_filter,
)
from cvat_ray.storage.schemas.common import Page
from cvat_ray.storage.schemas.quality import (
    DEFAULT_PARAMS,
    JOB_FILTER_FIELDS,
    QualitySettingsPatch,
)
from cvat_ray.storage.schemas.quality import QualitySettings as QualitySettingsRead
from cvat_ray.storage.services.jobs import JOB_LIST
from cvat_ray.storage.services.projects import PROJECT_LIST
from cvat_ray.storage.services.resources import (
    get_project,
    get_task,
    project_resource,
    task_resource,
)
from cvat_ray.storage.services.tasks import TASK_LIST

_FIELDS = {
    "id": QualitySettings.id,
    "task_id": QualitySettings.task_id,
    "project_id": QualitySettings.project_id,
    "inherit": QualitySettings.inherit,
    "created_date": QualitySettings.created_date,
    "updated_date": QualitySettings.updated_date,
}
QUALITY_SETTINGS_LIST = ListSpec(
    policy_paths={},
    fields=_FIELDS,
    search_fields=(),
    sort_fields=_FIELDS,
    default_sort=(QualitySettings.id.asc(),),
    simple_filters=("inherit", "task_id"),
)


def _ensure(session: Session, rows: AnySelect) -> None:
    """Create the default settings of the targets ``rows`` selects (``task_id, project_id``)
    that have none; concurrent callers are fine (the insert skips existing targets)."""
    now = utcnow()
    source = rows.add_columns(
        literal(True).label("inherit"),
        literal({}, QualitySettings.params.type).label("params"),
        literal(now, QualitySettings.created_date.type).label("created_date"),
        literal(now, QualitySettings.updated_date.type).label("updated_date"),
    )
    columns = ["task_id", "project_id", "inherit", "params", "created_date", "updated_date"]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(QualitySettings).from_select(columns, source).on_conflict_do_nothing())


def _missing_for_tasks(condition: ColumnElement[bool]) -> AnySelect:
    rows: AnySelect = select(Task.id, literal(None).label("project_id")).where(
        condition, ~exists().where(QualitySettings.task_id == Task.id)
    )
    return rows


def _missing_for_project(project_id: int) -> AnySelect:
    rows: AnySelect = select(literal(None).label("task_id"), Project.id).where(
        Project.id == project_id, ~exists().where(QualitySettings.project_id == Project.id)
    )
    return rows


def _read(row: QualitySettings) -> QualitySettingsRead:
    return QualitySettingsRead(
        id=row.id,
        task_id=row.task_id,
        project_id=row.project_id,
        inherit=row.inherit,
        created_date=row.created_date,
        updated_date=row.updated_date,
        **{**DEFAULT_PARAMS, **row.params},
    )


def _parse_id(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError as exc:
        raise InvalidInput("A valid integer is required.", field=field) from exc
    if not 0 <= number <= 2_147_483_647:
        raise InvalidInput("A valid integer is required.", field=field)
    return number


def list_quality_settings(
    session: Session,
    ctx: RequestContext,
    params: ListParams,
    project_id: int | None,
    parent_type: str | None,
) -> Page[QualitySettingsRead]:
    """CVAT ``GET /api/quality/settings``: ``task_id`` or ``project_id`` (with the settings of
    the project's tasks unless ``parent_type`` says otherwise), or everything visible."""
    task_id = _parse_id(params.simple.get("task_id"), "task_id")
    visible_tasks = select(Task.id).where(
        compile_policy(list_filter(ctx.principal, ctx.org, "task"), TASK_LIST.policy_paths)
    )
    visible_projects = select(Project.id).where(
        compile_policy(list_filter(ctx.principal, ctx.org, "project"), PROJECT_LIST.policy_paths)
    )
    stmt = select(QualitySettings)
    if task_id is not None:
        authorize(
            ctx.principal, ctx.org, "view", task_resource(session, get_task(session, task_id))
        )
        _ensure(session, _missing_for_tasks(Task.id == task_id))
    if project_id is not None:
        project = get_project(session, project_id)
        authorize(ctx.principal, ctx.org, "view", project_resource(project))
        _ensure(session, _missing_for_project(project.id))
        _ensure(session, _missing_for_tasks(Task.project_id == project.id))
        in_project = [QualitySettings.project_id == project.id]
        if parent_type != "project":
            in_project.append(
                QualitySettings.task_id.in_(select(Task.id).where(Task.project_id == project.id))
            )
        stmt = stmt.where(or_(*in_project))
    if parent_type == "task":
        stmt = stmt.where(QualitySettings.task_id.is_not(None))
    elif parent_type == "project":
        stmt = stmt.where(QualitySettings.project_id.is_not(None))
    stmt = stmt.where(
        or_(
            QualitySettings.task_id.in_(visible_tasks),
            QualitySettings.project_id.in_(visible_projects),
        )
    )
    stmt = apply_list_params(stmt, QUALITY_SETTINGS_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=[_read(r[0]) for r in rows])


def _get(session: Session, ctx: RequestContext, settings_id: int, scope: str) -> QualitySettings:
    row = session.get(QualitySettings, settings_id)
    if row is None:
        raise NotFound("Quality settings not found.")
    if row.task_id is not None:
        resource = task_resource(session, get_task(session, row.task_id))
    else:
        assert row.project_id is not None
        resource = project_resource(get_project(session, row.project_id))
    authorize(ctx.principal, ctx.org, scope, resource)
    return row


def retrieve_quality_settings(
    session: Session, ctx: RequestContext, settings_id: int
) -> QualitySettingsRead:
    """CVAT ``GET /api/quality/settings/{id}``."""
    return _read(_get(session, ctx, settings_id, "view"))


def partial_update_quality_settings(
    session: Session, ctx: RequestContext, settings_id: int, patch: QualitySettingsPatch
) -> QualitySettingsRead:
    """CVAT ``PATCH /api/quality/settings/{id}``."""
    row = _get(session, ctx, settings_id, "update:desc")
    changes = patch.model_dump(exclude_none=True)
    if changes.get("job_filter"):
        fields = {name: JOB_LIST.fields[name] for name in JOB_FILTER_FIELDS}
        validate_filter(changes["job_filter"], fields, "job_filter")
    if "inherit" in changes:
        row.inherit = changes.pop("inherit")
    row.params = {**row.params, **changes}
    row.updated_date = utcnow()
    session.flush()
    return _read(row)
