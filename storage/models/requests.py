"""Background requests (CVAT's word): imports, exports, backups, task creation."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cvat_ray.storage.models.base import Base, UTCDateTime, utcnow


class BackgroundRequest(Base):
    """One background request. Actors move it queued -> started -> finished | failed."""

    __tablename__ = "requests"
    __table_args__ = (Index("ix_requests_owner_id_created_date", "owner_id", "created_date"),)

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    # e.g. "create:task", "export:dataset"
    operation_type: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    format: Mapped[str | None] = mapped_column(String(128), nullable=True)
    function_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    message: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[float | None] = mapped_column(Float, nullable=True)
    result_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    result_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    organization_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The worker (actor name) that claimed the request; lets a restarted worker fail what
    # its dead predecessor left half done.
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expiry_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
