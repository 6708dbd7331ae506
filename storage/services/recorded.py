"""Recording a service's domain change on the one hook (:mod:`cvat_ray.storage.changes`),
with the API's read models as payloads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy.orm import Session

from cvat_ray.iam.principal import OrgContext, Principal
from cvat_ray.storage import changes
from cvat_ray.storage.changes import Actor, Change, Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.models import BackgroundRequest, User

Payload = BaseModel | Mapping[str, Any] | None

# the key of a background request's params that keeps who asked for it (see origin_of)
ORIGIN = "origin"


def as_json(value: Payload) -> dict[str, Any] | None:
    """The resource as the API returns it (a read model dumped in JSON mode)."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return dict(value)


def record(
    session: Session,
    ctx: RequestContext | None,
    action: str,
    resource: str,
    *,
    after: Payload = None,
    before: Payload = None,
    scope: Scope | None = None,
    extra: Mapping[str, Any] | None = None,
    actor: Actor | None = None,
) -> None:
    """``changes.record`` of one create / update / delete (or ``completed``) in ``session``."""
    changes.record(
        session,
        Change(
            action,
            resource,
            after=as_json(after),
            before=as_json(before),
            scope_ids=scope or Scope(),
            actor=actor if actor is not None else Actor.of(ctx),
            extra=dict(extra or {}),
        ),
    )


def background_context(
    session: Session, user_id: int | None, base_url: str
) -> RequestContext | None:
    """The context of a background request's owner, for the payloads of what the request
    changes (links are built from the base URL the request was made with)."""
    user = session.get(User, user_id) if user_id is not None else None
    if user is None:
        return None
    principal = Principal(
        user_id=user.id,
        username=user.username,
        groups=(),
        is_superuser=user.is_superuser,
        auth="token",
    )
    return RequestContext(principal=principal, org=OrgContext(), base_url=base_url)


def origin_of(ctx: RequestContext) -> dict[str, Any]:
    """What a background request keeps of the request that asked for it (in its params,
    under :data:`ORIGIN`): CVAT's events of background work carry the request."""
    return {
        "request_id": ctx.request_id or None,
        "access_token_id": ctx.principal.access_token_id,
        "remote_addr": ctx.remote_addr or None,
    }


def background_actor(
    session: Session, row: BackgroundRequest, origin: Mapping[str, Any] | None
) -> Actor:
    """Who the changes of a background request are recorded under: its owner, its org and
    the request that asked for it (``origin``, see :func:`origin_of`)."""
    origin = origin or {}
    owner = session.get(User, row.owner_id) if row.owner_id is not None else None
    return Actor(
        user_id=row.owner_id,
        username=owner.username if owner is not None else None,
        org_id=row.organization_id,
        access_token_id=origin.get("access_token_id"),
        request_id=origin.get("request_id"),
        remote_addr=origin.get("remote_addr"),
    )
