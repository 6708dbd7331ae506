"""Webhooks and their deliveries (the durable outbox the sender works from)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cvat_ray.storage.models.base import Base, UTCDateTime, utcnow


class Webhook(Base):
    """A receiver of events: of an organization, of a project, or of the whole server."""

    __tablename__ = "webhooks"
    __table_args__ = (
        CheckConstraint(
            "(type = 'project' AND project_id IS NOT NULL)"
            " OR (type = 'organization' AND project_id IS NULL AND organization_id IS NOT NULL)"
            " OR (type = 'server' AND project_id IS NULL AND organization_id IS NULL)",
            name="type_target",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_url: Mapped[str] = mapped_column(String(8192))
    description: Mapped[str] = mapped_column(String(128), default="")
    # the event keys it is subscribed to (``update:task``, ...)
    events: Mapped[list[str]] = mapped_column(JSON)
    type: Mapped[str] = mapped_column(String(16))
    content_type: Mapped[str] = mapped_column(String(64), default="application/json")
    secret: Mapped[str] = mapped_column(String(64), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    enable_ssl: Mapped[bool] = mapped_column(Boolean, default=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    # the retry policy (cvat-ray): retries after the first attempt, and the delay before
    # each (seconds; the last repeats); None: the server's defaults (``webhooks.*``)
    max_retries: Mapped[int | None] = mapped_column(Integer, nullable=True)
    retry_delays: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """One payload to deliver to one webhook: written in the transaction of the change that
    caused it (the outbox row), then updated by the sender after every attempt.

    ``uid`` is the delivery's id on the wire (``X-Webhook-Delivery``), the same on every
    retry; ``id`` orders a webhook's deliveries (they are sent in that order)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        # a webhook's pending rows in order (the sender's claim)
        Index("ix_webhook_deliveries_webhook_id_status_id", "webhook_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    # pending (to send, now or at next_attempt_at), delivered, dead (gave up)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    redelivery: Mapped[bool] = mapped_column(Boolean, default=False)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # the sender that holds it while sending (a lease: expired, anyone may take it)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # the exact bytes sent (UTF-8 JSON), signed as they are
    body: Mapped[str] = mapped_column(Text)
    changed_fields: Mapped[str] = mapped_column(String(4096), default="")
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # the receiver's answer (at most 1 MiB), or why no answer came
    response: Mapped[str] = mapped_column(Text, default="")
    request_duration: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
