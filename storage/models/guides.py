"""Annotation guides (markdown for a task or a project), their uploaded images, and quality
settings of tasks and projects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cvat_ray.storage.models.base import Base, UTCDateTime, utcnow

# Exactly one of task_id and project_id is set.
_ONE_TARGET = "(task_id IS NULL) <> (project_id IS NULL)"


class AnnotationGuide(Base):
    """The guide of one task or one project (at most one each)."""

    __tablename__ = "annotation_guides"
    __table_args__ = (CheckConstraint(_ONE_TARGET, name="one_target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), nullable=True, unique=True
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, unique=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    markdown: Mapped[str] = mapped_column(Text, default="")
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Asset(Base):
    """An image uploaded for a guide; its bytes are a file named by ``uuid`` in the data dir."""

    __tablename__ = "assets"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    guide_id: Mapped[int] = mapped_column(
        ForeignKey("annotation_guides.id", ondelete="CASCADE"), index=True
    )
    filename: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class QualitySettings(Base):
    """Quality-control settings of one task or one project. The comparison parameters live
    in ``params`` (CVAT adds some every few releases); what lists filter on are columns."""

    __tablename__ = "quality_settings"
    __table_args__ = (CheckConstraint(_ONE_TARGET, name="one_target"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int | None] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), nullable=True, unique=True
    )
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, unique=True
    )
    inherit: Mapped[bool] = mapped_column(Boolean, default=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
