"""Writing a task or a project into CVAT's backup zip.

Everything streams: media files are copied into the zip one at a time (stored, not
recompressed: images and videos are compressed already), cloud objects are fetched one by
one, and ``annotations.json`` is written object by object from a server-side cursor of one
database snapshot, so memory stays flat whatever the size of the task.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.annotations import reads
from cvat_ray.storage.backups.layout import (
    ANNOTATIONS,
    DATA,
    MEDIA_MANIFEST,
    PROJECT_MANIFEST,
    TASK_MANIFEST,
    VERSION,
    IdNames,
    LabelRow,
    SpecRow,
    TextNames,
    labels_manifest,
    task_folder,
)
from cvat_ray.storage.media.sources import MediaSource
from cvat_ray.storage.models import (
    AttributeSpec,
    Data,
    DataFrame,
    Job,
    Label,
    Project,
    RelatedFile,
    Segment,
    Task,
)
from cvat_ray.storage.services.data_access import source_of

# (fraction done 0..1, message)
Progress = Callable[[float, str], None]

_BLOCK = 1 << 20


def label_rows(
    session: Session, *, task_id: int | None = None, project_id: int | None = None
) -> tuple[list[LabelRow], list[SpecRow]]:
    owner = Label.project_id == project_id if project_id is not None else Label.task_id == task_id
    labels = [
        LabelRow(r.id, r.parent_id, r.name, r.color, r.type, r.svg)
        for r in session.execute(
            select(Label.id, Label.parent_id, Label.name, Label.color, Label.type, Label.svg)
            .where(owner)
            .order_by(Label.id)
        )
    ]
    specs = [
        SpecRow(s.id, s.label_id, s.name, s.mutable, s.input_type, s.default_value, s.values)
        for s in session.scalars(
            select(AttributeSpec)
            .where(AttributeSpec.label_id.in_([lbl.id for lbl in labels]))
            .order_by(AttributeSpec.id)
        )
    ]
    return labels, specs


def _task_labels(session: Session, task: Task) -> tuple[list[LabelRow], list[SpecRow]]:
    if task.project_id is not None:
        return label_rows(session, project_id=task.project_id)
    return label_rows(session, task_id=task.id)


def _jobs(session: Session, task_id: int) -> list[Any]:
    return list(
        session.execute(
            select(
                Job.id,
                Job.status,
                Job.type,
                Segment.start_frame,
                Segment.stop_frame,
                Segment.frames,
            )
            .join(Segment, Segment.id == Job.segment_id)
            .where(Job.task_id == task_id)
            .order_by(Segment.start_frame, Job.id)
        )
    )


def _frames(session: Session, data: Data) -> list[Any]:
    return list(
        session.execute(
            select(DataFrame.frame, DataFrame.path, DataFrame.width, DataFrame.height)
            .where(DataFrame.data_id == data.id)
            .order_by(DataFrame.frame)
        )
    )


def _related(session: Session, data: Data) -> list[Any]:
    return list(
        session.execute(
            select(RelatedFile.frame, RelatedFile.path)
            .where(RelatedFile.data_id == data.id)
            .order_by(RelatedFile.frame, RelatedFile.path)
        )
    )


def _media_manifest(data: Data, frames: list[Any], related: list[Any]) -> Iterator[str]:
    """CVAT's ``manifest.jsonl`` (version 1.1) for the task's frames, in frame order."""
    yield json.dumps({"version": "1.1"})
    if data.original_chunk_type == "video":
        yield json.dumps({"type": "video"})
        first = frames[0]
        yield json.dumps(
            {
                "properties": {
                    "name": first.path,
                    "resolution": [first.width, first.height],
                    "length": len(frames),
                }
            }
        )
        return
    yield json.dumps({"type": "images"})
    by_frame: dict[int, list[str]] = {}
    for r in related:
        by_frame.setdefault(r.frame, []).append(r.path)
    for f in frames:
        path = PurePosixPath(f.path)
        yield json.dumps(
            {
                "name": str(path.with_suffix("")),
                "extension": path.suffix,
                "width": f.width,
                "height": f.height,
                "meta": {"related_images": by_frame.get(f.frame, [])},
            }
        )


def task_manifest(
    session: Session, task: Task, data: Data | None, storage: str, frames: list[Any]
) -> dict[str, Any]:
    labels, specs = _task_labels(session, task)
    jobs = _jobs(session, task.id)
    custom = task.segment_size == 0 and len(jobs) > 1
    manifest: dict[str, Any] = {
        "name": task.name,
        "bug_tracker": task.bug_tracker,
        "status": task.status,
        "subset": task.subset,
        # a task of a project has the project's labels (as CVAT writes them): the backup
        # restores as a task of its own too
        "labels": labels_manifest(labels, specs),
        "version": VERSION,
        # CVAT computes these from the jobs; written so a restore keeps them exactly
        "segment_size": task.segment_size,
        "overlap": task.overlap,
        "consensus_replicas": task.consensus_replicas,
    }
    if data is not None:
        manifest["data"] = {
            "chunk_size": data.chunk_size,
            "image_quality": data.image_quality,
            "start_frame": data.start_frame,
            "stop_frame": data.stop_frame,
            "frame_filter": data.frame_filter,
            "chunk_type": data.compressed_chunk_type,
            "storage_method": data.storage_method,
            "storage": storage,
            "sorting_method": data.sorting_method,
            "deleted_frames": sorted(data.deleted_frames or []),
            "custom_segments": custom,
        }
    entries = []
    for job in jobs:
        entry: dict[str, Any] = {
            "start_frame": job.start_frame,
            "stop_frame": job.stop_frame,
            "frames": list(job.frames or []),
            "status": job.status,
            "type": job.type,
        }
        if custom or job.frames:
            wanted = set(job.frames) if job.frames else None
            entry["files"] = [
                f.path
                for f in frames
                if job.start_frame <= f.frame <= job.stop_frame
                and (wanted is None or f.frame in wanted)
            ]
        entries.append(entry)
    manifest["jobs"] = entries
    return manifest


def _write_media(
    zf: zipfile.ZipFile,
    source: MediaSource,
    prefix: str,
    paths: list[str],
    progress: Progress,
) -> None:
    total = len(paths)
    for i, path in enumerate(paths):
        name = f"{prefix}{DATA}/{path}"
        if source.access is None:
            zf.write(source.local_path(path), name, compress_type=zipfile.ZIP_STORED)
        else:
            with zf.open(zipfile.ZipInfo(name), "w") as out:
                out.write(source.read(path))
        if i % 64 == 0:
            progress(0.05 + 0.7 * i / total, f"Saved {i} of {total} media files")


def _write_annotations(
    out: IO[bytes], session: Session, jobs: list[Any], names: IdNames, progress: Progress
) -> None:
    """``annotations.json``, one job per line (still one JSON list: a restore reads it job
    by job)."""
    text = TextNames.of(names)
    out.write(b"[")
    for n, job in enumerate(jobs):
        out.write(b"\n," if n else b"\n")
        out.write(b'{"version":0')
        for section in reads.SECTIONS:
            out.write(b',"%s":[' % section.encode())
            first = True
            for batch in reads.stream_section(session, section, job.id):
                if not batch:
                    continue
                piece = text.convert(",".join(batch)).encode()
                out.write(piece if first else b"," + piece)
                first = False
            out.write(b"]")
        out.write(b',"intervals":[]}')
        progress(0.75 + 0.2 * (n + 1) / max(1, len(jobs)), "Saving annotations")
    out.write(b"\n]")


def write_task(
    zf: zipfile.ZipFile,
    session: Session,
    settings: Settings,
    task: Task,
    *,
    prefix: str = "",
    lightweight: bool = True,
    progress: Progress,
) -> None:
    """Write ``task`` under ``prefix`` (``""`` or ``task_<i>/``). The caller holds the
    session in one snapshot (:func:`cvat_ray.storage.annotations.reads.begin_snapshot`)."""
    data = session.get(Data, task.data_id) if task.data_id is not None else None
    frames = _frames(session, data) if data is not None else []
    related = _related(session, data) if data is not None else []
    storage = "local"
    with_media = data is not None
    if data is not None and data.storage == "cloud_storage" and lightweight:
        storage, with_media = "cloud_storage", False
    manifest = task_manifest(session, task, data, storage, frames)
    zf.writestr(f"{prefix}{TASK_MANIFEST}", json.dumps(manifest, indent=2))
    if data is not None:
        zf.writestr(
            f"{prefix}{DATA}/{MEDIA_MANIFEST}",
            "\n".join(_media_manifest(data, frames, related)) + "\n",
        )
        if with_media:
            paths = list(dict.fromkeys(f.path for f in frames))
            paths += [r.path for r in related]
            _write_media(zf, source_of(session, data, settings), prefix, paths, progress)
    labels, specs = _task_labels(session, task)
    with zf.open(f"{prefix}{ANNOTATIONS}", "w", force_zip64=True) as out:
        _write_annotations(
            out, session, _jobs(session, task.id), IdNames.of(labels, specs), progress
        )


def write_project(
    zf: zipfile.ZipFile,
    session: Session,
    settings: Settings,
    project: Project,
    *,
    lightweight: bool = True,
    progress: Progress,
) -> None:
    labels, specs = label_rows(session, project_id=project.id)
    zf.writestr(
        PROJECT_MANIFEST,
        json.dumps(
            {
                "name": project.name,
                "bug_tracker": project.bug_tracker,
                "status": project.status,
                "labels": labels_manifest(labels, specs),
                "version": VERSION,
            },
            indent=2,
        ),
    )
    tasks = list(
        session.scalars(select(Task).where(Task.project_id == project.id).order_by(Task.id))
    )
    for i, task in enumerate(tasks):

        def scaled(fraction: float, message: str, i: int = i) -> None:
            progress((i + fraction) / len(tasks), f"Task {i + 1} of {len(tasks)}: {message}")

        write_task(
            zf,
            session,
            settings,
            task,
            prefix=f"{task_folder(i)}/",
            lightweight=lightweight,
            progress=scaled,
        )


def open_zip(path: Path) -> zipfile.ZipFile:
    """A new zip for writing: JSON is deflated, media members are stored."""
    return zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
