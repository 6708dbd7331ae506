"""``/api/webhooks``: webhooks of an organization, of a project, or of the server (admins),
their deliveries, ping and redelivery.

Who may do what follows CVAT's webhooks.csv (scopes ``create@project``,
``create@organization``, ``view``, ``update``, ``delete``, ``list``): project webhooks are
managed by the project's owner and organization maintainers, organization webhooks by
maintainers and owners; server webhooks (CVAT 2.80) by admins only. ``secret`` is never
returned; ``type`` and ``project_id`` cannot change once set; the events must be ones the
type may subscribe to. Webhook changes are domain changes themselves (``create:webhook``
...), recorded for the other consumers (analytics); no webhook event exists for them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from cvat_ray.cluster.errors import InvalidInput, NotFound, PermissionDenied
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import Resource, authorize, list_filter, person
from cvat_ray.storage import changes
from cvat_ray.storage.changes import Actor, Change, Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import after_commit
from cvat_ray.storage.models import Project, User, Webhook, WebhookDelivery, utcnow
from cvat_ray.storage.query import ListParams, ListSpec, apply_list_params, compile_policy, paginate
from cvat_ray.storage.schemas.common import Page
from cvat_ray.storage.schemas.webhooks import (
    EventGroup,
    EventItem,
    Events,
    WebhookDeliveryRead,
    WebhookPatch,
    WebhookRead,
    WebhookWrite,
    check_delays,
)
from cvat_ray.storage.services.users import basic_users
from cvat_ray.storage.webhooks import outbox
from cvat_ray.storage.webhooks.events import WEBHOOK_TYPES, events_of, group_of, invalid_events
from cvat_ray.storage.webhooks.sender import Outgoing, Transport

_Project = aliased(Project, name="webhook_project")
_Owner = aliased(User, name="webhook_owner")

WEBHOOK_LIST = ListSpec(
    policy_paths={
        "organization_id": Webhook.organization_id,
        "owner_id": Webhook.owner_id,
        "project.owner_id": _Project.owner_id,
    },
    fields={
        "id": Webhook.id,
        "target_url": Webhook.target_url,
        "description": Webhook.description,
        "type": Webhook.type,
        "owner": _Owner.username,
        "project_id": Webhook.project_id,
        "updated_date": Webhook.updated_date,
    },
    search_fields=("target_url", "owner", "description"),
    sort_fields={
        "id": Webhook.id,
        "target_url": Webhook.target_url,
        "owner": _Owner.username,
        "type": Webhook.type,
        "description": Webhook.description,
        "project_id": Webhook.project_id,
        "updated_date": Webhook.updated_date,
    },
    default_sort=(Webhook.id.desc(),),
    simple_filters=("target_url", "owner", "type", "project_id"),
)

# CVAT pages deliveries only; ``status`` (pending, delivered, dead) is ours
DELIVERY_LIST = ListSpec(
    policy_paths={},
    fields={"status": WebhookDelivery.status},
    search_fields=(),
    sort_fields={},
    default_sort=(WebhookDelivery.updated_date.desc(), WebhookDelivery.id.desc()),
    simple_filters=("status",),
)


def _stmt() -> Any:
    return (
        select(Webhook)
        .outerjoin(_Project, _Project.id == Webhook.project_id)
        .outerjoin(_Owner, _Owner.id == Webhook.owner_id)
    )


def _get(session: Session, webhook_id: int, *, for_update: bool = False) -> Webhook:
    stmt = select(Webhook).where(Webhook.id == webhook_id)
    if for_update:
        stmt = stmt.with_for_update()
    webhook = session.scalar(stmt)
    if webhook is None:
        raise NotFound("Webhook not found.")
    return webhook


def webhook_resource(session: Session, webhook: Webhook) -> Resource:
    facts: dict[str, Any] = {}
    if webhook.project_id is not None:
        project = session.get(Project, webhook.project_id)
        facts["project"] = {"owner": person(project.owner_id if project else None)}
    return Resource(
        kind="webhook",
        id=webhook.id,
        owner_id=webhook.owner_id,
        organization_id=webhook.organization_id,
        facts=facts,
    )


def _authorize(session: Session, ctx: RequestContext, scope: str, webhook: Webhook) -> None:
    authorize(ctx.principal, ctx.org, scope, webhook_resource(session, webhook))
    if webhook.type == "server" and not ctx.principal.is_admin:
        raise PermissionDenied()


def _last_deliveries(session: Session, ids: Sequence[int]) -> dict[int, WebhookDelivery]:
    if not ids:
        return {}
    latest = (
        select(func.max(WebhookDelivery.id))
        .where(WebhookDelivery.webhook_id.in_(list(ids)), WebhookDelivery.attempt > 0)
        .group_by(WebhookDelivery.webhook_id)
    )
    rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(latest)))
    return {r.webhook_id: r for r in rows}


def _reads(session: Session, ctx: RequestContext, webhooks: Sequence[Webhook]) -> list[WebhookRead]:
    users = basic_users(session, ctx, [w.owner_id for w in webhooks])
    last = _last_deliveries(session, [w.id for w in webhooks])
    out = []
    for w in webhooks:
        delivery = last.get(w.id)
        out.append(
            WebhookRead(
                id=w.id,
                url=ctx.url(f"/api/webhooks/{w.id}"),
                target_url=w.target_url,
                description=w.description,
                type=w.type,
                content_type=w.content_type,
                is_active=w.is_active,
                enable_ssl=w.enable_ssl,
                created_date=w.created_date,
                updated_date=w.updated_date,
                owner=users.get(w.owner_id) if w.owner_id else None,
                project_id=w.project_id,
                organization=w.organization_id,
                events=sorted(w.events or []),
                last_status=delivery.status_code if delivery else None,
                last_delivery_date=delivery.updated_date if delivery else None,
                max_retries=w.max_retries,
                retry_delays=w.retry_delays,
            )
        )
    return out


def _snapshot(session: Session, ctx: RequestContext, webhook: Webhook) -> dict[str, Any]:
    return _reads(session, ctx, [webhook])[0].model_dump(mode="json")


def _record(
    session: Session,
    ctx: RequestContext,
    action: str,
    webhook: Webhook,
    *,
    after: dict[str, Any] | None,
    before: dict[str, Any] | None = None,
) -> None:
    changes.record(
        session,
        Change(
            action,
            "webhook",
            after=after,
            before=before,
            scope_ids=Scope(org_id=webhook.organization_id, project_id=webhook.project_id),
            actor=Actor.of(ctx),
        ),
    )


def _check_target_form(url: str) -> None:
    """Only the URL's form is checked here (an http(s) URL with a host): whether its address
    may be reached is decided when a delivery connects, so an allow-list change applies to
    existing webhooks too."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        raise InvalidInput(f"{url}: not a valid URL.", field="target_url") from exc
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{url}: only http and https URLs are supported.", field="target_url")


def _check_events(webhook_type: str, events: list[str]) -> None:
    bad = invalid_events(webhook_type, events)
    if bad:
        raise InvalidInput(
            f"Invalid events list for {webhook_type} webhook: {', '.join(bad)}", field="events"
        )


def _check_policy(max_retries: int | None, delays: list[float] | None) -> None:
    problem = check_delays(delays)
    if problem:
        raise InvalidInput(problem, field="retry_delays")


# ---------------------------------------------------------------------------------- API


def list_webhooks(session: Session, ctx: RequestContext, params: ListParams) -> Page[WebhookRead]:
    policy = compile_policy(
        list_filter(ctx.principal, ctx.org, "webhook"), WEBHOOK_LIST.policy_paths
    )
    stmt = _stmt().where(policy)
    if not ctx.principal.is_admin:
        stmt = stmt.where(Webhook.type != "server")
    stmt = apply_list_params(stmt, WEBHOOK_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=_reads(session, ctx, [r[0] for r in rows]))


def retrieve_webhook(session: Session, ctx: RequestContext, webhook_id: int) -> WebhookRead:
    webhook = _get(session, webhook_id)
    _authorize(session, ctx, "view", webhook)
    return _reads(session, ctx, [webhook])[0]


def create_webhook(session: Session, ctx: RequestContext, data: WebhookWrite) -> WebhookRead:
    org_id: int | None
    if data.type == "project":
        if data.project_id is None:
            raise InvalidInput("A project webhook needs project_id.", field="project_id")
        project = session.get(Project, data.project_id)
        if project is None:
            raise InvalidInput(f"Project {data.project_id} does not exist.", field="project_id")
        org_id = project.organization_id
        authorize(
            ctx.principal,
            ctx.org,
            "create@project",
            Resource(
                kind="webhook",
                organization_id=org_id,
                facts={"project": {"owner": person(project.owner_id)}},
            ),
        )
    elif data.type == "organization":
        if data.project_id is not None:
            raise InvalidInput("An organization webhook has no project_id.", field="project_id")
        org_id = ctx.org.org_id
        authorize(
            ctx.principal,
            ctx.org,
            "create@organization",
            Resource(kind="webhook", organization_id=org_id),
        )
        if org_id is None:
            raise InvalidInput(
                "An organization webhook is created inside an organization (org=<slug>).",
                field="type",
            )
    else:
        # server webhooks (CVAT 2.80): admins only; no table row covers them, so only the
        # admin rule passes this decision
        authorize(
            ctx.principal,
            ctx.org,
            "create@organization",
            Resource(kind="webhook", organization_id=ctx.org.org_id),
        )
        if not ctx.principal.is_admin:
            raise PermissionDenied()
        if data.project_id is not None:
            raise InvalidInput("A server webhook has no project_id.", field="project_id")
        org_id = None
    _check_target_form(data.target_url)
    _check_events(data.type, data.events)
    _check_policy(data.max_retries, data.retry_delays)
    now = utcnow()
    webhook = Webhook(
        target_url=data.target_url,
        description=data.description,
        events=sorted(set(data.events)),
        type=data.type,
        content_type=data.content_type,
        secret=data.secret,
        is_active=data.is_active,
        enable_ssl=data.enable_ssl,
        owner_id=ctx.principal.user_id,
        project_id=data.project_id if data.type == "project" else None,
        organization_id=org_id,
        max_retries=data.max_retries,
        retry_delays=data.retry_delays,
        created_date=now,
        updated_date=now,
    )
    session.add(webhook)
    session.flush()
    read = _reads(session, ctx, [webhook])[0]
    _record(session, ctx, "create", webhook, after=read.model_dump(mode="json"))
    return read


def _update(
    session: Session, ctx: RequestContext, webhook_id: int, patch: WebhookPatch, *, full: bool
) -> WebhookRead:
    webhook = _get(session, webhook_id, for_update=True)
    _authorize(session, ctx, "update", webhook)
    before = _snapshot(session, ctx, webhook)
    fields = patch.model_fields_set
    if "type" in fields and patch.type != webhook.type:
        raise InvalidInput("type cannot be changed.", field="type")
    if "project_id" in fields and patch.project_id != webhook.project_id:
        raise InvalidInput("project_id cannot be changed.", field="project_id")
    if patch.target_url is not None:
        _check_target_form(patch.target_url)
        webhook.target_url = patch.target_url
    if patch.events is not None:
        _check_events(webhook.type, patch.events)
        webhook.events = sorted(set(patch.events))
    for name in ("description", "content_type", "is_active", "enable_ssl"):
        value = getattr(patch, name)
        if value is not None:
            setattr(webhook, name, value)
    if "secret" in fields or full:
        webhook.secret = patch.secret or ""
    if "max_retries" in fields or full:
        webhook.max_retries = patch.max_retries
    if "retry_delays" in fields or full:
        _check_policy(patch.max_retries, patch.retry_delays)
        webhook.retry_delays = patch.retry_delays
    webhook.updated_date = utcnow()
    session.flush()
    read = _reads(session, ctx, [webhook])[0]
    _record(session, ctx, "update", webhook, after=read.model_dump(mode="json"), before=before)
    return read


def partial_update_webhook(
    session: Session, ctx: RequestContext, webhook_id: int, patch: WebhookPatch
) -> WebhookRead:
    return _update(session, ctx, webhook_id, patch, full=False)


def update_webhook(
    session: Session, ctx: RequestContext, webhook_id: int, data: WebhookWrite
) -> WebhookRead:
    """``PUT``: every writable field from ``data`` (type and project_id must not change)."""
    patch = WebhookPatch.model_validate(data.model_dump())
    return _update(session, ctx, webhook_id, patch, full=True)


def delete_webhook(session: Session, ctx: RequestContext, webhook_id: int) -> None:
    webhook = _get(session, webhook_id, for_update=True)
    _authorize(session, ctx, "delete", webhook)
    before = _snapshot(session, ctx, webhook)
    _record(session, ctx, "delete", webhook, after=None, before=before)
    session.delete(webhook)
    session.flush()


def list_events(session: Session, ctx: RequestContext, webhook_type: str | None) -> Events:
    """``GET /api/webhooks/events?type=``: the keys a webhook of that type may subscribe
    to (``all`` or no type: every key)."""
    authorize(ctx.principal, ctx.org, "list", Resource(kind="webhook"))
    kind = webhook_type or "all"
    if kind != "all" and kind not in WEBHOOK_TYPES:
        raise InvalidInput(f"type must be one of all, {', '.join(WEBHOOK_TYPES)}.", field="type")
    return Events(
        webhook_type=kind,
        events=[
            EventItem(key=k, group=EventGroup(display_name=group_of(k))) for k in events_of(kind)
        ],
    )


# ---------------------------------------------------------------------------- deliveries


def delivery_read(row: WebhookDelivery) -> WebhookDeliveryRead:
    try:
        request: Any = json.loads(row.body)
    except ValueError:
        request = row.body
    return WebhookDeliveryRead(
        id=row.id,
        webhook_id=row.webhook_id,
        event=row.event,
        status_code=row.status_code,
        redelivery=row.redelivery,
        attempt=row.attempt,
        request_duration=row.request_duration,
        created_date=row.created_date,
        updated_date=row.updated_date,
        changed_fields=row.changed_fields,
        request=request,
        response=row.response,
        delivery_id=row.uid,
        status=row.status,
        next_attempt_date=row.next_attempt_at if row.status == "pending" else None,
    )


def list_deliveries(
    session: Session, ctx: RequestContext, webhook_id: int, params: ListParams
) -> Page[WebhookDeliveryRead]:
    webhook = _get(session, webhook_id)
    _authorize(session, ctx, "view", webhook)
    stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    stmt = apply_list_params(stmt, DELIVERY_LIST, params)
    count, rows = paginate(session, stmt, params.page, params.page_size)
    return Page(count=count, results=[delivery_read(r[0]) for r in rows])


def _get_delivery(session: Session, webhook: Webhook, delivery_id: int) -> WebhookDelivery:
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.webhook_id != webhook.id:
        raise NotFound("Delivery not found.")
    return row


def retrieve_delivery(
    session: Session, ctx: RequestContext, webhook_id: int, delivery_id: int
) -> WebhookDeliveryRead:
    webhook = _get(session, webhook_id)
    _authorize(session, ctx, "view", webhook)
    return delivery_read(_get_delivery(session, webhook, delivery_id))


def redeliver(session: Session, ctx: RequestContext, webhook_id: int, delivery_id: int) -> None:
    """Send the stored payload again, as a new delivery (``redelivery``), under the
    webhook's retry policy: a dead delivery gets a second life."""
    webhook = _get(session, webhook_id)
    _authorize(session, ctx, "update", webhook)
    row = _get_delivery(session, webhook, delivery_id)
    try:
        payload = json.loads(row.body)
    except ValueError as exc:
        raise InvalidInput("The stored payload cannot be read.") from exc
    outbox.new_delivery(
        session,
        webhook,
        row.event,
        payload,
        changed_fields=row.changed_fields,
        redelivery=True,
    )
    session.flush()
    key = outbox.db_key(session.get_bind())
    after_commit(session, lambda: outbox.wake(key))


def ping(
    session: Session, ctx: RequestContext, webhook_id: int, settings: Settings
) -> WebhookDeliveryRead:
    """Send ``ping`` now and return its delivery (one attempt, never retried), as CVAT."""
    webhook = _get(session, webhook_id)
    _authorize(session, ctx, "update", webhook)
    sender = basic_users(session, ctx, [ctx.principal.user_id]).get(ctx.principal.user_id)
    payload = {
        "event": "ping",
        "webhook": _snapshot(session, ctx, webhook),
        "sender": sender.model_dump(mode="json") if sender else None,
    }
    # sent before the row is written: no write lock is held while waiting for the receiver
    uid = str(uuid.uuid4())
    transport = Transport.from_settings(settings)
    try:
        outcome = transport.send(
            Outgoing(
                id=0,
                uid=uid,
                webhook_id=webhook.id,
                event="ping",
                body=outbox.encode(payload),
                attempt=1,
                target_url=webhook.target_url,
                secret=webhook.secret or "",
                enable_ssl=webhook.enable_ssl,
                max_retries=0,
                delays=(0.0,),
            )
        )
    finally:
        transport.close()
    row = outbox.new_delivery(
        session, webhook, "ping", payload, status="delivered" if outcome.delivered else "dead"
    )
    row.uid = uid
    row.attempt = 1
    row.status_code = outcome.status_code
    row.response = outcome.response
    row.request_duration = outcome.duration_ms
    session.flush()
    return delivery_read(row)
