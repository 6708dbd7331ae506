"""Restoring a task or a project from CVAT's backup zip.

Everything is checked before it is kept: the zip itself (a bad or truncated file), every
member name (through :func:`cvat_ray.cluster.paths.safe_join`: absolute names, ``..`` and
links are refused), the manifest's ``version``, the labels, every label and attribute that an
annotation names, every frame and job range. The database rows are written in the caller's
one transaction and the media into a staging folder, which the caller moves into place only
after the commit (and removes on any failure): a failed restore leaves nothing behind.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import msgspec
from pydantic import ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.paths import safe_join
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.annotations import bulk
from cvat_ray.storage.annotations.validation import Validator, load_scope, require_no_ids
from cvat_ray.storage.backups.layout import (
    ANNOTATIONS,
    DATA,
    MEDIA_MANIFEST,
    NOT_MEDIA,
    PROJECT_MANIFEST,
    TASK_MANIFEST,
    VERSION,
    NameIds,
    check_job_entry,
    svg_to_ids,
    to_ids,
)
from cvat_ray.storage.backups.writer import label_rows
from cvat_ray.storage.media.formats import kind_of
from cvat_ray.storage.media.sources import MediaSource
from cvat_ray.storage.models import Job, Label, Project, RelatedFile, Task, utcnow
from cvat_ray.storage.schemas.annotations import decode_labeled_data, encode, gc_paused
from cvat_ray.storage.schemas.data import DataRequest
from cvat_ray.storage.schemas.labels import LabelWrite
from cvat_ray.storage.services import labels as label_service
from cvat_ray.storage.services.data_processing import prepare_files
from cvat_ray.storage.services.segments import refresh_task_status
from cvat_ray.storage.services.task_data import FrameInfo, attach_data

Progress = Callable[[float, str], None]

_MAX_MANIFEST = 64 << 20
# annotation objects converted, checked and written at once on a restore
_SLICE = 5_000
_BLOCK = 1 << 20
_STATUSES = {
    "annotation": ("annotation", "new"),
    "validation": ("validation", "new"),
    "completed": ("acceptance", "completed"),
}


@contextmanager
def readable(what: str) -> Iterator[None]:
    """Errors of a damaged zip as readable 400s."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise InvalidInput(f"{what}: the backup file is damaged or truncated ({exc}).") from exc


class Backup:
    """An opened backup zip whose member names have all been checked."""

    def __init__(self, path: Path, check_root: Path) -> None:
        with readable("The backup"):
            try:
                self.zip = zipfile.ZipFile(path)
            except zipfile.BadZipFile as exc:
                raise InvalidInput("The backup is not a zip archive (or it is truncated).") from exc
        self.members: dict[str, zipfile.ZipInfo] = {}
        for info in self.zip.infolist():
            if info.is_dir():
                continue
            mode = info.external_attr >> 16
            if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                raise InvalidInput(f"{info.filename!r}: the backup holds a link or a device.")
            # every member name through the path guard, before anything is written
            safe_join(check_root, info.filename)
            self.members[info.filename] = info

    def close(self) -> None:
        self.zip.close()

    def has(self, name: str) -> bool:
        return name in self.members

    def json(self, name: str) -> Any:
        info = self.members.get(name)
        if info is None:
            raise InvalidInput(f"The backup has no {name}: it is not a CVAT backup of this kind.")
        if info.file_size > _MAX_MANIFEST:
            raise InvalidInput(f"{name} is too large.")
        with readable(name):
            raw = self.zip.read(info)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{name} is not valid JSON ({exc}).") from exc

    def annotation_jobs(self, name: str) -> Iterator[Any]:
        """The entries of ``annotations.json``, one job at a time when the file has one job
        per line (as this server writes it), else parsed whole (as CVAT writes it)."""
        info = self.members.get(name)
        if info is None:
            return
        with readable(name), self.zip.open(info) as stream:
            first = stream.readline()
            if first.strip() == b"[":
                for line in stream:
                    line = line.strip()
                    if line == b"]":
                        return
                    if line:
                        yield _decode_json(line.removeprefix(b","), name)
                raise InvalidInput(f"{name} ends before its closing bracket.")
            whole = _decode_json(first + stream.read(), name)
        if not isinstance(whole, list):
            raise InvalidInput(f"{name}: a list with one entry per job is expected.")
        yield from whole

    def extract(self, prefix: str, dest: Path) -> list[str]:
        """Copy the media under ``prefix`` into ``dest`` block by block; their names relative
        to ``prefix``."""
        names = []
        made: set[Path] = set()
        for name, info in self.members.items():
            if not name.startswith(prefix):
                continue
            relative = name[len(prefix) :]
            if relative in NOT_MEDIA:
                continue
            target = safe_join(dest, relative)
            if target.parent not in made:
                target.parent.mkdir(parents=True, exist_ok=True)
                made.add(target.parent)
            with readable(name), self.zip.open(info) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out, _BLOCK)
            names.append(relative)
        return names

    def text(self, name: str) -> str | None:
        info = self.members.get(name)
        if info is None:
            return None
        with readable(name):
            return self.zip.read(info).decode("utf-8", "replace")


def describe(exc: InvalidInput) -> str:
    """An error's fields and messages in one line (``shapes[3].frame: frame 99 is ...``)."""
    return "; ".join(
        " ".join(msgs) if key == "non_field_errors" else f"{key}: {' '.join(msgs)}"
        for key, msgs in exc.fields.items()
    )


def _decode_json(data: bytes, name: str) -> Any:
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidInput(f"{name} is not valid JSON ({exc}).") from exc


def check_version(manifest: Any, name: str) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise InvalidInput(f"{name}: an object is expected.")
    version = manifest.get("version")
    if version != VERSION:
        raise InvalidInput(
            f"{name}: backup version {version!r} is not supported (only {VERSION!r} is)."
        )
    return manifest


def _text(manifest: dict[str, Any], key: str, where: str, limit: int, default: str = "") -> str:
    value = manifest.get(key, default)
    if value is None:
        value = default
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(f"{where}: {key} must be a string of at most {limit} characters.")
    return value


def _clean_label(label: Any, where: str) -> dict[str, Any]:
    if not isinstance(label, dict):
        raise InvalidInput(f"{where}: an object is expected.")
    out = {k: v for k, v in label.items() if k not in ("id", "has_parent", "parent", "svg")}
    out["attributes"] = [
        {k: v for k, v in a.items() if k != "id"} if isinstance(a, dict) else a
        for a in label.get("attributes", [])
    ]
    out["sublabels"] = [
        _clean_label(s, f"{where}.sublabels[{i}]") for i, s in enumerate(label.get("sublabels", []))
    ]
    return out


def create_labels(
    session: Session, owner: label_service.LabelOwner, labels: Any, where: str
) -> NameIds:
    """The backup's labels, created for ``owner``; skeleton svgs get the new sublabel ids."""
    if not isinstance(labels, list):
        raise InvalidInput(f"{where}.labels: a list is expected.")
    try:
        writes = [
            LabelWrite.model_validate(_clean_label(lbl, f"{where}.labels[{i}]"))
            for i, lbl in enumerate(labels)
        ]
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"{where}.labels: {path}: {first['msg']}") from exc
    try:
        label_service.create_labels(session, owner, writes)
    except InvalidInput as exc:
        raise InvalidInput(f"{where}: {describe(exc)}") from exc
    rows, specs = label_rows(session, task_id=owner.task_id, project_id=owner.project_id)
    svgs = {
        lbl["name"]: lbl.get("svg") or ""
        for lbl in labels
        if isinstance(lbl, dict) and isinstance(lbl.get("name"), str)
    }
    for row in rows:
        if row.parent_id is None and svgs.get(row.name):
            subs = {s.name: s.id for s in rows if s.parent_id == row.id}
            session.execute(
                update(Label).where(Label.id == row.id).values(svg=svg_to_ids(svgs[row.name], subs))
            )
    return NameIds.of(rows, specs)


@dataclass
class Restored:
    task_id: int
    data_id: int | None
    # the staging folder holding the task's media (to become its data folder)
    media: Path | None


def _media_order(backup: Backup, prefix: str) -> list[dict[str, Any]] | None:
    text = backup.text(f"{prefix}{DATA}/{MEDIA_MANIFEST}")
    if text is None:
        return None
    entries = []
    for line in text.splitlines():
        if line.strip():
            try:
                entries.append(json.loads(line))
            except ValueError as exc:
                raise InvalidInput(f"{MEDIA_MANIFEST}: a line is not JSON ({exc}).") from exc
    if not any(e.get("type") == "images" for e in entries if isinstance(e, dict)):
        return None
    return [e for e in entries if isinstance(e, dict) and "name" in e]


def _entry_path(entry: dict[str, Any]) -> str:
    return f"{entry['name']}{entry.get('extension', '')}"


def _int(value: Any, where: str, default: int = 0) -> int:
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise InvalidInput(f"{where}: a non-negative integer is expected.")
    return value


def _frames(
    settings: Settings,
    backup: Backup,
    prefix: str,
    data: dict[str, Any],
    raw: Path,
    progress: Progress,
) -> tuple[list[FrameInfo], list[tuple[int, str]], str, str, str]:
    """Frames, related files, mode, original and compressed chunk types."""
    storage = data.get("storage", "local")
    start = _int(data.get("start_frame"), "data.start_frame")
    stop = data.get("stop_frame")
    stop = None if stop is None else _int(stop, "data.stop_frame")
    frame_filter = _text(data, "frame_filter", "data", 256)
    sorting = data.get("sorting_method", "lexicographical")
    entries = _media_order(backup, prefix)
    files = backup.extract(f"{prefix}{DATA}/", raw)
    zip_chunks = data.get("chunk_type", "imageset") == "imageset"
    if storage == "cloud_storage" and not [f for f in files if kind_of(f) in ("image", "video")]:
        # a lightweight backup: only the manifest tells the frames
        if not entries:
            raise InvalidInput("A lightweight backup needs its data/manifest.jsonl.")
        frames = []
        for e in entries:
            if not isinstance(e.get("width"), int) or not isinstance(e.get("height"), int):
                raise InvalidInput(f"{MEDIA_MANIFEST}: {e.get('name')!r} has no width or height.")
            frames.append(FrameInfo(_entry_path(e), e["width"], e["height"]))
        return frames, [], "annotation", "imageset", "imageset"
    try:
        body = DataRequest(
            image_quality=data.get("image_quality") or 70,
            start_frame=start,
            stop_frame=stop,
            frame_filter=frame_filter,
            sorting_method=sorting,
            use_zip_chunks=zip_chunks,
        )
    except ValidationError as exc:
        raise InvalidInput(f"task.json data: {exc.errors()[0]['msg']}") from exc
    images = [f for f in files if kind_of(f) == "image"]
    ordered = False
    paths = files
    if entries is not None and images:
        order = {p: i for i, p in enumerate(_entry_path(e) for e in entries)}
        listed = sorted((p for p in images if p in order), key=order.__getitem__)
        extra = sorted(p for p in images if p not in order)
        images = listed + extra
        paths = images + [f for f in files if kind_of(f) != "image"]
        ordered = True
    if images:
        wanted = len(range(start, (stop if stop is not None else len(images) - 1) + 1, body.step))
        if len(images) == wanted and (start or body.step != 1):
            # only the selected frames are in the backup (as this server writes them)
            body = body.model_copy(
                update={"start_frame": 0, "stop_frame": None, "frame_filter": ""}
            )
        if ordered:
            body = body.model_copy(update={"sorting_method": "predefined"})
    prepared = prepare_files(
        settings,
        body,
        MediaSource(storage="local", root=str(raw)),
        paths,
        ordered=ordered,
        progress=lambda f, m, **_: progress(0.1 + 0.5 * f, m),
        seed=str(raw),
        probe_threads=settings.backups.probe_threads,
    )
    return (
        prepared.frames,
        prepared.related,
        prepared.mode,
        prepared.original_chunk_type,
        prepared.compressed_chunk_type,
    )


def _job_ranges(jobs: Any, size: int) -> list[tuple[int, int]]:
    if not isinstance(jobs, list):
        raise InvalidInput("task.json: jobs must be a list.")
    ranges = []
    for i, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise InvalidInput(f"task.json jobs[{i}]: an object is expected.")
        if job.get("type", "annotation") != "annotation":
            raise InvalidInput(f"task.json jobs[{i}]: {job.get('type')} jobs are not supported.")
        first = _int(job.get("start_frame"), f"task.json jobs[{i}].start_frame")
        last = _int(job.get("stop_frame"), f"task.json jobs[{i}].stop_frame")
        if first > last or last >= size:
            raise InvalidInput(
                f"task.json jobs[{i}]: frames {first}..{last} are not within the task's "
                f"{size} frames."
            )
        ranges.append((first, last))
    return ranges


def _segment_params(
    manifest: dict[str, Any], ranges: list[tuple[int, int]]
) -> tuple[int, int | None]:
    if "segment_size" in manifest:
        overlap = manifest.get("overlap")
        return _int(manifest["segment_size"], "task.json segment_size"), (
            None if overlap is None else _int(overlap, "task.json overlap")
        )
    # CVAT's importer: the first job's length, and how far the first two jobs overlap
    if not ranges:
        return 0, None
    size = ranges[0][1] - ranges[0][0] + 1
    overlap = 0 if len(ranges) == 1 else max(0, ranges[0][1] - ranges[1][0] + 1)
    return size, overlap


def _set_statuses(session: Session, task: Task, jobs: list[Any]) -> list[Job]:
    created = list(session.scalars(select(Job).where(Job.task_id == task.id).order_by(Job.id)))
    for job, entry in zip(created, jobs, strict=True):
        status = entry.get("status", "annotation")
        if status not in _STATUSES:
            raise InvalidInput(f"task.json: job status {status!r} is not one of {list(_STATUSES)}.")
        job.status = status
        job.stage, job.state = _STATUSES[status]
    refresh_task_status(session, task)
    return created


def _annotations(
    session: Session,
    backup: Backup,
    prefix: str,
    task: Task,
    jobs: list[Job],
    ranges: list[tuple[int, int]],
    index: NameIds,
    progress: Progress,
) -> None:
    name = f"{prefix}{ANNOTATIONS}"
    ids = bulk.IdAllocator(session)
    with gc_paused():
        for n, entry in enumerate(backup.annotation_jobs(name)):
            if n >= len(jobs):
                raise InvalidInput(f"{name}: more entries than the task's {len(jobs)} jobs.")
            where = f"{name}[{n}]"
            check_job_entry(entry, where)
            scope = load_scope(session, task, ranges[n][0], ranges[n][1])
            for section in ("tags", "shapes", "tracks"):
                items = entry.pop(section, None) or []
                # a slice at a time: memory holds the job's parsed JSON and one slice
                for first in range(0, len(items), _SLICE):
                    part = items[first : first + _SLICE]
                    converted = {
                        section: [
                            to_ids(o, index, f"{where}.{section}[{first + i}]")
                            for i, o in enumerate(part)
                        ]
                    }
                    try:
                        data = decode_labeled_data(encode(converted))
                        require_no_ids(data)
                        Validator(scope).payload(data)
                    except InvalidInput as exc:
                        raise InvalidInput(f"{where}: {_shifted(describe(exc), first)}") from exc
                    rows = bulk.new_rows(session)
                    bulk.assign_ids(data, ids)
                    bulk.rows_for(jobs[n].id, data, rows)
                    bulk.insert_rows(session, rows)
                    del converted, data, rows
            progress(0.7 + 0.25 * (n + 1) / len(jobs), "Restoring annotations")


def _shifted(message: str, offset: int) -> str:
    """Object indexes of a slice's error made indexes of the job's list."""
    if not offset:
        return message
    return re.sub(
        r"^(tags|shapes|tracks)\[(\d+)\]",
        lambda m: f"{m.group(1)}[{int(m.group(2)) + offset}]",
        message,
    )


def restore_task(
    session: Session,
    settings: Settings,
    backup: Backup,
    *,
    prefix: str,
    owner_id: int | None,
    organization_id: int | None,
    project: Project | None,
    project_labels: NameIds | None,
    staging: Path,
    progress: Progress,
) -> Restored:
    """Create the task of ``backup`` (under ``prefix``) in ``session``; its media is left in
    ``staging/raw``."""
    manifest = check_version(backup.json(f"{prefix}{TASK_MANIFEST}"), TASK_MANIFEST)
    name = _text(manifest, "name", "task.json", 256)
    if not name:
        raise InvalidInput("task.json: the task has no name.")
    now = utcnow()
    task = Task(
        name=name,
        project_id=project.id if project is not None else None,
        owner_id=owner_id,
        bug_tracker=_text(manifest, "bug_tracker", "task.json", 2000),
        subset=_text(manifest, "subset", "task.json", 64),
        consensus_replicas=_int(manifest.get("consensus_replicas"), "task.json consensus_replicas"),
        organization_id=organization_id,
        created_date=now,
        updated_date=now,
    )
    session.add(task)
    session.flush()
    if project_labels is not None:
        index = project_labels
    else:
        index = create_labels(
            session, label_service.LabelOwner(task_id=task.id), manifest.get("labels"), "task.json"
        )
    data = manifest.get("data")
    if data is None:
        return Restored(task.id, None, None)
    if not isinstance(data, dict):
        raise InvalidInput("task.json: data must be an object.")
    raw = staging / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    progress(0.05, "Reading the media")
    frames, related, mode, original, compressed = _frames(
        settings, backup, prefix, data, raw, progress
    )
    jobs = manifest.get("jobs") or []
    ranges = _job_ranges(jobs, len(frames))
    task.segment_size, task.overlap = _segment_params(manifest, ranges)
    task.mode = mode
    chunk_size = data.get("chunk_size")
    storage = data.get("storage", "local")
    storage = storage if storage in ("local", "cloud_storage") else "local"
    try:
        attached = attach_data(
            session,
            task,
            frames,
            mode=mode,
            chunk_size=_int(chunk_size, "data.chunk_size") or None,
            image_quality=_int(data.get("image_quality"), "data.image_quality", 70),
            original_chunk_type=original,
            compressed_chunk_type=compressed,
            start_frame=_int(data.get("start_frame"), "data.start_frame"),
            stop_frame=data.get("stop_frame"),
            frame_filter=_text(data, "frame_filter", "data", 256),
            sorting_method=_text(data, "sorting_method", "data", 16, "lexicographical"),
            storage=storage,
            storage_method=_text(data, "storage_method", "data", 16, "cache"),
            job_ranges=ranges or None,
            max_chunk_size=settings.media.max_chunk_size,
            max_chunk_pixels=settings.media.max_chunk_pixels,
        )
    except InvalidInput as exc:
        raise InvalidInput(f"task.json data: {describe(exc)}") from exc
    deleted = data.get("deleted_frames") or []
    if not isinstance(deleted, list) or not all(
        isinstance(f, int) and 0 <= f < len(frames) for f in deleted
    ):
        raise InvalidInput("task.json data.deleted_frames: frame numbers of the task expected.")
    attached.deleted_frames = sorted(set(deleted))
    if related:
        session.execute(
            insert(RelatedFile),
            [{"data_id": attached.id, "frame": f, "path": p} for f, p in related],
        )
    created = (
        _set_statuses(session, task, jobs)
        if jobs
        else list(session.scalars(select(Job).where(Job.task_id == task.id).order_by(Job.id)))
    )
    job_ranges = ranges or [(0, len(frames) - 1)] * len(created)
    _annotations(session, backup, prefix, task, created, job_ranges, index, progress)
    session.flush()
    return Restored(task.id, attached.id, staging)


def restore_project(
    session: Session,
    settings: Settings,
    backup: Backup,
    *,
    owner_id: int | None,
    organization_id: int | None,
    staging: Path,
    progress: Progress,
) -> tuple[int, list[Restored]]:
    manifest = check_version(backup.json(PROJECT_MANIFEST), PROJECT_MANIFEST)
    name = _text(manifest, "name", "project.json", 256)
    if not name:
        raise InvalidInput("project.json: the project has no name.")
    now = utcnow()
    project = Project(
        name=name,
        owner_id=owner_id,
        bug_tracker=_text(manifest, "bug_tracker", "project.json", 2000),
        organization_id=organization_id,
        created_date=now,
        updated_date=now,
    )
    session.add(project)
    session.flush()
    index = create_labels(
        session,
        label_service.LabelOwner(project_id=project.id),
        manifest.get("labels"),
        "project.json",
    )
    folders = sorted(
        {
            int(first[len("task_") :])
            for first in (PurePosixPath(n).parts[0] for n in backup.members if "/" in n)
            if first.startswith("task_") and first[len("task_") :].isdigit()
        }
    )
    restored = []
    for i, number in enumerate(folders):

        def scaled(fraction: float, message: str, i: int = i) -> None:
            progress((i + fraction) / len(folders), f"Task {i + 1} of {len(folders)}: {message}")

        restored.append(
            restore_task(
                session,
                settings,
                backup,
                prefix=f"task_{number}/",
                owner_id=owner_id,
                organization_id=organization_id,
                project=project,
                project_labels=index,
                staging=staging / f"task_{number}",
                progress=scaled,
            )
        )
    return project.id, restored
