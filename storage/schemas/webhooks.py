"""Webhook API models (CVAT 2.80's WebhookWriteRequest, WebhookRead, WebhookDeliveryRead)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from cvat_ray.storage.schemas.common import BasicUser

WebhookTypeField = Literal["organization", "project", "server"]
# a retry may wait at most a week
_MAX_DELAY_S = 7 * 24 * 3600


class WebhookWrite(BaseModel):
    target_url: str = Field(min_length=1, max_length=8192)
    description: str = Field(default="", max_length=128)
    type: WebhookTypeField
    content_type: Literal["application/json"] = "application/json"
    secret: str = Field(default="", max_length=64)
    is_active: bool = True
    enable_ssl: bool = True
    project_id: int | None = None
    events: list[str]
    # cvat-ray: the retry policy (None: the server's defaults)
    max_retries: int | None = Field(default=None, ge=0, le=100)
    retry_delays: list[float] | None = Field(default=None, min_length=1, max_length=32)


class WebhookPatch(BaseModel):
    target_url: str | None = Field(default=None, min_length=1, max_length=8192)
    description: str | None = Field(default=None, max_length=128)
    type: WebhookTypeField | None = None
    content_type: Literal["application/json"] | None = None
    secret: str | None = Field(default=None, max_length=64)
    is_active: bool | None = None
    enable_ssl: bool | None = None
    project_id: int | None = None
    events: list[str] | None = None
    max_retries: int | None = Field(default=None, ge=0, le=100)
    retry_delays: list[float] | None = Field(default=None, min_length=1, max_length=32)


def check_delays(delays: list[float] | None) -> str | None:
    """Why a retry schedule is refused, or None."""
    if delays is None:
        return None
    if any(not 0 <= d <= _MAX_DELAY_S for d in delays):
        return f"each retry delay must be between 0 and {_MAX_DELAY_S} seconds"
    return None


class WebhookRead(BaseModel):
    id: int
    url: str
    target_url: str
    description: str
    type: str
    content_type: str
    is_active: bool
    enable_ssl: bool
    created_date: datetime
    updated_date: datetime
    owner: BasicUser | None
    project_id: int | None
    organization: int | None
    events: list[str]
    # absent (not null) until the first delivery, as CVAT answers
    last_status: int | None = None
    last_delivery_date: datetime | None = None
    max_retries: int | None = None
    retry_delays: list[float] | None = None

    @model_serializer(mode="wrap")
    def _drop_unset_last(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in ("last_status", "last_delivery_date"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class WebhookDeliveryRead(BaseModel):
    id: int
    webhook_id: int
    event: str
    status_code: int | None
    redelivery: bool
    attempt: int
    request_duration: int | None
    created_date: datetime
    updated_date: datetime
    changed_fields: str
    request: Any
    response: Any
    # cvat-ray: the id sent as X-Webhook-Delivery, where the delivery stands, its next try
    delivery_id: str
    status: Literal["pending", "delivered", "dead"]
    next_attempt_date: datetime | None


class EventGroup(BaseModel):
    display_name: str


class EventItem(BaseModel):
    key: str
    group: EventGroup


class Events(BaseModel):
    webhook_type: Literal["organization", "project", "server", "all"]
    events: list[EventItem]
