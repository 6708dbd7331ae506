"""``/api/events``: client events in, working time, and the events CSV export (CVAT 2.80).

- :func:`post_events`: CVAT's ``POST /api/events``. Only whitelisted client scopes; user and
  organization overwritten from the session; every time shifted by the client's clock skew;
  ``user:activity`` feeds the working time and is not stored; the batch's working time
  becomes ``send:working_time`` events. Rows go to the events outbox in the request's
  transaction.
- :func:`start_export` / :func:`legacy_export`: the export flows; :func:`run_export` is the
  ``export:events`` background work (the events sink's process runs it, with the CSV produced
  from ClickHouse by the caller: storage knows nothing of ClickHouse).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from cvat_ray.cluster.paths import safe_join
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import Resource, authorize
from cvat_ray.iam.principal import OrgContext, Principal
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import Database
from cvat_ray.storage.events import outbox
from cvat_ray.storage.events.rows import (
    CLIENT_SCOPES,
    USER_ACTIVITY,
    WORKING_TIME,
    Row,
    dumps,
    empty_row,
    epoch_ms,
)
from cvat_ray.storage.events.working_time import TimedEvent, compute
from cvat_ray.storage.media import cloud
from cvat_ray.storage.models import (
    BackgroundRequest,
    CloudStorage,
    Job,
    Organization,
    Project,
    Task,
)
from cvat_ray.storage.schemas.events import ClientEventsWrite, EventWrite, ExportParams
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.cloud_storages import access_for, destination
from cvat_ray.storage.services.requests import Submit

logger = logging.getLogger("cvat_ray.events")

EXPORT_EVENTS = "export:events"
EXPORTS_DIR = "exports"
# An export's file is kept this long after it finished (then the sweep removes it).
EXPORT_KEEP = timedelta(hours=24)


# ----------------------------------------------------------------------------- client events


def _events_resource() -> Resource:
    return Resource(kind="events")


def post_events(session: Session, ctx: RequestContext, body: ClientEventsWrite) -> bytes:
    """CVAT ``POST /api/events``: the validated body, echoed (201), as JSON bytes."""
    authorize(ctx.principal, ctx.org, "send:events", _events_resource())
    bad = sorted({e.scope for e in body.events if e.scope not in CLIENT_SCOPES})
    if bad:
        raise InvalidInput(
            {"events": [f"Unsupported event scope: {', '.join(bad)}."]},
        )
    received = datetime.now(UTC)
    skew_ms = epoch_ms(received) - epoch_ms(body.timestamp)
    email = outbox.names.get(session, "user", ctx.principal.user_id)
    principal = ctx.principal

    def row_of(event: EventWrite) -> Row:
        row = empty_row(event.scope, event.source or "client", epoch_ms(event.timestamp) + skew_ms)
        row.update(
            obj_name=event.obj_name,
            obj_id=event.obj_id,
            obj_val=event.obj_val,
            count=event.count,
            duration=event.duration or 0,
            project_id=event.project_id,
            task_id=event.task_id,
            job_id=event.job_id,
            user_id=principal.user_id,
            user_name=principal.username,
            user_email=email,
            org_id=ctx.org.org_id,
            org_slug=ctx.org.slug,
            payload=event.payload,
            access_token_id=principal.access_token_id,
            remote_addr=ctx.remote_addr or None,
        )
        return row

    rows = [row_of(e) for e in body.events if e.scope != USER_ACTIVITY]
    timed = [_timed(e, skew_ms) for e in body.events]
    previous = _timed(body.previous_event, skew_ms) if body.previous_event else None
    for wt in compute(timed, previous):
        job_id, task_id, project_id = wt.ids
        row = empty_row(WORKING_TIME, "server", wt.timestamp)
        row.update(
            count=1,
            duration=wt.ms,
            job_id=job_id,
            task_id=task_id,
            project_id=project_id,
            user_id=principal.user_id,
            user_name=principal.username,
            user_email=email,
            org_id=ctx.org.org_id,
            org_slug=ctx.org.slug,
            access_token_id=principal.access_token_id,
            remote_addr=ctx.remote_addr or None,
            payload=dumps({"working_time": wt.ms}),
        )
        rows.append(row)
    if outbox.enabled():
        outbox.add_rows(session, rows)
    return body.model_dump_json().encode()


def _timed(event: EventWrite, skew_ms: int) -> TimedEvent:
    return TimedEvent(
        scope=event.scope,
        timestamp=epoch_ms(event.timestamp) + skew_ms,
        duration=event.duration or 0,
        job_id=event.job_id,
        task_id=event.task_id,
        project_id=event.project_id,
    )


# ----------------------------------------------------------------------------- export


def row_scope(ctx: RequestContext) -> dict[str, int]:
    """The filters the caller's permissions force on an export (CVAT's events.rego filter)."""
    principal, org = ctx.principal, ctx.org
    if org.org_id is None:
        return {} if principal.is_admin else {"user_id": principal.user_id}
    if principal.is_admin:
        return {"org_id": org.org_id}
    role = principal.memberships.get(org.org_id)
    if role is None:
        raise PermissionDenied("You are not a member of this organization.")
    if role in ("owner", "maintainer"):
        return {"org_id": org.org_id}
    return {"org_id": org.org_id, "user_id": principal.user_id}


def _default_from(session: Session, params: ExportParams) -> datetime | None:
    if params.job_id is not None:
        return session.scalar(select(Job.created_date).where(Job.id == params.job_id))
    if params.task_id is not None:
        return session.scalar(select(Task.created_date).where(Task.id == params.task_id))
    if params.project_id is not None:
        return session.scalar(select(Project.created_date).where(Project.id == params.project_id))
    if params.org_id is not None:
        dates = [
            session.scalar(
                select(Organization.created_date).where(Organization.id == params.org_id)
            ),
            session.scalar(
                select(func.min(Project.created_date)).where(
                    Project.organization_id == params.org_id
                )
            ),
            session.scalar(
                select(func.min(Task.created_date)).where(Task.organization_id == params.org_id)
            ),
        ]
        known = [d if d.tzinfo else d.replace(tzinfo=UTC) for d in dates if d is not None]
        return min(known) if known else None
    return None


def export_filter(session: Session, ctx: RequestContext, params: ExportParams) -> dict[str, Any]:
    """Authorize an export and resolve its filter: forced row scope (403 on a conflicting
    parameter), ``from``/``to`` defaults, ``from > to`` refused."""
    authorize(ctx.principal, ctx.org, "dump:events", _events_resource())
    forced = row_scope(ctx)
    filters: dict[str, Any] = {}
    for name in ("org_id", "project_id", "task_id", "job_id", "user_id"):
        given = getattr(params, name)
        if name in forced:
            if given is not None and given != forced[name]:
                raise PermissionDenied(f"You may not export events of another {name[:-3]}.")
            filters[name] = forced[name]
        elif given is not None:
            filters[name] = given
    if params.from_ is not None and params.to is not None and params.from_ > params.to:
        raise InvalidInput("'from' must be before 'to'.", field="from")
    scoped = params.model_copy(update={"org_id": filters.get("org_id", params.org_id)})
    start = params.from_ or _default_from(session, scoped)
    end = params.to or datetime.now(UTC)
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    filters["from_ms"] = epoch_ms(start) if start is not None else 0
    filters["to_ms"] = epoch_ms(end)
    if filters["from_ms"] > filters["to_ms"]:
        raise InvalidInput("'from' must be before 'to'.", field="from")
    return filters


def _filename(params: ExportParams) -> str:
    name = params.filename or f"logs_{int(time.time())}.csv"
    # a cloud storage key may name folders ("exports/events.csv"); a local file's name may not
    parts = name.split("/") if params.location == "cloud_storage" else [name]
    if (
        "\\" in name
        or len(name) > 1024
        or len(parts[-1]) > 255
        or any(not part or part.startswith(".") or "/" in part for part in parts)
    ):
        raise InvalidInput("Invalid file name.", field="filename")
    return name if name.lower().endswith(".csv") else f"{name}.csv"


def _new_export(
    session: Session,
    ctx: RequestContext,
    params: ExportParams,
    submit: Submit,
    *,
    request_id: str | None = None,
    legacy: bool = False,
) -> BackgroundRequest:
    if legacy and params.location == "cloud_storage":
        raise InvalidInput(
            "The deprecated export flow cannot write to a cloud storage; use "
            "POST /api/events/export.",
            field="location",
        )
    filters = export_filter(session, ctx, params)
    cloud_id = None if params.cloud_storage_id is None else str(params.cloud_storage_id)
    dest = destination(session, ctx, params.location, cloud_id, None)
    row = request_service.new_request(
        session,
        ctx,
        EXPORT_EVENTS,
        "events",
        request_id=request_id,
        project_id=filters.get("project_id"),
        task_id=filters.get("task_id"),
        job_id=filters.get("job_id"),
        params={
            "filter": filters,
            "filename": _filename(params),
            "base_url": ctx.base_url,
            "legacy": legacy,
            "location": dest.location,
            "cloud_storage_id": dest.cloud_storage_id,
        },
    )
    request_service.launch_after_commit(session, row, submit)
    return row


def start_export(
    session: Session, ctx: RequestContext, params: ExportParams, submit: Submit
) -> str:
    """CVAT ``POST /api/events/export``: the request's id (202)."""
    return _new_export(session, ctx, params, submit).id


def _own_export(session: Session, ctx: RequestContext, request_id: str) -> BackgroundRequest:
    row = session.get(BackgroundRequest, request_id)
    if row is None or row.operation_type != EXPORT_EVENTS:
        raise NotFound("Unknown request id.")
    authorize(ctx.principal, ctx.org, "view", Resource(kind="request", owner_id=row.owner_id))
    return row


def export_file(settings: Settings, request_id: str) -> Path:
    root = safe_join(settings.analytics_dir, EXPORTS_DIR)
    return safe_join(root, f"{request_id}.csv")


def download_export(
    session: Session, ctx: RequestContext, request_id: str, settings: Settings
) -> tuple[Path, str]:
    """CVAT ``GET /api/events/download?rq_id=``: the finished export's file and name."""
    row = _own_export(session, ctx, request_id)
    if row.status != "finished":
        raise InvalidInput("The export is not finished.", field="rq_id")
    if (row.params or {}).get("location") == "cloud_storage":
        raise InvalidInput("This export was written to a cloud storage.", field="rq_id")
    path = export_file(settings, row.id)
    if not path.is_file():
        raise NotFound("The export's file is gone; export the events again.")
    return path, str(row.params.get("filename") or "events.csv")


# (status code, body or None for the file, the file, its name)
LegacyAnswer = tuple[int, dict[str, Any] | None, Path | None, str | None]


def legacy_export(
    session: Session,
    ctx: RequestContext,
    params: ExportParams,
    query_id: str | None,
    action: str | None,
    settings: Settings,
    submit: Submit,
) -> LegacyAnswer:
    """CVAT's deprecated ``GET /api/events?query_id=&action=download`` flow."""
    if action not in (None, "download"):
        authorize(ctx.principal, ctx.org, "dump:events", _events_resource())
        raise InvalidInput("Unexpected action specified for the request.", field="action")
    row = session.get(BackgroundRequest, query_id) if query_id else None
    if row is None or row.operation_type != EXPORT_EVENTS:
        try:
            wanted = str(uuid.UUID(query_id)) if query_id else None
        except ValueError:
            raise InvalidInput("query_id must be a UUID.", field="query_id") from None
        if wanted is not None and row is not None:
            raise Conflict("That query id is taken.")
        new = _new_export(session, ctx, params, submit, request_id=wanted, legacy=True)
        return 202, {"query_id": new.id}, None, None
    row = _own_export(session, ctx, row.id)
    if row.status in ("queued", "started"):
        return 202, {"query_id": row.id}, None, None
    if row.status == "failed":
        return 500, {"detail": row.message or "The export failed."}, None, None
    path = export_file(settings, row.id)
    if action is None:
        return 201, {"query_id": row.id}, None, None
    if not path.is_file():
        raise NotFound("The export's file is gone; export the events again.")
    # CVAT deletes the job once its file is downloaded
    name = str(row.params.get("filename") or "events.csv")
    session.delete(row)
    return 200, None, path, name


def run_export(
    db: Database,
    settings: Settings,
    request_id: str,
    worker: str,
    produce: Callable[[dict[str, Any]], Iterator[bytes]],
) -> None:
    """The ``export:events`` work: claim, write the CSV ``produce`` streams from ClickHouse
    into the request's file, finish with its ``result_url``, or, for a cloud storage, copy
    the file there as ``filename`` (the dataset exports' write path), remove it and finish
    without one; a failure fails the row."""
    with db.session() as session:
        if not request_service.claim(session, request_id, worker):
            return
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        params = dict(row.params or {})
    path = export_file(settings, request_id)
    partial = path.with_name(path.name + ".part")
    try:
        if not settings.analytics.enabled:
            raise RuntimeError("Analytics is turned off on this server.")
        path.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("wb") as fh:
            for chunk in produce(dict(params.get("filter") or {})):
                fh.write(chunk)
        if params.get("location") == "cloud_storage":
            _to_cloud(db, settings, params, partial)
        else:
            os.replace(partial, path)
    except Exception as exc:
        partial.unlink(missing_ok=True)
        logger.warning("events export %s failed: %s", request_id, exc)
        with db.session() as session:
            request_service.transition(
                session, request_id, "failed", message=f"Events export failed: {exc}"[:1000]
            )
        return
    base = str(params.get("base_url") or "")
    in_cloud = params.get("location") == "cloud_storage"
    with db.session() as session:
        request_service.transition(
            session,
            request_id,
            "finished",
            result_url=None if in_cloud else f"{base}/api/events/download?rq_id={request_id}",
        )
        row = session.get(BackgroundRequest, request_id)
        if row is not None:
            row.expiry_date = datetime.now(UTC) + EXPORT_KEEP


def _to_cloud(db: Database, settings: Settings, params: dict[str, Any], local: Path) -> None:
    with db.session() as session:
        storage = session.get(CloudStorage, params.get("cloud_storage_id"))
        if storage is None:
            raise InvalidInput("The cloud storage was deleted.")
        access = access_for(storage, settings)
    try:
        cloud.upload(access, str(params["filename"]), local, settings.cloud.timeout_s)
    finally:
        local.unlink(missing_ok=True)


def remove_stale_exports(db: Database, settings: Settings) -> int:
    """Delete export files whose request expired or is gone (run by every sweep)."""
    root = safe_join(settings.analytics_dir, EXPORTS_DIR)
    if not root.is_dir():
        return 0
    files = {p.name.split(".", 1)[0]: p for p in root.iterdir() if p.is_file()}
    if not files:
        return 0
    now = datetime.now(UTC)
    with db.session() as session:
        live = {
            rid
            for rid, expiry in session.execute(
                select(BackgroundRequest.id, BackgroundRequest.expiry_date).where(
                    BackgroundRequest.id.in_(list(files))
                )
            )
            if expiry is None or expiry > now
        }
    removed = 0
    for rid, path in files.items():
        if rid in live:
            continue
        if path.name.endswith(".part") and time.time() - path.stat().st_mtime < 3600:
            continue  # an export being written
        path.unlink(missing_ok=True)
        removed += 1
    return removed


# ----------------------------------------------------------------------------- the page


def check_analytics_access(session: Session, ctx: RequestContext) -> bool:
    """The built-in page's gate: admins and users with analytics access (403 otherwise)."""
    authorize(ctx.principal, ctx.org, "view", Resource(kind="analytics"))
    return True


def page_access(session: Session, principal: Principal | None) -> bool | None:
    """Whether the caller may see the built-in page (None: not logged in)."""
    if principal is None:
        return None
    try:
        authorize(principal, OrgContext(), "view", Resource(kind="analytics"))
    except PermissionDenied:
        return False
    return True


def _param_ms(name: str, value: str) -> int:
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            "An ISO 8601 time or milliseconds since the epoch.", field=name
        ) from None
    return epoch_ms(when if when.tzinfo else when.replace(tzinfo=UTC))


def dashboard_filter(
    session: Session, ctx: RequestContext, query: dict[str, str]
) -> dict[str, Any]:
    """Authorize the built-in page and read its filters (``from``/``to`` as ISO times or ms,
    ids, ``scope``, ``source``, ``bucket_ms``); the last 24 hours by default."""
    check_analytics_access(session, ctx)
    out: dict[str, Any] = {}
    for name in ("org_id", "project_id", "task_id", "job_id", "user_id", "bucket_ms"):
        value = (query.get(name) or "").strip()
        if value:
            if not value.isdigit() or len(value) > 19:
                raise InvalidInput("A valid integer is required.", field=name)
            out[name] = int(value)
    for name in ("scope", "source"):
        value = (query.get(name) or "").strip()
        if value:
            out[name] = value[:255]
    now = epoch_ms(datetime.now(UTC))
    out["to_ms"] = _param_ms("to", query["to"]) if query.get("to") else now
    out["from_ms"] = (
        _param_ms("from", query["from"]) if query.get("from") else out["to_ms"] - 86_400_000
    )
    if out["from_ms"] > out["to_ms"]:
        raise InvalidInput("'from' must be before 'to'.", field="from")
    return out
