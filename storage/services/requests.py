"""Background requests: the rows actors move ``queued -> started -> finished | failed``.

The API reads the row, never the actor. Transitions are checked, so a retried actor cannot
move a finished request back, and progress is clamped to 0..1. Services write a queued row and
hand it to a :data:`Submit` callable after commit (storage never imports the runners: the
caller passes the launcher's ``submit`` in); ``worker`` names the runner that claimed a row, so
a sweep can tell a row whose runner died from one that is merely slow.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, null, select, update
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import Conflict, NotFound
from cvat_ray.iam.authz import Resource, authorize, list_filter
from cvat_ray.storage.changes import Actor
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import after_commit
from cvat_ray.storage.events import outbox
from cvat_ray.storage.events.rows import exception_row
from cvat_ray.storage.models import BackgroundRequest, Organization, User, utcnow
from cvat_ray.storage.query import (
    ListParams,
    ListSpec,
    apply_list_params,
    compile_policy,
    paginate,
    related,
    split_part,
)
from cvat_ray.storage.schemas.common import Page
from cvat_ray.storage.schemas.requests import RequestOperation, RequestOwner, RequestRead

_TRANSITIONS = {
    "queued": {"started", "failed"},
    "started": {"finished", "failed"},
    "finished": set(),
    "failed": set(),
}

REQUEST_LIST = ListSpec(
    policy_paths={"owner_id": BackgroundRequest.owner_id},
    fields={
        # operation_type is "<action>:<target or subresource>" ("create:task", "export:dataset")
        "action": split_part(BackgroundRequest.operation_type, ":", 1),
        "subresource": case(
            (
                split_part(BackgroundRequest.operation_type, ":", 1).in_(("import", "export")),
                split_part(BackgroundRequest.operation_type, ":", 2),
            ),
            else_=null(),
        ),
        "org": related(Organization.slug, BackgroundRequest.organization_id),
        "org_id": BackgroundRequest.organization_id,
        "target": BackgroundRequest.target,
        "status": BackgroundRequest.status,
        "format": BackgroundRequest.format,
        "task_id": BackgroundRequest.task_id,
        "job_id": BackgroundRequest.job_id,
        "project_id": BackgroundRequest.project_id,
        "function_id": BackgroundRequest.function_id,
    },
    search_fields=(),
    sort_fields={
        "action": split_part(BackgroundRequest.operation_type, ":", 1),
        "created_date": BackgroundRequest.created_date,
        "status": BackgroundRequest.status,
    },
    default_sort=(BackgroundRequest.created_date.desc(),),
    simple_filters=(
        "action",
        "subresource",
        "target",
        "status",
        "format",
        "task_id",
        "job_id",
        "project_id",
        "function_id",
    ),
)


def new_request(
    session: Session,
    ctx: RequestContext,
    operation_type: str,
    target: str,
    **fields: Any,
) -> BackgroundRequest:
    """A queued request of the caller, in the caller's organization context (``request_id``
    among ``fields`` picks its id: CVAT's deprecated events export names its query)."""
    return add_request(
        session,
        operation_type,
        target,
        owner_id=ctx.principal.user_id,
        organization_id=ctx.org.org_id,
        **fields,
    )


def add_request(
    session: Session,
    operation_type: str,
    target: str,
    *,
    owner_id: int | None,
    organization_id: int | None,
    project_id: int | None = None,
    task_id: int | None = None,
    job_id: int | None = None,
    format: str | None = None,
    function_id: str | None = None,
    params: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> BackgroundRequest:
    """A queued request row (work started by an operator has no caller)."""
    row = BackgroundRequest(
        id=request_id or str(uuid.uuid4()),
        operation_type=operation_type,
        target=target,
        project_id=project_id,
        task_id=task_id,
        job_id=job_id,
        format=format,
        function_id=function_id,
        owner_id=owner_id,
        organization_id=organization_id,
        params=params or {},
        created_date=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


# ``submit(request_id, operation_type)``: runs the request in the background (a launcher's).
Submit = Callable[[str, str], None]


def launch_after_commit(session: Session, row: BackgroundRequest, submit: Submit) -> None:
    """Hand the request to ``submit`` (the launcher's) once the row is committed."""
    request_id, operation_type = row.id, row.operation_type
    after_commit(session, lambda: submit(request_id, operation_type))


def claim(session: Session, request_id: str, worker: str) -> bool:
    """Move a queued request to ``started`` for ``worker``; False when it is not queued any
    more (another worker took it, or it was cancelled). One conditional UPDATE, so two
    workers racing for the same request cannot both win, on any database."""
    now = utcnow()
    result = session.execute(
        update(BackgroundRequest)
        .where(BackgroundRequest.id == request_id, BackgroundRequest.status == "queued")
        .values(status="started", started_date=now, worker=worker, progress=0.0)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def stale_queued(
    session: Session, operation_types: Sequence[str], before: datetime
) -> list[tuple[str, str]]:
    """``(id, operation type)`` of the requests of these types queued since before
    ``before``: their hand-over may have been lost."""
    rows = session.execute(
        select(BackgroundRequest.id, BackgroundRequest.operation_type)
        .where(
            BackgroundRequest.operation_type.in_(list(operation_types)),
            BackgroundRequest.status == "queued",
            BackgroundRequest.created_date < before,
        )
        .order_by(BackgroundRequest.created_date)
    )
    return [(r.id, r.operation_type) for r in rows]


def started_requests(
    session: Session, operation_types: Sequence[str]
) -> list[tuple[str, str, str | None]]:
    """``(id, operation type, worker)`` of the started requests of these types."""
    rows = session.execute(
        select(
            BackgroundRequest.id, BackgroundRequest.operation_type, BackgroundRequest.worker
        ).where(
            BackgroundRequest.operation_type.in_(list(operation_types)),
            BackgroundRequest.status == "started",
        )
    )
    return [(r.id, r.operation_type, r.worker) for r in rows]


def fail_started(session: Session, request_id: str, worker: str, reason: str) -> bool:
    """Fail the request if ``worker`` still holds it started (a sweep that found the worker
    dead); False when it moved on meanwhile."""
    row = session.scalar(
        select(BackgroundRequest).where(BackgroundRequest.id == request_id).with_for_update()
    )
    if row is None or row.status != "started" or row.worker != worker:
        return False
    transition(session, request_id, "failed", message=reason)
    return True


def fail_orphans(session: Session, worker: str, reason: str) -> list[str]:
    """Fail the started requests of ``worker`` (called by a worker that has just (re)started:
    whatever its name still holds was left half done by a process that died)."""
    ids = list(
        session.scalars(
            select(BackgroundRequest.id).where(
                BackgroundRequest.worker == worker, BackgroundRequest.status == "started"
            )
        )
    )
    for request_id in ids:
        transition(session, request_id, "failed", message=reason)
    return ids


def fail_if_unfinished(session: Session, request_id: str, reason: str) -> bool:
    row = session.get(BackgroundRequest, request_id)
    if row is None or row.status in ("finished", "failed"):
        return False
    transition(session, request_id, "failed", message=reason)
    return True


def transition(
    session: Session,
    request_id: str,
    status: str,
    *,
    message: str | None = None,
    progress: float | None = None,
    result_url: str | None = None,
    result_id: int | None = None,
    report: bool = True,
) -> BackgroundRequest:
    """Move a request to ``status``; raises Conflict for an illegal transition. A request
    that fails becomes a ``send:exception`` analytics event (unless ``report`` is False: a
    cancellation is no failure)."""
    row = session.scalar(
        select(BackgroundRequest).where(BackgroundRequest.id == request_id).with_for_update()
    )
    if row is None:
        raise NotFound("Request not found.")
    if status != row.status and status not in _TRANSITIONS[row.status]:
        raise Conflict(f"A {row.status} request cannot become {status}.")
    now = utcnow()
    completed = status in ("finished", "failed") and status != row.status
    if status == "started" and row.started_date is None:
        row.started_date = now
    if status == "failed" and row.status != "failed" and report and outbox.enabled():
        outbox.add_rows(session, [_failure_event(row, message)])
    if status in ("finished", "failed"):
        row.finished_date = now
        if status == "finished":
            row.progress = 1.0
    row.status = status
    if message is not None:
        row.message = message
    if progress is not None:
        row.progress = min(1.0, max(0.0, progress))
    if result_url is not None:
        row.result_url = result_url
    if result_id is not None:
        row.result_id = result_id
    if completed:
        _record_completed(session, row)
    return row


def _failure_event(row: BackgroundRequest, message: str | None) -> dict[str, Any]:
    return exception_row(
        message=message or row.message or "The request failed.",
        status_code=None,
        actor=Actor(user_id=row.owner_id, org_id=row.organization_id),
        request={
            "rq_id": row.id,
            "operation": row.operation_type,
            "target": row.target,
            "worker": row.worker,
        },
        project_id=row.project_id,
        task_id=row.task_id,
        job_id=row.job_id,
        org_id=row.organization_id,
    )


def _record_completed(session: Session, row: BackgroundRequest) -> None:
    """``completed:request[<operation>]`` when a request finishes or fails (the request as
    ``GET /api/requests/{id}`` shows it; imports send none, as in CVAT)."""
    from cvat_ray.storage.changes import Actor, Scope
    from cvat_ray.storage.services import recorded

    if row.operation_type.startswith("import:"):
        return
    session.flush()
    owner = session.get(User, row.owner_id) if row.owner_id else None
    recorded.record(
        session,
        None,
        "completed",
        "request",
        after=_to_reads(session, [row])[0],
        scope=Scope(
            org_id=row.organization_id,
            project_id=row.project_id,
            task_id=row.task_id,
            job_id=row.job_id,
        ),
        extra={"operation": row.operation_type, "status": row.status},
        actor=Actor(
            user_id=row.owner_id,
            username=owner.username if owner else None,
            org_id=row.organization_id,
        ),
    )


def _to_reads(session: Session, rows: list[BackgroundRequest]) -> list[RequestRead]:
    owners = {
        u.id: RequestOwner(id=u.id, username=u.username)
        for u in session.execute(
            select(User.id, User.username).where(
                User.id.in_({r.owner_id for r in rows if r.owner_id})
            )
        )
    }
    return [
        RequestRead(
            id=r.id,
            status=r.status,
            message=r.message or "",
            progress=r.progress,
            operation=RequestOperation(
                type=r.operation_type,
                target=r.target,
                project_id=r.project_id,
                task_id=r.task_id,
                job_id=r.job_id,
                format=r.format,
                function_id=r.function_id,
            ),
            created_date=r.created_date,
            started_date=r.started_date,
            finished_date=r.finished_date,
            expiry_date=r.expiry_date,
            owner=owners.get(r.owner_id) if r.owner_id else None,
            result_url=r.result_url,
            result_id=r.result_id,
        )
        for r in rows
    ]


def _get(session: Session, ctx: RequestContext, request_id: str) -> BackgroundRequest:
    row = session.get(BackgroundRequest, request_id)
    if row is None:
        raise NotFound("Request not found.")
    authorize(ctx.principal, ctx.org, "view", Resource(kind="request", owner_id=row.owner_id))
    return row


def retrieve_request(session: Session, ctx: RequestContext, request_id: str) -> RequestRead:
    return _to_reads(session, [_get(session, ctx, request_id)])[0]


def list_requests(session: Session, ctx: RequestContext, params: ListParams) -> Page[RequestRead]:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "request"), REQUEST_LIST.policy_paths
    )
    stmt = select(BackgroundRequest).where(policy)
    if "action" in params.simple:
        stmt = stmt.where(
            BackgroundRequest.operation_type.startswith(params.simple["action"] + ":")
        )
    if ctx.org.specified:
        stmt = stmt.where(
            BackgroundRequest.organization_id.is_(None)
            if ctx.org.org_id is None
            else BackgroundRequest.organization_id == ctx.org.org_id
        )
    stmt = apply_list_params(stmt, REQUEST_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_to_reads(session, [r[0] for r in rows]))


# Started requests of these types may be cancelled too (they change nothing: CVAT's rule
# for exports); their worker notices at its next progress report and stops.
CANCELLABLE_STARTED = ("export:",)


def cancel_request(session: Session, ctx: RequestContext, request_id: str) -> None:
    row = _get(session, ctx, request_id)
    started_ok = row.status == "started" and row.operation_type.startswith(CANCELLABLE_STARTED)
    if row.status != "queued" and not started_ok:
        raise Conflict("Only a queued request, or a running export, can be cancelled.")
    transition(session, request_id, "failed", message="Cancelled by the user.", report=False)
