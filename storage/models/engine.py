"""Projects, tasks, the task's data record and frame list, segments and jobs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cvat_ray.storage.models.base import Base, UTCDateTime, utcnow


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    assignee_updated_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    bug_tracker: Mapped[str] = mapped_column(String(2000), default="")
    status: Mapped[str] = mapped_column(String(32), default="annotation")
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    source_storage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    target_storage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Data(Base):
    """The media record of a task: frame count, chunking and quality.

    Filled by the media pipeline; ``size`` is the number of frames.
    """

    __tablename__ = "data"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(Integer, default=0)
    chunk_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    image_quality: Mapped[int] = mapped_column(Integer, default=70)
    start_frame: Mapped[int] = mapped_column(Integer, default=0)
    stop_frame: Mapped[int] = mapped_column(Integer, default=0)
    frame_filter: Mapped[str] = mapped_column(String(256), default="")
    compressed_chunk_type: Mapped[str] = mapped_column(String(32), default="imageset")
    original_chunk_type: Mapped[str] = mapped_column(String(32), default="imageset")
    storage_method: Mapped[str] = mapped_column(String(16), default="cache")
    storage: Mapped[str] = mapped_column(String(16), default="local")
    sorting_method: Mapped[str] = mapped_column(String(16), default="lexicographical")
    cloud_storage_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    deleted_frames: Mapped[list[int]] = mapped_column(JSON, default=list)
    chunks_updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DataFrame(Base):
    """One frame of a task's media: its source path and size (the frame manifest).

    For video, ``path`` is the video file, ``pts`` the frame's presentation timestamp and
    ``key_pts`` the timestamp of the keyframe a decoder seeks to before decoding it.
    """

    __tablename__ = "data_frames"
    __table_args__ = (UniqueConstraint("data_id", "frame"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data_id: Mapped[int] = mapped_column(ForeignKey("data.id", ondelete="CASCADE"))
    frame: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    related_files: Mapped[int] = mapped_column(Integer, default=0)
    pts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    key_pts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Task(Base):
    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    assignee_updated_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    bug_tracker: Mapped[str] = mapped_column(String(2000), default="")
    # "" until data is attached, then "annotation" (images) or "interpolation" (video).
    mode: Mapped[str] = mapped_column(String(32), default="")
    overlap: Mapped[int | None] = mapped_column(Integer, nullable=True)
    segment_size: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(32), default="annotation")
    subset: Mapped[str] = mapped_column(String(64), default="")
    dimension: Mapped[str] = mapped_column(String(2), default="2d")
    media_type: Mapped[str] = mapped_column(String(16), default="image")
    consensus_replicas: Mapped[int] = mapped_column(Integer, default=0)
    data_id: Mapped[int | None] = mapped_column(
        ForeignKey("data.id", ondelete="SET NULL"), nullable=True, index=True
    )
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    source_storage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    target_storage: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Segment(Base):
    """A frame range of a task (``range``) or an explicit frame list (``specific_frames``)."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    start_frame: Mapped[int] = mapped_column(Integer)
    stop_frame: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32), default="range")
    frames: Mapped[list[int] | None] = mapped_column(JSON, nullable=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_task_id_id", "task_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    segment_id: Mapped[int] = mapped_column(
        ForeignKey("segments.id", ondelete="CASCADE"), index=True
    )
    # Denormalised from the segment (never changes) so job lists filter without a join.
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"))
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    assignee_updated_date: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(32), default="annotation")
    stage: Mapped[str] = mapped_column(String(32), default="annotation")
    state: Mapped[str] = mapped_column(String(32), default="new")
    type: Mapped[str] = mapped_column(String(32), default="annotation")
    parent_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), nullable=True
    )
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
