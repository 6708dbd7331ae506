"""Whole-instance backup and restore (``cvat-ray backup create|restore``).

One tar archive holds:

- ``manifest.json``: the format, the schema revision of the database, when and from which
  database kind it was taken, and the row count of every table;
- ``database/<table>.jsonl``: every row of every table, one JSON object per line, read in one
  snapshot (PostgreSQL: one ``REPEATABLE READ`` transaction; SQLite: one read transaction,
  which WAL lets writers run beside), so the rows agree with each other although the server
  keeps running and writing. The dump is logical, hence portable: an instance moves from the
  embedded SQLite to PostgreSQL by a backup and a restore;
- ``files/...``: the data dir's files (media, uploads, guide assets, the cloud credential key,
  analytics events kept there), except what is rebuilt or belongs to one process (the SQLite
  file itself, Ray's folder, staging folders, exported backups, the running server's state).

Restoring needs an empty target (no tables with rows, no files) unless ``force``: the schema
is created at the archive's revision, the rows are loaded table by table in dependency order,
sequences are moved past the restored ids, and the database is then migrated to the current
head, so an archive of an older version restores into a newer one.
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import Engine, MetaData, Table, func, insert, inspect, select, text

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.paths import safe_join
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.migrate import current_revision, upgrade
from cvat_ray.storage.models import Base

FORMAT = "cvat-ray-instance"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_BATCH = 5_000

# (done, total, what)
Progress = Callable[[int, int, str], None]


def _quiet(done: int, total: int, what: str) -> None:
    pass


# ------------------------------------------------------------------------------ encoding


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b64": base64.b64encode(bytes(value)).decode()}
    raise TypeError(f"cannot store {type(value).__name__}")


def _hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        if "$dt" in obj:
            value = datetime.fromisoformat(obj["$dt"])
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if "$b64" in obj:
            return base64.b64decode(obj["$b64"])
    return obj


def _tables(engine: Engine) -> list[Table]:
    """The database's tables in dependency order: the models' definitions where the table
    is a model (their types convert values the same on every database), reflected ones for
    tables of other revisions."""
    names = set(inspect(engine).get_table_names()) - {"alembic_version"}
    models = {t.name: t for t in Base.metadata.sorted_tables}
    reflected = MetaData()
    others = [n for n in names if n not in models]
    if others:
        reflected.reflect(engine, only=others)
    ordered = [models[n] for n in models if n in names]
    return ordered + [reflected.tables[n] for n in sorted(others)]


# ------------------------------------------------------------------------------ create


def _excluded(settings: Settings) -> list[Path]:
    data = settings.data_dir.resolve()
    db_file = data / "cvat.db"
    return [
        db_file,
        db_file.with_name("cvat.db-wal"),
        db_file.with_name("cvat.db-shm"),
        data / "ray",
        data / "exports",
        data / "server.json",
        (settings.media_dir / "staging").resolve(),
        (settings.uploads_dir / "backups" / "requests").resolve(),
    ]


def _files(settings: Settings) -> Iterator[tuple[Path, str]]:
    """(path, archive name) of the files to keep: regular files found under the roots,
    links skipped (a link is never followed out of the data dir)."""
    excluded = {str(p) for p in _excluded(settings)}
    roots = [(settings.data_dir.resolve(), "files")]
    uploads = settings.uploads_dir.resolve()
    if not uploads.is_relative_to(roots[0][0]):
        roots.append((uploads, "uploads"))
    for root, prefix in roots:
        if root.is_dir():
            for found in _walk(str(root), excluded):
                path = Path(found)
                yield path, f"{prefix}/{path.relative_to(root).as_posix()}"


def _walk(folder: str, excluded: set[str]) -> Iterator[str]:
    with os.scandir(folder) as entries:
        ordered = sorted(entries, key=lambda e: e.name)
    for entry in ordered:
        if entry.path in excluded or entry.is_symlink():
            continue
        if entry.is_dir():
            yield from _walk(entry.path, excluded)
        elif entry.is_file():
            yield entry.path


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


class _Spool:
    """Rows of one table written to a temporary file as JSON lines (not held in memory)."""

    def __init__(self, folder: Path, table: str) -> None:
        self.path = folder / f"{table}.jsonl"
        self.out: IO[str] = self.path.open("w")
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        self.out.write(json.dumps(row, default=_default, separators=(",", ":")) + "\n")
        self.count += 1


def create(
    settings: Settings, engine: Engine, output: Path, *, progress: Progress = _quiet
) -> dict[str, Any]:
    """Write the instance's archive to ``output``; returns its manifest."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    spool_dir = output.with_name(f".{output.name}.rows")
    shutil.rmtree(spool_dir, ignore_errors=True)
    spool_dir.mkdir()
    try:
        counts = _dump_database(engine, spool_dir, progress)
        revision = current_revision(engine)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "revision": revision,
            "database": engine.dialect.name,
            "created": datetime.now(UTC).isoformat(),
            "tables": counts,
        }
        files = list(_files(settings))
        with tarfile.open(partial, "w") as tar:
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
            for table in counts:
                tar.add(spool_dir / f"{table}.jsonl", f"database/{table}.jsonl")
            for i, (path, name) in enumerate(files):
                try:
                    tar.add(path, name, recursive=False)
                except FileNotFoundError:
                    continue  # removed since it was listed (a deleted task's media)
                progress(i + 1, len(files), "files")
        os.replace(partial, output)
        return manifest
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
        partial.unlink(missing_ok=True)


def _dump_database(engine: Engine, folder: Path, progress: Progress) -> dict[str, int]:
    tables = _tables(engine)
    counts: dict[str, int] = {}
    options = {"isolation_level": "REPEATABLE READ"} if engine.dialect.name == "postgresql" else {}
    with engine.connect().execution_options(**options) as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN")
        else:
            connection.begin()
        for n, table in enumerate(tables):
            spool = _Spool(folder, table.name)
            try:
                # a database of an older revision may lack columns the models have now
                present = {c["name"] for c in inspect(connection).get_columns(table.name)}
                columns = [c for c in table.columns if c.name in present]
                order = [c for c in table.primary_key.columns if c.name in present] or columns[:1]
                result = connection.execution_options(
                    stream_results=True, yield_per=_BATCH
                ).execute(select(*columns).order_by(*order))
                for row in result.mappings():
                    spool.write(dict(row))
            finally:
                spool.out.close()
            counts[table.name] = spool.count
            progress(n + 1, len(tables), "tables")
        connection.rollback()
    return counts


# ------------------------------------------------------------------------------ restore


# Tables that migrations fill (lookup rows): a freshly migrated database is still "empty".
SEEDED = frozenset({"groups"})


@dataclass(frozen=True)
class Target:
    """Whether a data dir and a database hold anything."""

    files: list[str]
    rows: dict[str, int]

    @property
    def empty(self) -> bool:
        return not self.files and not any(n for t, n in self.rows.items() if t not in SEEDED)


def inspect_target(settings: Settings, engine: Engine) -> Target:
    files = [name for _, name in _files(settings)]
    rows: dict[str, int] = {}
    with engine.connect() as connection:
        for table in _tables(engine):
            rows[table.name] = connection.execute(
                select(func.count()).select_from(table)
            ).scalar_one()
    return Target(files, rows)


def _wipe(settings: Settings, engine: Engine) -> None:
    """Drop every table (``force``) and the data dir's kept files."""
    meta = MetaData()
    meta.reflect(engine)
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            for table in meta.tables.values():
                connection.execute(text(f'DROP TABLE IF EXISTS "{table.name}" CASCADE'))
            # the trigger functions of the migrations (not those of extensions)
            functions = connection.execute(
                text(
                    "SELECT p.oid::regprocedure::text FROM pg_proc p "
                    "JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = current_schema() AND NOT EXISTS "
                    "(SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"
                )
            ).scalars()
            for function in list(functions):
                connection.execute(text(f"DROP FUNCTION IF EXISTS {function} CASCADE"))
        else:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            for table in reversed(meta.sorted_tables):
                connection.execute(text(f'DROP TABLE IF EXISTS "{table.name}"'))
    for path, _ in list(_files(settings)):
        path.unlink(missing_ok=True)


def read_manifest(archive: Path) -> dict[str, Any]:
    try:
        with tarfile.open(archive, "r") as tar:
            member = tar.extractfile(MANIFEST)
            if member is None:
                raise KeyError(MANIFEST)
            manifest: dict[str, Any] = json.load(member)
    except (tarfile.TarError, KeyError, ValueError, OSError) as exc:
        raise InvalidInput(f"{archive}: not a cvat-ray instance backup ({exc}).") from exc
    if manifest.get("format") != FORMAT:
        raise InvalidInput(f"{archive}: not a cvat-ray instance backup.")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise InvalidInput(
            f"{archive}: written by a newer cvat-ray (format {manifest.get('format_version')})."
        )
    return manifest


def restore(
    settings: Settings,
    engine: Engine,
    archive: Path,
    *,
    force: bool = False,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Restore ``archive`` into the settings' data dir and ``engine``'s database, then
    migrate it to head; returns the archive's manifest."""
    manifest = read_manifest(archive)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    target = inspect_target(settings, engine)
    if not target.empty:
        if not force:
            busy = [f"{t} ({n} rows)" for t, n in target.rows.items() if n][:5]
            raise InvalidInput(
                "The target is not empty ("
                + ", ".join(busy + target.files[:3])
                + "); restore into an empty data dir and database, or pass --force to "
                "replace what is there."
            )
        _wipe(settings, engine)
    elif force:
        _wipe(settings, engine)
    revision = manifest.get("revision")
    if revision:
        upgrade(engine, revision)
    tables = {t.name: t for t in _tables(engine)}
    with tarfile.open(archive, "r") as tar:
        members = tar.getmembers()
        names = [t for t in manifest.get("tables", {}) if t in tables]
        missing = [t for t in manifest.get("tables", {}) if t not in tables]
        if missing:
            raise InvalidInput(f"The archive has tables this schema lacks: {missing}.")
        ordered = [t for t in tables if t in names]
        with engine.begin() as connection:
            if engine.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
            # what the migrations seeded is in the archive too
            for name in reversed(ordered):
                connection.execute(tables[name].delete())
            for n, name in enumerate(ordered):
                stream = tar.extractfile(f"database/{name}.jsonl")
                if stream is None:
                    continue
                _load(connection, tables[name], stream)
                progress(n + 1, len(ordered), "tables")
            if engine.dialect.name == "postgresql":
                _reset_sequences(connection, [tables[n] for n in ordered])
        _extract_files(settings, tar, members, progress)
    upgrade(engine)
    return manifest


def _load(connection: Any, table: Table, stream: IO[bytes]) -> None:
    batch: list[dict[str, Any]] = []
    columns = set(table.columns.keys())
    for line in stream:
        if not line.strip():
            continue
        row = json.loads(line, object_hook=_hook)
        unknown = set(row) - columns
        if unknown:
            raise InvalidInput(f"{table.name}: columns {sorted(unknown)} are not in this schema.")
        batch.append(row)
        if len(batch) >= _BATCH:
            connection.execute(insert(table), batch)
            batch = []
    if batch:
        connection.execute(insert(table), batch)


def _reset_sequences(connection: Any, tables: list[Table]) -> None:
    for table in tables:
        for column in table.primary_key.columns:
            sequence = connection.execute(
                text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column.name}
            ).scalar()
            if sequence:
                connection.execute(
                    text(
                        f'SELECT setval(:s, COALESCE((SELECT MAX("{column.name}") '
                        f'FROM "{table.name}"), 0) + 1, false)'
                    ),
                    {"s": sequence},
                )


def _extract_files(
    settings: Settings, tar: tarfile.TarFile, members: list[tarfile.TarInfo], progress: Progress
) -> None:
    roots = {"files": settings.data_dir, "uploads": settings.uploads_dir}
    wanted = [m for m in members if m.isfile() and PurePosixPath(m.name).parts[0] in roots]
    for i, member in enumerate(wanted):
        parts = PurePosixPath(member.name).parts
        target = safe_join(roots[parts[0]], "/".join(parts[1:]))
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        assert source is not None
        with target.open("wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
        os.utime(target, (member.mtime, member.mtime))
        if target.parent.name == "secrets":
            target.chmod(0o600)
        progress(i + 1, len(wanted), "files")
