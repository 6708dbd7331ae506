"""Annotations: tags, shapes and tracks of a job, stored for bulk reads and writes.

Design (see ``storage/annotations/__init__.py`` for the whole picture):

- **One row per object.** A tag, a shape or a track is one row; a skeleton's elements are rows
  of the same table whose ``parent_id`` names the skeleton (elements of a skeleton track are
  tracks pointing at the parent track). A track's keyframes are stored inside the track row as
  a JSON array (``shapes``): keyframes are always read and written with their track, so a
  child table would only add a row per keyframe and a join.
- **Wire JSON at rest.** ``points``, ``attributes`` and ``shapes`` hold the exact JSON text
  that the API sends (``[1.0,2.5,...]``, ``[{"spec_id":3,"value":"x"}]``), so a read splices
  them into the response without parsing, and the database builds each object's JSON itself
  (``cvat_ray.storage.annotations.reads``). ``source`` is validated to a safe alphabet on input, so it
  needs no escaping either.
- **No per-row foreign keys.** PostgreSQL checks a foreign key with one trigger call per
  inserted row (it tripled the time of a 100k-row COPY here). Instead, triggers on ``jobs``
  and ``labels`` (created by migration 0003, both dialects) delete a deleted job's or label's
  annotations in one statement each, and elements are deleted with their parents by the bulk
  statements that delete parents. Attribute specs that are removed or remapped are handled
  by ``cvat_ray.storage.annotations.maintenance``.
- **Indexes** ``(job_id, frame, id)``: per-job and per-frame access and streaming in frame
  order without a sort; partial indexes on ``parent_id`` find elements.
- On SQLite the tables use AUTOINCREMENT so that ids of deleted objects are never reused (a
  stale client must not update a different object by an old id).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from cvat_ray.storage.models.base import Base


def _parent_index(table: str) -> Index:
    return Index(
        f"ix_{table}_parent_id",
        "parent_id",
        postgresql_where=text("parent_id IS NOT NULL"),
        sqlite_where=text("parent_id IS NOT NULL"),
    )


class LabeledTag(Base):
    __tablename__ = "labeled_tags"
    __table_args__ = (
        Index("ix_labeled_tags_job_id_frame_id", "job_id", "frame", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer)
    frame: Mapped[int] = mapped_column(Integer)
    label_id: Mapped[int] = mapped_column(Integer)
    group: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(16), default="manual")
    attributes: Mapped[str] = mapped_column(Text, default="[]")


class LabeledShape(Base):
    __tablename__ = "labeled_shapes"
    __table_args__ = (
        Index("ix_labeled_shapes_job_id_frame_id", "job_id", "frame", "id"),
        _parent_index("labeled_shapes"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer)
    # The skeleton an element belongs to (NULL for top-level shapes).
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    frame: Mapped[int] = mapped_column(Integer)
    label_id: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(16))
    group: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(16), default="manual")
    occluded: Mapped[bool] = mapped_column(Boolean, default=False)
    outside: Mapped[bool] = mapped_column(Boolean, default=False)
    z_order: Mapped[int] = mapped_column(Integer, default=0)
    rotation: Mapped[float] = mapped_column(Float, default=0.0)
    score: Mapped[float] = mapped_column(Float, default=1.0)
    # JSON array text, e.g. "[10.0,20.5,30.0,40.0]"
    points: Mapped[str] = mapped_column(Text, default="[]")
    # JSON array text of {"spec_id", "value"}
    attributes: Mapped[str] = mapped_column(Text, default="[]")


class LabeledTrack(Base):
    __tablename__ = "labeled_tracks"
    __table_args__ = (
        Index("ix_labeled_tracks_job_id_frame_id", "job_id", "frame", "id"),
        _parent_index("labeled_tracks"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(Integer)
    # The skeleton track an element track belongs to (NULL for top-level tracks).
    parent_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    frame: Mapped[int] = mapped_column(Integer)
    label_id: Mapped[int] = mapped_column(Integer)
    group: Mapped[int] = mapped_column(Integer, default=0)
    source: Mapped[str] = mapped_column(String(16), default="manual")
    attributes: Mapped[str] = mapped_column(Text, default="[]")
    # JSON array text of the keyframes (TrackedShape objects), ordered by frame.
    shapes: Mapped[str] = mapped_column(Text, default="[]")
