"""Media beyond the frame manifest: context (related) images and cloud storages."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from cvat_ray.storage.models.base import Base, UTCDateTime, utcnow


class RelatedFile(Base):
    """A context image shown next to a frame (CVAT's ``related_images/<frame>_<ext>/*``)."""

    __tablename__ = "related_files"
    __table_args__ = (Index("ix_related_files_data_id_frame", "data_id", "frame"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data_id: Mapped[int] = mapped_column(ForeignKey("data.id", ondelete="CASCADE"))
    frame: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))


class CloudStorage(Base):
    """A bucket or container that tasks take media from.

    ``credentials`` holds the secret fields (keys, tokens, connection string, key file)
    encrypted with the server's cloud key; they never leave the server.
    """

    __tablename__ = "cloud_storages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider_type: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(222))
    display_name: Mapped[str] = mapped_column(String(63))
    credentials_type: Mapped[str] = mapped_column(String(32))
    credentials: Mapped[str] = mapped_column(Text, default="")
    specific_attributes: Mapped[str] = mapped_column(String(1024), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    manifests: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), nullable=True, index=True
    )
    created_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_date: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
