"""Processing a ``create:task`` request: gather the files, unpack archives, decode and check
every image or the video, build the frame manifest and attach it with segments and jobs.

:func:`process_request` is what the launchers run (a Ray actor under ``cvat-ray up``, a
thread in-process); it needs only a database and the settings. It claims the request row
atomically, so a request handed over twice is processed once. Work happens in a staging
folder that becomes the data folder in the same transaction that attaches the data; on any
failure the staging folder is removed, the row is failed with a readable message, the task
stays without data and its uploaded files stay where they were, so the upload can be
finished again.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import logging
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import insert, select

from cvat_ray.cluster.errors import AppError, Conflict, InvalidInput
from cvat_ray.cluster.outbound import OutboundGuard
from cvat_ray.cluster.paths import relative_parts, safe_join
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.media import images, video
from cvat_ray.storage.media.archives import UnpackBudget, unpack
from cvat_ray.storage.media.cloud import CloudAccess
from cvat_ray.storage.media.cloud_listing import iter_keys
from cvat_ray.storage.media.formats import kind_of, related_owner
from cvat_ray.storage.media.remote import download
from cvat_ray.storage.media.sources import MediaSource
from cvat_ray.storage.media.uploads import leftover_removals
from cvat_ray.storage.models import BackgroundRequest, CloudStorage, Data, RelatedFile, Task
from cvat_ray.storage.schemas.data import DataRequest
from cvat_ray.storage.services import recorded
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.cloud_storages import access_for
from cvat_ray.storage.services.data_upload import CREATE_TASK, upload_area
from cvat_ray.storage.services.jobs import record_created_jobs
from cvat_ray.storage.services.resources import get_task
from cvat_ray.storage.services.task_data import FrameInfo, attach_data

logger = logging.getLogger("cvat_ray.media")

_PROGRESS_EVERY_S = 0.5
_CLOUD_BATCH = 32


def data_dir(settings: Settings, data_id: int) -> Path:
    return settings.media_dir / "data" / str(data_id)


def raw_dir(settings: Settings, data_id: int) -> Path:
    return data_dir(settings, data_id) / "raw"


class Progress:
    """Writes progress and a message to the request row, at most twice a second."""

    def __init__(self, db: Database, request_id: str) -> None:
        self.db = db
        self.request_id = request_id
        self._last = 0.0

    def __call__(self, fraction: float, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < _PROGRESS_EVERY_S:
            return
        self._last = now
        with self.db.session() as session:
            request_service.transition(
                session, self.request_id, "started", progress=fraction, message=message
            )


@dataclass
class Gathered:
    """The files of a request, as paths relative to ``source``'s root."""

    source: MediaSource
    paths: list[str]
    # (frame owner path, related path)
    storage: str
    cloud_storage_id: int | None = None
    ordered: bool = False  # the order is the client's (predefined sorting)
    # threads that read and check local images at once (image decoding releases the GIL)
    probe_threads: int = 1


@dataclass
class Prepared:
    frames: list[FrameInfo]
    related: list[tuple[int, str]]
    mode: str
    original_chunk_type: str
    compressed_chunk_type: str
    storage: str
    cloud_storage_id: int | None
    start_frame: int
    stop_frame: int
    job_ranges: list[tuple[int, int]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def process_request(db: Database, settings: Settings, request_id: str, worker: str) -> None:
    """Process one ``create:task`` request (no-op when another worker has it already)."""
    with db.session() as session:
        if not request_service.claim(session, request_id, worker):
            return
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        task_id = row.task_id
        owner_id = row.owner_id
        params = dict(row.params or {})
        access: CloudAccess | None = None
        body = DataRequest.model_validate(params.get("data", {}))
        if params.get("source") == "cloud" and body.cloud_storage_id is not None:
            storage = session.get(CloudStorage, body.cloud_storage_id)
            if storage is not None:
                access = access_for(storage, settings)
    staging = settings.media_dir / "staging" / request_id
    progress = Progress(db, request_id)
    moved_to: Path | None = None
    try:
        assert task_id is not None
        progress(0.0, "Gathering files", force=True)
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "raw").mkdir(parents=True)
        gathered = _gather(settings, params.get("source", "local"), body, task_id, staging, access)
        prepared = _prepare(settings, body, gathered, progress, request_id)
        progress(0.95, "Saving the frame list", force=True)
        with db.session() as session:
            task = get_task(session, task_id, for_update=True)
            if task.data_id is not None:
                raise Conflict("The task got data from another request meanwhile.")
            if prepared.job_ranges is not None and task.segment_size:
                raise InvalidInput(
                    "job_file_mapping cannot be combined with segment_size.",
                    field="job_file_mapping",
                )
            data = attach_data(
                session,
                task,
                prepared.frames,
                mode=prepared.mode,
                chunk_size=body.chunk_size or None,
                image_quality=body.image_quality,
                original_chunk_type=prepared.original_chunk_type,
                compressed_chunk_type=prepared.compressed_chunk_type,
                start_frame=prepared.start_frame,
                stop_frame=prepared.stop_frame,
                frame_filter=body.frame_filter,
                sorting_method=body.sorting_method,
                storage=prepared.storage,
                storage_method="cache" if body.use_cache else "file_system",
                cloud_storage_id=prepared.cloud_storage_id,
                job_ranges=prepared.job_ranges,
                max_chunk_size=settings.media.max_chunk_size,
                max_chunk_pixels=settings.media.max_chunk_pixels,
            )
            if prepared.related:
                session.execute(
                    insert(RelatedFile),
                    [{"data_id": data.id, "frame": f, "path": p} for f, p in prepared.related],
                )
            owner = recorded.background_context(session, owner_id, params.get("base_url", ""))
            if owner is not None:
                record_created_jobs(session, owner, task)
            request_service.transition(
                session,
                request_id,
                "finished",
                message=_lowered(body.chunk_size, data.chunk_size, settings),
                result_id=task_id,
            )
            target = data_dir(settings, data.id)
            shutil.rmtree(target, ignore_errors=True)  # an orphan of a reused id
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(staging, target)
            moved_to = target
        if params.get("source") == "local":
            upload_area(settings, task_id).clear()
    except Exception as exc:
        if moved_to is not None:
            shutil.rmtree(moved_to, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, AppError):
            message = exc.detail
        else:
            logger.exception("create:task %s failed", request_id)
            message = f"Internal error while processing the data ({type(exc).__name__}: {exc})."
        with db.session() as session:
            request_service.fail_if_unfinished(session, request_id, message)


def _lowered(asked: int | None, given: int | None, settings: Settings) -> str:
    if not asked or given is None or given >= asked:
        return ""
    return (
        f"chunk_size was lowered from {asked} to {given}: a chunk holds at most "
        f"{settings.media.max_chunk_size} frames and {settings.media.max_chunk_pixels} pixels "
        "on this server."
    )


# --- gathering ------------------------------------------------------------------------------


def _link_or_copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _selected(paths: Iterable[str], body: DataRequest) -> list[str]:
    excluded = [e.strip("/") for e in body.server_files_exclude]
    out = []
    for path in paths:
        if any(path == e or path.startswith(e + "/") for e in excluded):
            continue
        if body.filename_pattern and body.filename_pattern != "*":
            name = PurePosixPath(path).name
            if not (
                fnmatch.fnmatch(path, body.filename_pattern)
                or fnmatch.fnmatch(name, body.filename_pattern)
            ):
                continue
        out.append(path)
    return out


def _gather(
    settings: Settings,
    source: str,
    body: DataRequest,
    task_id: int,
    staging: Path,
    access: CloudAccess | None,
) -> Gathered:
    raw = staging / "raw"
    local = MediaSource(storage="local", root=str(raw))
    ordered = body.sorting_method == "predefined"
    if source == "local":
        area = upload_area(settings, task_id)
        names = area.names()
        if not names:
            raise InvalidInput("No files were uploaded.")
        for name in names:
            _link_or_copy(area.file(name), safe_join(raw, name))
        if body.sorting_method == "predefined" and body.upload_file_order:
            order = {n: i for i, n in enumerate(body.upload_file_order)}
            names.sort(key=lambda n: order.get(n, len(order)))
        return Gathered(local, names, "local", ordered=ordered)
    if source == "remote":
        guard = OutboundGuard.from_settings(settings)
        budget = settings.media.max_upload_bytes
        names = []
        for url in body.remote_files:
            fetched = download(
                url, raw, guard=guard, timeout=settings.media.remote_timeout_s, max_bytes=budget
            )
            budget -= fetched.stat().st_size
            names.append(fetched.name)
        return Gathered(local, names, "local", ordered=ordered)
    if source == "share":
        return _gather_share(settings, body, raw, local)
    if source == "cloud":
        return _gather_cloud(settings, body, raw, local, access)
    raise InvalidInput(f"Unknown data source {source!r}.")


def _gather_share(settings: Settings, body: DataRequest, raw: Path, local: MediaSource) -> Gathered:
    root = settings.media.share_root
    if root is None:
        raise InvalidInput("This server has no file share.")
    found: list[str] = []
    base = root.resolve()
    for server_file in body.server_files:
        # CVAT clients may name share files from the share's root ("/images/a.jpg")
        target = safe_join(base, server_file.lstrip("/"), field="server_files", allow_root=True)
        if target.is_dir():
            for dirpath, _dirs, files in os.walk(target):
                for f in sorted(files):
                    relative = Path(dirpath, f).relative_to(base).as_posix()
                    safe_join(base, relative, field="server_files")  # links leading out
                    found.append(relative)
        elif target.is_file():
            found.append(target.relative_to(base).as_posix())
        else:
            raise InvalidInput(f"{server_file}: no such file in the share.")
    found = _selected(found, body)
    ordered = body.sorting_method == "predefined"
    if body.copy_data or any(kind_of(p) == "archive" for p in found):
        for path in found:
            _link_or_copy(safe_join(base, path), safe_join(raw, path))
        return Gathered(local, found, "local", ordered=ordered)
    share = MediaSource(storage="share", root=str(base))
    return Gathered(share, found, "share", ordered=ordered)


def _gather_cloud(
    settings: Settings,
    body: DataRequest,
    raw: Path,
    local: MediaSource,
    access: CloudAccess | None,
) -> Gathered:
    if access is None:
        raise InvalidInput("The cloud storage does not exist any more.")
    timeout = settings.cloud.timeout_s
    cap = settings.media.max_files
    keys: list[str] = []
    for name in body.server_files:
        if name.endswith("/") or name in ("", "*"):
            prefix = name.rstrip("*").strip("/")
            keys.extend(
                iter_keys(access, f"{prefix}/" if prefix else "", cap=cap + 1, timeout=timeout)
            )
        else:
            keys.append(name.strip("/"))
        if len(keys) > cap:
            raise InvalidInput(f"More than {cap} files in the cloud storage selection.")
    # Keys come from the bucket: the same path guard as names in a request, for every key
    # before anything is written, so a key like "a/../../x" fails the request cleanly.
    for key in keys:
        try:
            relative_parts(key)
        except InvalidInput as exc:
            raise InvalidInput(
                f"The cloud storage holds an object whose key cannot be a file name: {exc.detail}"
            ) from exc
    keys = _selected(keys, body)
    ordered = body.sorting_method == "predefined"
    remote = MediaSource(storage="cloud_storage", access=access, timeout=timeout)
    if body.copy_data or any(kind_of(k) == "archive" for k in keys):
        targets = [safe_join(raw, key) for key in keys]
        for i in range(0, len(keys), _CLOUD_BATCH):
            batch = keys[i : i + _CLOUD_BATCH]
            for dest, data in zip(
                targets[i : i + _CLOUD_BATCH], remote.read_many(batch), strict=True
            ):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
        return Gathered(local, keys, "local", ordered=ordered)
    return Gathered(remote, keys, "cloud_storage", body.cloud_storage_id, ordered=ordered)


# --- preparing ------------------------------------------------------------------------------


def _natural_key(path: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


def _sorted(paths: list[str], body: DataRequest, ordered: bool, seed: str) -> list[str]:
    method = body.sorting_method
    if method == "predefined" and ordered:
        return paths
    if method == "natural":
        return sorted(paths, key=_natural_key)
    if method == "random":
        shuffled = sorted(paths)
        random.Random(seed).shuffle(shuffled)
        return shuffled
    return sorted(paths)


def _expand_archives(settings: Settings, gathered: Gathered, body: DataRequest) -> list[str]:
    if gathered.storage != "local":
        return gathered.paths
    raw = Path(gathered.source.root)
    budget = UnpackBudget(
        max_members=settings.media.max_archive_members,
        max_bytes=settings.media.max_unpacked_bytes,
        max_ratio=settings.media.max_compression_ratio,
    )
    out: list[str] = []
    for path in gathered.paths:
        if kind_of(path) != "archive":
            out.append(path)
            continue
        archive = safe_join(raw, path)
        hidden = archive.with_name(f".{archive.name}.unpacking")
        os.replace(archive, hidden)
        members = unpack(hidden, archive.parent, budget, PurePosixPath(path).name)
        hidden.unlink()
        folder = str(PurePosixPath(path).parent)
        unpacked = [f"{folder}/{m}" if folder != "." else str(m) for m in members]
        out.extend(m for m in unpacked if kind_of(m) != "archive" or _nested(m))
    return out


def _nested(path: str) -> bool:
    raise InvalidInput(f"{path}: archives inside archives are not supported.")


def _frame_range(count: int, body: DataRequest, what: str) -> range:
    start = body.start_frame
    stop = count - 1 if body.stop_frame is None else min(body.stop_frame, count - 1)
    if start >= count:
        raise InvalidInput(
            f"start_frame {start} is beyond the last {what} ({count - 1}).", field="start_frame"
        )
    if stop < start:
        raise InvalidInput("stop_frame is before start_frame.", field="stop_frame")
    return range(start, stop + 1, body.step)


def _prepare(
    settings: Settings,
    body: DataRequest,
    gathered: Gathered,
    progress: Callable[..., None],
    seed: str,
) -> Prepared:
    paths = _expand_archives(settings, gathered, body)
    kinds = {p: kind_of(p) for p in paths}
    unsupported = [p for p, k in kinds.items() if k == "unsupported"]
    if unsupported:
        shown = ", ".join(PurePosixPath(p).name for p in unsupported[:5])
        raise InvalidInput(f"Unsupported file types: {shown}.")
    media_files = [p for p in paths if kinds[p] == "image"]
    videos = [p for p in paths if kinds[p] == "video"]
    if len(media_files) + len(videos) > settings.media.max_files:
        raise InvalidInput(f"More than {settings.media.max_files} media files.")
    if videos and media_files:
        raise InvalidInput("A task holds either one video or images, not both.")
    if len(videos) > 1:
        raise InvalidInput("A task holds one video; several were given.")
    if videos:
        return _prepare_video(settings, body, gathered, videos[0], progress)
    if not media_files:
        raise InvalidInput("No images or videos were found in the data.")
    related = [p for p in paths if kinds[p] == "related"]
    return _prepare_images(settings, body, gathered, media_files, related, progress, seed)


def _prepare_video(
    settings: Settings,
    body: DataRequest,
    gathered: Gathered,
    path: str,
    progress: Callable[..., None],
) -> Prepared:
    if body.job_file_mapping:
        raise InvalidInput("job_file_mapping applies to images only.", field="job_file_mapping")
    name = PurePosixPath(path).name
    progress(0.1, f"Reading the video {name}", force=True)
    handle = gathered.source.video(path)
    try:
        info = video.probe_video(
            handle,
            name,
            max_frames=settings.media.max_video_frames,
            max_decode=settings.media.max_keyframe_interval,
        )
    finally:
        if not isinstance(handle, str):
            handle.close()
    chosen = _frame_range(len(info.frames), body, "frame of the video")
    frames = [
        FrameInfo(
            path=path,
            width=info.width,
            height=info.height,
            pts=info.frames[i].pts,
            key_pts=info.frames[i].key_pts,
        )
        for i in chosen
    ]
    return Prepared(
        frames=frames,
        related=[],
        mode="interpolation",
        original_chunk_type="video",
        compressed_chunk_type="imageset" if body.use_zip_chunks else "video",
        storage=gathered.storage,
        cloud_storage_id=gathered.cloud_storage_id,
        start_frame=chosen.start,
        stop_frame=chosen[-1],
    )


def prepare_files(
    settings: Settings,
    body: DataRequest,
    source: MediaSource,
    paths: list[str],
    *,
    ordered: bool,
    progress: Callable[..., None],
    seed: str,
    probe_threads: int = 1,
) -> Prepared:
    """Frames of files already in ``source`` (a restored backup's media): sorted, selected
    and checked exactly as for a new task; ``ordered`` keeps the given order for
    ``predefined`` sorting."""
    gathered = Gathered(source, paths, source.storage, ordered=ordered, probe_threads=probe_threads)
    return _prepare(settings, body, gathered, progress, seed)


def _probe_all(
    settings: Settings,
    source: MediaSource,
    paths: list[str],
    progress: Callable[..., None],
    threads: int = 1,
) -> list[images.ImageInfo]:
    infos: list[images.ImageInfo] = []
    total = len(paths)
    max_pixels = settings.media.max_image_pixels
    if source.access is None and threads > 1:

        def probe(path: str) -> images.ImageInfo:
            data = source.read(path)
            return images.probe_image(data, PurePosixPath(path).name, max_pixels=max_pixels)

        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            for done, info in enumerate(pool.map(probe, paths), 1):
                infos.append(info)
                progress(0.1 + 0.85 * done / total, f"Checked {done} of {total} images")
        return infos
    batch = _CLOUD_BATCH if source.access is not None else 1
    for start in range(0, total, batch):
        chunk = paths[start : start + batch]
        for path, data in zip(chunk, source.read_many(chunk), strict=True):
            infos.append(images.probe_image(data, PurePosixPath(path).name, max_pixels=max_pixels))
        done = min(start + batch, total)
        progress(0.1 + 0.85 * done / total, f"Checked {done} of {total} images")
    return infos


def _prepare_images(
    settings: Settings,
    body: DataRequest,
    gathered: Gathered,
    media_files: list[str],
    related: list[str],
    progress: Callable[..., None],
    seed: str,
) -> Prepared:
    job_ranges: list[tuple[int, int]] | None = None
    if body.job_file_mapping:
        if body.start_frame or body.stop_frame is not None or body.step != 1:
            raise InvalidInput(
                "job_file_mapping cannot be combined with start_frame, stop_frame or frame_filter.",
                field="job_file_mapping",
            )
        ordered, job_ranges = _job_mapping(body.job_file_mapping, media_files)
    else:
        ordered = _sorted(media_files, body, gathered.ordered, seed)
        ordered = [ordered[i] for i in _frame_range(len(ordered), body, "image")]
    infos = _probe_all(settings, gathered.source, ordered, progress, gathered.probe_threads)
    index = {p: i for i, p in enumerate(ordered)}
    related_pairs: list[tuple[int, str]] = []
    counts: dict[int, int] = {}
    for path in sorted(related):
        owner = related_owner(path)
        frame = index.get(owner) if owner else None
        if frame is not None:
            related_pairs.append((frame, path))
            counts[frame] = counts.get(frame, 0) + 1
    frames = [
        FrameInfo(path=p, width=info.width, height=info.height, related_files=counts.get(i, 0))
        for i, (p, info) in enumerate(zip(ordered, infos, strict=True))
    ]
    start = 0 if body.job_file_mapping else body.start_frame
    return Prepared(
        frames=frames,
        related=related_pairs,
        mode="annotation",
        original_chunk_type="imageset",
        compressed_chunk_type="imageset",
        storage=gathered.storage,
        cloud_storage_id=gathered.cloud_storage_id,
        start_frame=start,
        stop_frame=start + (len(frames) - 1) * body.step,
        job_ranges=job_ranges,
    )


def _job_mapping(
    mapping: list[list[str]], files: list[str]
) -> tuple[list[str], list[tuple[int, int]]]:
    by_name: dict[str, str] = {}
    for path in files:
        by_name.setdefault(path, path)
        by_name.setdefault(PurePosixPath(path).name, path)
    ordered: list[str] = []
    ranges: list[tuple[int, int]] = []
    for job in mapping:
        if not job:
            raise InvalidInput("A job in job_file_mapping has no files.", field="job_file_mapping")
        start = len(ordered)
        for name in job:
            found = by_name.get(name)
            if found is None:
                raise InvalidInput(f"{name}: not among the files.", field="job_file_mapping")
            ordered.append(found)
        ranges.append((start, len(ordered) - 1))
    if len(set(ordered)) != len(ordered) or set(ordered) != set(files):
        raise InvalidInput(
            "job_file_mapping must name every image exactly once.", field="job_file_mapping"
        )
    return ordered, ranges


# --- housekeeping ---------------------------------------------------------------------------


def collect_garbage(db: Database, settings: Settings, *, older_than_s: float = 3600) -> int:
    """Remove data folders whose data record is gone (deleted tasks), staging folders of
    requests that are no longer running, and uploads nobody will finish. Returns how many
    folders were removed."""
    removed = 0
    now = time.time()
    data_root = settings.media_dir / "data"
    if data_root.is_dir():
        with db.session() as session:
            alive = set(session.scalars(select(Data.id)))
        for entry in data_root.iterdir():
            if entry.name.isdigit() and int(entry.name) not in alive:
                if now - entry.stat().st_mtime > older_than_s:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed += 1
    staging_root = settings.media_dir / "staging"
    if staging_root.is_dir():
        with db.session() as session:
            running = set(
                session.scalars(
                    select(BackgroundRequest.id).where(
                        BackgroundRequest.status.in_(("queued", "started"))
                    )
                )
            )
        for entry in staging_root.iterdir():
            if entry.name not in running and now - entry.stat().st_mtime > older_than_s:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed + _collect_uploads(db, settings)


def _collect_uploads(db: Database, settings: Settings) -> int:
    """Uploads of tasks that have data (processing removes them; this catches leftovers),
    and uploads idle for ``media.upload_expiry_s``. An upload is idle when no call touched
    it (each TUS PATCH block and HEAD does: see ``UploadArea``), so a resumable upload that
    takes days stays while its client keeps going. Never removed: the upload of a task with
    a queued or started ``create:task`` request, whatever its age."""
    uploads = settings.uploads_dir / "tasks"
    if not uploads.is_dir():
        return 0
    removed = 0
    for leftover in leftover_removals(settings.uploads_dir):
        shutil.rmtree(leftover, ignore_errors=True)
    with db.session() as session:
        tasks_with_data = set(session.scalars(select(Task.id).where(Task.data_id.is_not(None))))
        busy = set(
            session.scalars(
                select(BackgroundRequest.task_id).where(
                    BackgroundRequest.operation_type == CREATE_TASK,
                    BackgroundRequest.status.in_(("queued", "started")),
                )
            )
        )
    for entry in uploads.iterdir():
        if not entry.name.isdigit() or int(entry.name) in busy:
            continue
        area = upload_area(settings, int(entry.name))
        idle_s = 0 if int(entry.name) in tasks_with_data else settings.media.upload_expiry_s
        # the activity is read again right before the removal: a call that came after the
        # database was asked (an Upload-Finish queueing a request) has touched it
        if area.remove_if_idle(idle_s):
            removed += 1
    return removed
