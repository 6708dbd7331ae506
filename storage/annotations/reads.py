"""Reading annotations: the database writes each object's JSON, Python only joins text.

Each query returns one text column per top-level object, the object's complete wire JSON:
the row's JSON-at-rest columns (``points``, ``attributes``, ``shapes``) are spliced in as
they are, numbers and booleans are cast to text, and a skeleton's elements are aggregated by
a subquery on the ``parent_id`` index. The same SQL runs on PostgreSQL and SQLite (only the
string aggregate differs). On PostgreSQL the formatting runs in the database backend, on
another core than the API's Python thread, and the rows arrive through a server-side cursor
in batches, so a million shapes stream through constant memory.

Rows come in frame order (the ``(job_id, frame, id)`` index), which is also the order that
per-frame consumers (exports) want.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Sequence
from typing import Any

import msgspec
from sqlalchemy.orm import Session

from cvat_ray.storage.schemas.annotations import LabeledImage, LabeledShape, LabeledTrack

FETCH = 5_000


def _agg(dialect: str) -> str:
    return "string_agg" if dialect == "postgresql" else "group_concat"


def _bool(col: str) -> str:
    return f"CASE WHEN {col} THEN 'true' ELSE 'false' END"


def _num(col: str) -> str:
    return f"CAST({col} AS TEXT)"


def _shape_fields(a: str) -> str:
    return (
        f"""'{{"type":"' || {a}.type || '","occluded":' || {_bool(f"{a}.occluded")}"""
        f""" || ',"outside":' || {_bool(f"{a}.outside")}"""
        f""" || ',"z_order":' || {_num(f"{a}.z_order")}"""
        f""" || ',"rotation":' || {_num(f"{a}.rotation")}"""
        f""" || ',"points":' || {a}.points"""
        f""" || ',"id":' || {_num(f"{a}.id")}"""
        f""" || ',"label_id":' || {_num(f"{a}.label_id")}"""
        f""" || ',"group":' || {_num(f'{a}."group"')}"""
        f""" || ',"source":"' || {a}.source || '","frame":' || {_num(f"{a}.frame")}"""
        f""" || ',"attributes":' || {a}.attributes"""
        f""" || ',"score":' || {_num(f"{a}.score")}"""
    )


def _track_fields(a: str) -> str:
    return (
        f"""'{{"id":' || {_num(f"{a}.id")}"""
        f""" || ',"label_id":' || {_num(f"{a}.label_id")}"""
        f""" || ',"group":' || {_num(f'{a}."group"')}"""
        f""" || ',"source":"' || {a}.source || '","frame":' || {_num(f"{a}.frame")}"""
        f""" || ',"attributes":' || {a}.attributes"""
        f""" || ',"shapes":' || {a}.shapes"""
    )


def _tag_json() -> str:
    return (
        """'{"id":' || CAST(t.id AS TEXT) || ',"label_id":' || CAST(t.label_id AS TEXT)"""
        """ || ',"group":' || CAST(t."group" AS TEXT) || ',"source":"' || t.source"""
        """ || '","frame":' || CAST(t.frame AS TEXT) || ',"attributes":' || t.attributes || '}'"""
    )


def _shape_json(dialect: str) -> str:
    elements = (
        f"CASE WHEN s.type = 'skeleton' THEN COALESCE((SELECT {_agg(dialect)}("
        f"{_shape_fields('e')} || '}}', ',') FROM labeled_shapes e WHERE e.parent_id = s.id), '')"
        " ELSE '' END"
    )
    return f"""{_shape_fields("s")} || ',"elements":[' || {elements} || ']}}'"""


def _track_json(dialect: str) -> str:
    elements = (
        f"COALESCE((SELECT {_agg(dialect)}({_track_fields('e')} || '}}', ',') "
        "FROM labeled_tracks e WHERE e.parent_id = t.id), '')"
    )
    return f"""{_track_fields("t")} || ',"elements":[' || {elements} || ']}}'"""


SECTIONS = ("tags", "shapes", "tracks")


def section_sql(dialect: str, section: str, *, frames: bool = False) -> str:
    """``SELECT id, json`` per top-level object of a job (``job_id``), in frame order;
    ``frames`` adds an inclusive frame range (``first``, ``last``)."""

    def param(name: str) -> str:
        return f"%({name})s" if dialect == "postgresql" else f":{name}"

    if section == "tags":
        sql = f"SELECT t.id, {_tag_json()} FROM labeled_tags t WHERE t.job_id = {param('job_id')}"
        alias = "t"
    elif section == "shapes":
        sql = (
            f"SELECT s.id, {_shape_json(dialect)} FROM labeled_shapes s "
            f"WHERE s.job_id = {param('job_id')} AND s.parent_id IS NULL"
        )
        alias = "s"
    else:
        sql = (
            f"SELECT t.id, {_track_json(dialect)} FROM labeled_tracks t "
            f"WHERE t.job_id = {param('job_id')} AND t.parent_id IS NULL"
        )
        alias = "t"
    if frames:
        sql += f" AND {alias}.frame BETWEEN {param('first')} AND {param('last')}"
    return sql + f" ORDER BY {alias}.frame, {alias}.id"


_cursor_names = itertools.count()


def stream_section(
    session: Session,
    section: str,
    job_id: int,
    *,
    frames: tuple[int, int] | None = None,
    excluded: Collection[int] = (),
) -> Iterator[list[str]]:
    """Batches of object JSON texts of one section of a job.

    Runs on the session's DBAPI connection directly (a server-side cursor on PostgreSQL):
    the rows are single strings, and going through SQLAlchemy's result objects doubled the
    time of a 100k-shape read."""
    dialect = session.get_bind().dialect.name
    raw: Any = session.connection().connection.dbapi_connection
    params: dict[str, Any] = {"job_id": job_id}
    if frames is not None:
        params["first"], params["last"] = frames
    sql = section_sql(dialect, section, frames=frames is not None)
    if dialect == "postgresql":
        cursor = raw.cursor(name=f"annotations_{next(_cursor_names)}")
        cursor.itersize = FETCH
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(sql, params)
        while True:
            batch = cursor.fetchmany(FETCH)
            if not batch:
                break
            if excluded:
                yield [row[1] for row in batch if row[0] not in excluded]
            else:
                yield [row[1] for row in batch]
    finally:
        cursor.close()


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "tags": msgspec.json.Decoder(LabeledImage),
    "shapes": msgspec.json.Decoder(LabeledShape),
    "tracks": msgspec.json.Decoder(LabeledTrack),
}


def decode(section: str, texts: Sequence[str]) -> list[Any]:
    """Objects of a section from their JSON texts (for merging and slicing)."""
    decoder = _DECODERS[section]
    return [decoder.decode(t) for t in texts]


def load_section(
    session: Session, section: str, job_id: int, *, frames: tuple[int, int] | None = None
) -> list[Any]:
    return [
        obj
        for batch in stream_section(session, section, job_id, frames=frames)
        for obj in decode(section, batch)
    ]


def begin_snapshot(session: Session) -> None:
    """Read what follows from one consistent snapshot of the database.

    Ends the transaction that authenticated the caller (it wrote nothing), then starts a
    REPEATABLE READ transaction on PostgreSQL (its server-side cursors need a transaction
    anyway) or an explicit read transaction on SQLite, so the tags, shapes and tracks of a
    response, read by separate statements, agree with each other."""
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        session.connection().exec_driver_sql("BEGIN")


def export_snapshot(session: Session) -> str:
    """The id of the session's snapshot (PostgreSQL), for :func:`join_snapshot` on other
    connections while the session's transaction stays open."""
    return str(session.connection().exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())


def join_snapshot(session: Session, snapshot: str) -> None:
    """Start ``session``'s transaction (PostgreSQL) in the snapshot ``snapshot``
    (:func:`export_snapshot`): it reads what that session reads."""
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"}).exec_driver_sql(
        f"SET TRANSACTION SNAPSHOT '{snapshot}'"
    )
