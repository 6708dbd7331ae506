"""Set-based writes of annotation rows: id allocation, inserts, deletes.

- **Ids** are allocated up front for every row a request writes (PostgreSQL: a range of the
  table's sequence reserved under an advisory lock, one ``nextval`` and one ``setval``
  whatever its length; SQLite: after the ``sqlite_sequence`` value, which is safe because the
  write path holds SQLite's write lock before it allocates), so that elements can point at
  their skeletons and the response can carry the ids without reading rows back.
- **Inserts** go through PostgreSQL's ``COPY ... FROM STDIN`` (several times faster than
  multi-row INSERTs for 100k+ rows) and ``executemany`` on SQLite, in batches, from plain
  tuples: no ORM objects.
- **Deletes** are one statement per table for a whole job, or per batch of ids (elements with
  their parents).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, cast, delete, func, select, text
from sqlalchemy.dialects.postgresql import JSON as PG_JSON
from sqlalchemy.orm import Session

from cvat_ray.storage.annotations.identity import ByIdentity
from cvat_ray.storage.models import LabeledShape, LabeledTag, LabeledTrack
from cvat_ray.storage.schemas.annotations import (
    LabeledData,
    LabeledImage,
    SubLabeledShape,
    SubLabeledTrack,
    encode,
)

TAGS: Table = LabeledTag.__table__  # type: ignore[assignment]
SHAPES: Table = LabeledShape.__table__  # type: ignore[assignment]
TRACKS: Table = LabeledTrack.__table__  # type: ignore[assignment]
ALL_TABLES = (TAGS, SHAPES, TRACKS)

TAG_COLUMNS = ("id", "job_id", "frame", "label_id", "group", "source", "attributes")
SHAPE_COLUMNS = (
    "id", "job_id", "parent_id", "frame", "label_id", "type", "group", "source", "occluded",
    "outside", "z_order", "rotation", "score", "points", "attributes",
)  # fmt: skip
TRACK_COLUMNS = (
    "id", "job_id", "parent_id", "frame", "label_id", "group", "source", "attributes", "shapes",
)  # fmt: skip

# Rows per COPY / executemany call, and ids per IN (...) list (SQLite's variable limit).
BATCH = 50_000
ID_BATCH = 10_000


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


class IdAllocator:
    """Hands out fresh ids per table within one unit of work."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.postgres = _dialect(session) == "postgresql"
        self._next: dict[str, int] = {}

    def take(self, table: Table, count: int) -> Sequence[int]:
        if count <= 0:
            return []
        if self.postgres:
            return self._take_postgres(table.name, count)
        start = self._next.get(table.name)
        if start is None:
            # AUTOINCREMENT keeps the highest id ever used in sqlite_sequence.
            seq = self.session.execute(
                text("SELECT seq FROM sqlite_sequence WHERE name = :name"), {"name": table.name}
            ).scalar()
            top = self.session.execute(select(table.c.id).order_by(table.c.id.desc()).limit(1))
            start = max(seq or 0, top.scalar() or 0) + 1
        self._next[table.name] = start + count
        return range(start, start + count)

    def _take_postgres(self, table: str, count: int) -> Sequence[int]:
        # One range of the sequence, reserved in O(1): its next value, and the sequence moved
        # past the range. Allocators take turns on an advisory lock around the two steps (a
        # sequence is not transactional, nor is the lock held past them); every writer of the
        # annotation tables allocates here, so nobody draws inside a reserved range.
        params = {"seq": f"{table}_id_seq", "n": count, "key": _lock_key(table)}
        execute = self.session.execute
        execute(text("SELECT pg_advisory_lock(:key)"), params)
        try:
            first = execute(text("SELECT nextval(CAST(:seq AS regclass))"), params).scalar_one()
            if count > 1:
                execute(
                    text("SELECT setval(CAST(:seq AS regclass), :last)"),
                    {**params, "last": first + count - 1},
                )
        finally:
            execute(text("SELECT pg_advisory_unlock(:key)"), params)
        return range(first, first + count)


def _lock_key(table: str) -> int:
    """The advisory lock of a table's id allocation (stable across processes)."""
    return int.from_bytes(hashlib.blake2b(f"cvat_ray.ids.{table}".encode(), digest_size=7).digest())


def _attrs(attributes: list[Any]) -> str:
    return encode(attributes).decode() if attributes else "[]"


NULL = "\\N"


def _copy_text(value: str) -> str:
    """Text for COPY's text format: backslash starts an escape. JSON text never holds raw
    tabs or newlines (JSON escapes them), so backslashes are all there is to double."""
    return value.replace("\\", "\\\\") if "\\" in value else value


class Rows:
    """Rows to insert, per table, built from validated wire objects whose ids are assigned.

    For PostgreSQL (``copy=True``) each row is built directly as a line of COPY's text
    format, one f-string per row; for SQLite as a tuple for ``executemany``."""

    def __init__(self, copy: bool = False) -> None:
        self.copy = copy
        self.tags: list[Any] = []
        self.shapes: list[Any] = []
        self.tracks: list[Any] = []
        # the attribute lists an import's objects share, encoded once
        self._encoded: ByIdentity[str] = ByIdentity()

    def add_tag(self, job_id: int, tag: LabeledImage) -> None:
        attrs = _attrs(tag.attributes)
        if self.copy:
            self.tags.append(
                f"{tag.id}\t{job_id}\t{tag.frame}\t{tag.label_id}\t{tag.group}\t{tag.source}"
                f"\t{_copy_text(attrs)}"
            )
        else:
            self.tags.append(
                (tag.id, job_id, tag.frame, tag.label_id, tag.group, tag.source, attrs)
            )

    def add_shape(self, job_id: int, shape: SubLabeledShape, parent_id: int | None = None) -> None:
        points = encode(shape.points).decode()
        attrs = self._shared_attrs(shape.attributes)
        if self.copy:
            rotation, score = shape.rotation, shape.score
            self.shapes.append(
                f"{shape.id}\t{job_id}\t{NULL if parent_id is None else parent_id}"
                f"\t{shape.frame}\t{shape.label_id}\t{shape.type}\t{shape.group}"
                f"\t{shape.source}\t{'t' if shape.occluded else 'f'}"
                f"\t{'t' if shape.outside else 'f'}\t{shape.z_order}"
                f"\t{'0' if rotation == 0 else repr(rotation)}"
                f"\t{'1' if score == 1 else repr(score)}\t{points}\t{_copy_text(attrs)}"
            )
        else:
            self.shapes.append(
                (
                    shape.id, job_id, parent_id, shape.frame, shape.label_id, shape.type,
                    shape.group, shape.source, shape.occluded, shape.outside, shape.z_order,
                    shape.rotation, shape.score, points, attrs,
                )
            )  # fmt: skip

    def _shared_attrs(self, attributes: list[Any]) -> str:
        if not attributes:
            return "[]"
        found = self._encoded.get(attributes)
        return found if found is not None else self._encoded.put(attributes, _attrs(attributes))

    def add_track(self, job_id: int, track: SubLabeledTrack, parent_id: int | None = None) -> None:
        attrs = _attrs(track.attributes)
        keys = encode(track.shapes).decode()
        if self.copy:
            self.tracks.append(
                f"{track.id}\t{job_id}\t{NULL if parent_id is None else parent_id}"
                f"\t{track.frame}\t{track.label_id}\t{track.group}\t{track.source}"
                f"\t{_copy_text(attrs)}\t{_copy_text(keys)}"
            )
        else:
            self.tracks.append(
                (
                    track.id, job_id, parent_id, track.frame, track.label_id, track.group,
                    track.source, attrs, keys,
                )
            )  # fmt: skip


def new_rows(session: Session) -> Rows:
    return Rows(copy=_dialect(session) == "postgresql")


def assign_ids(data: LabeledData, ids: IdAllocator) -> None:
    """Give every object (and element) without an id a fresh one."""
    _fill(data.tags, ids.take(TAGS, sum(1 for t in data.tags if t.id is None)))
    _fill_with_elements(data.shapes, ids, SHAPES)
    _fill_with_elements(data.tracks, ids, TRACKS)


def _fill_with_elements(objects: Sequence[Any], ids: IdAllocator, table: Table) -> None:
    """Fresh ids for objects and their elements without one (objects first, in order)."""
    fresh_objects = [o for o in objects if o.id is None]
    nested = [e for o in objects if o.elements for e in o.elements if e.id is None]
    fresh = iter(ids.take(table, len(fresh_objects) + len(nested)))
    if not nested:  # the usual case: no skeletons
        for obj, new_id in zip(fresh_objects, fresh, strict=True):
            obj.id = new_id
        return
    for o in objects:
        if o.id is None:
            o.id = next(fresh)
        for e in o.elements:
            if e.id is None:
                e.id = next(fresh)


def _fill(objects: Sequence[LabeledImage], fresh: Sequence[int]) -> None:
    it = iter(fresh)
    for obj in objects:
        if obj.id is None:
            obj.id = next(it)


def _add(rows: Rows, section: str, job_id: int, obj: Any) -> None:
    """The rows of one object (a shape or track with its elements)."""
    if section == "shapes":
        rows.add_shape(job_id, obj)
        for e in obj.elements:
            rows.add_shape(job_id, e, obj.id)
    elif section == "tracks":
        rows.add_track(job_id, obj)
        for sub in obj.elements:
            rows.add_track(job_id, sub, obj.id)
    else:
        rows.add_tag(job_id, obj)


_SECTIONS = (("tags", TAGS, TAG_COLUMNS), ("shapes", SHAPES, SHAPE_COLUMNS),
             ("tracks", TRACKS, TRACK_COLUMNS))  # fmt: skip


def rows_for(job_id: int, data: LabeledData, rows: Rows) -> Rows:
    """Rows of a validated payload whose ids are assigned."""
    for section, _, _ in _SECTIONS:
        for obj in getattr(data, section):
            _add(rows, section, job_id, obj)
    return rows


# ---------------------------------------------------------------------------------- inserts


def insert_rows(session: Session, rows: Rows) -> None:
    for section, table, columns in _SECTIONS:
        values = getattr(rows, section)
        if values:
            _insert(session, table, columns, values)


# rows per read of a streamed COPY
STREAM_BATCH = 2_000


def insert_objects(session: Session, per_job: dict[int, LabeledData]) -> None:
    """The rows of validated payloads (per job) whose ids are assigned, inserted. On
    PostgreSQL each table's COPY reads its rows as they are made, so the database stores
    one batch while the next is built (on its own core) instead of after all of them."""
    if not any(getattr(data, section) for data in per_job.values() for section, _, _ in _SECTIONS):
        return
    if _dialect(session) != "postgresql":
        rows = new_rows(session)
        for job_id, data in per_job.items():
            rows_for(job_id, data, rows)
        insert_rows(session, rows)
        return
    for section, table, columns in _SECTIONS:
        if any(getattr(data, section) for data in per_job.values()):
            _copy(session, table, columns, _CopyStream(_batches(per_job, section)))


def _batches(per_job: dict[int, LabeledData], section: str) -> Iterator[list[str]]:
    rows = Rows(copy=True)
    for job_id, data in per_job.items():
        for obj in getattr(data, section):
            _add(rows, section, job_id, obj)
            batch = getattr(rows, section)
            if len(batch) >= STREAM_BATCH:
                yield batch
                setattr(rows, section, [])
    if getattr(rows, section):
        yield getattr(rows, section)


def copy_texts(per_job: dict[int, LabeledData]) -> dict[str, str]:
    """The rows of validated payloads (per job) whose ids are assigned, as the text of
    PostgreSQL's COPY per section (``tags``, ``shapes``, ``tracks``; none where it has no
    rows): what :func:`insert_copy_texts` writes, made elsewhere (an import's forked
    readers)."""
    texts: dict[str, str] = {}
    for section, _, _ in _SECTIONS:
        text = "".join(iter(_CopyStream(_batches(per_job, section)).read, ""))
        if text:
            texts[section] = text
    return texts


def insert_copy_texts(session: Session, texts: dict[str, str]) -> None:
    """Insert the rows of :func:`copy_texts` (PostgreSQL)."""
    for section, table, columns in _SECTIONS:
        if texts.get(section):
            _copy(session, table, columns, io.StringIO(texts[section]))


class _CopyStream:
    """The file COPY ... FROM STDIN reads: its text made a batch of rows per read."""

    def __init__(self, batches: Iterator[list[str]]) -> None:
        self.batches = batches

    def read(self, size: int = -1) -> str:
        batch = next(self.batches, None)
        return "" if batch is None else "\n".join(batch) + "\n"


def _copy(session: Session, table: Table, columns: Sequence[str], source: Any) -> None:
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    names = ", ".join(f'"{c}"' for c in columns)
    cursor = raw.cursor()
    try:
        cursor.copy_expert(f"COPY {table.name} ({names}) FROM STDIN", source, size=1 << 20)
    finally:
        cursor.close()


def _insert(session: Session, table: Table, columns: Sequence[str], values: Sequence[Any]) -> None:
    if _dialect(session) == "postgresql":
        for start in range(0, len(values), BATCH):
            batch = values[start : start + BATCH]
            _copy(session, table, columns, io.StringIO("\n".join(batch) + "\n"))
        return
    raw = session.connection().connection.dbapi_connection
    assert raw is not None
    names = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    cursor = raw.cursor()
    try:
        for start in range(0, len(values), BATCH):
            cursor.executemany(
                f"INSERT INTO {table.name} ({names}) VALUES ({marks})",
                values[start : start + BATCH],
            )
    finally:
        cursor.close()


# ---------------------------------------------------------------------------------- deletes


def clear_jobs(session: Session, job_ids: Sequence[int]) -> None:
    """Delete every annotation of these jobs."""
    if not job_ids:
        return
    for table in ALL_TABLES:
        session.execute(delete(table).where(table.c.job_id.in_(list(job_ids))))


# (section, shape type or None) -> (how many top-level objects, the ids of up to ``listed``)
Summary = dict[tuple[str, str | None], tuple[int, list[int]]]


def summary(session: Session, job_ids: Sequence[int], listed: int = 1000) -> Summary:
    """What the jobs hold, per section and shape type (a track's: its first keyframe's), counted
    in SQL with the first ``listed`` ids of each: the annotation events of a clear."""
    if not job_ids:
        return {}
    jobs = list(job_ids)
    out: Summary = {}

    def first_ids(where: Any, table: Table) -> list[int]:
        stmt = select(table.c.id).where(where).order_by(table.c.id).limit(listed)
        return list(session.scalars(stmt).all())

    tags = TAGS.c.job_id.in_(jobs)
    count = int(session.scalar(select(func.count()).select_from(TAGS).where(tags)) or 0)
    if count:
        out[("tags", None)] = (count, first_ids(tags, TAGS))
    if session.get_bind().dialect.name == "sqlite":
        first_type: Any = func.json_extract(TRACKS.c.shapes, "$[0].type")
    else:
        first_type = func.json_extract_path_text(cast(TRACKS.c.shapes, PG_JSON), "0", "type")
    for section, table, kind in (("shapes", SHAPES, SHAPES.c.type), ("tracks", TRACKS, first_type)):
        where = table.c.job_id.in_(jobs) & table.c.parent_id.is_(None)
        for value, n in session.execute(select(kind, func.count()).where(where).group_by(kind)):
            ids = first_ids(where & (kind == value), table)
            out[(section, None if value is None else str(value))] = (int(n), ids)
    return out


def delete_ids(session: Session, table: Table, ids: Sequence[int]) -> None:
    """Delete objects by id, with their elements."""
    stmt = delete(table).where(
        table.c.id.in_(bindparam("ids", expanding=True))
        | table.c.parent_id.in_(bindparam("ids", expanding=True))
        if "parent_id" in table.c
        else table.c.id.in_(bindparam("ids", expanding=True))
    )
    for start in range(0, len(ids), ID_BATCH):
        session.execute(stmt, {"ids": list(ids[start : start + ID_BATCH])})


def owners(session: Session, table: Table, ids: Sequence[int]) -> dict[int, int]:
    """id -> job_id of the top-level objects among ``ids`` (elements are not addressable)."""
    found: dict[int, int] = {}
    stmt = select(table.c.id, table.c.job_id).where(
        table.c.id.in_(bindparam("ids", expanding=True))
    )
    if "parent_id" in table.c:
        stmt = stmt.where(table.c.parent_id.is_(None))
    for start in range(0, len(ids), ID_BATCH):
        rows = session.execute(stmt, {"ids": list(ids[start : start + ID_BATCH])}).all()
        found.update((row[0], row[1]) for row in rows)
    return found


def element_owners(session: Session, table: Table, ids: Sequence[int]) -> dict[int, int | None]:
    """id -> parent_id of the rows among ``ids`` (any level)."""
    found: dict[int, int | None] = {}
    stmt = select(table.c.id, table.c.parent_id).where(
        table.c.id.in_(bindparam("ids", expanding=True))
    )
    for start in range(0, len(ids), ID_BATCH):
        rows = session.execute(stmt, {"ids": list(ids[start : start + ID_BATCH])}).all()
        found.update((row[0], row[1]) for row in rows)
    return found
