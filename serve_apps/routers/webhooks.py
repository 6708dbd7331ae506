"""``/api/webhooks``: CVAT 2.80's webhook API (CRUD, events, ping, deliveries, redelivery)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, status

from cvat_ray.serve_apps.deps import Call, Listing, ObjectId, SettingsDep
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.schemas.webhooks import (
    Events,
    WebhookDeliveryRead,
    WebhookPatch,
    WebhookRead,
    WebhookWrite,
)
from cvat_ray.storage.services import webhooks as webhook_service

router = APIRouter(tags=["webhooks"])


@router.get("/api/webhooks", response_model=Paginated[WebhookRead])
async def list_webhooks(request: Request, call: Call, params: Listing) -> Paginated[WebhookRead]:
    """CVAT ``GET /api/webhooks`` (filters ``target_url``, ``owner``, ``type``,
    ``description``, ``project_id``; search; ordering; default ``-id``)."""
    return paginated(request, params, await call(webhook_service.list_webhooks, params))


@router.post("/api/webhooks", response_model=WebhookRead, status_code=status.HTTP_201_CREATED)
async def create_webhook(data: WebhookWrite, call: Call) -> WebhookRead:
    """CVAT ``POST /api/webhooks``: an organization webhook (in ``?org=``), a project's, or
    the server's (admins)."""
    return await call(webhook_service.create_webhook, data)


@router.get("/api/webhooks/events", response_model=Events)
async def list_events(
    call: Call, webhook_type: str | None = Query(default=None, alias="type")
) -> Events:
    """CVAT ``GET /api/webhooks/events?type=all|organization|project|server``."""
    return await call(webhook_service.list_events, webhook_type)


@router.get("/api/webhooks/{webhook_id}", response_model=WebhookRead)
async def retrieve_webhook(webhook_id: ObjectId, call: Call) -> WebhookRead:
    return await call(webhook_service.retrieve_webhook, webhook_id)


@router.put("/api/webhooks/{webhook_id}", response_model=WebhookRead)
async def update_webhook(webhook_id: ObjectId, data: WebhookWrite, call: Call) -> WebhookRead:
    return await call(webhook_service.update_webhook, webhook_id, data)


@router.patch("/api/webhooks/{webhook_id}", response_model=WebhookRead)
async def partial_update_webhook(
    webhook_id: ObjectId, data: WebhookPatch, call: Call
) -> WebhookRead:
    return await call(webhook_service.partial_update_webhook, webhook_id, data)


@router.delete("/api/webhooks/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: ObjectId, call: Call) -> None:
    await call(webhook_service.delete_webhook, webhook_id)


@router.post("/api/webhooks/{webhook_id}/ping", response_model=WebhookDeliveryRead)
async def ping_webhook(
    webhook_id: ObjectId, call: Call, settings: SettingsDep
) -> WebhookDeliveryRead:
    """CVAT ``POST /api/webhooks/{id}/ping``: sent now; the delivery is the answer."""
    return await call(webhook_service.ping, webhook_id, settings)


@router.get("/api/webhooks/{webhook_id}/deliveries", response_model=Paginated[WebhookDeliveryRead])
async def list_deliveries(
    webhook_id: ObjectId, request: Request, call: Call, params: Listing
) -> Paginated[WebhookDeliveryRead]:
    """CVAT ``GET /api/webhooks/{id}/deliveries`` (newest first; ``?status=pending|delivered|
    dead`` lists one kind, e.g. the dead ones to redeliver)."""
    return paginated(
        request, params, await call(webhook_service.list_deliveries, webhook_id, params)
    )


@router.get(
    "/api/webhooks/{webhook_id}/deliveries/{delivery_id}", response_model=WebhookDeliveryRead
)
async def retrieve_delivery(
    webhook_id: ObjectId, delivery_id: ObjectId, call: Call
) -> WebhookDeliveryRead:
    return await call(webhook_service.retrieve_delivery, webhook_id, delivery_id)


@router.post("/api/webhooks/{webhook_id}/deliveries/{delivery_id}/redelivery")
async def redeliver(webhook_id: ObjectId, delivery_id: ObjectId, call: Call) -> dict[str, Any]:
    """CVAT ``POST …/redelivery``: the stored payload sent again as a new delivery; ``{}``."""
    await call(webhook_service.redeliver, webhook_id, delivery_id)
    return {}
