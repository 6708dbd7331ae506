"""Reading task data: meta (and deleted frames), and the plans the API renders into chunks,
frames, previews and context images.

A plan (:class:`~cvat_ray.storage.media.render.RenderPlan`) is built here, in the database call that
also authorizes the request; the bytes are made outside it (``cvat_ray.storage.media.render``) and
cached under the plan's key, which names the data record and its ``chunks_updated_date``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import authorize
from cvat_ray.storage.changes import Actor, Scope
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.media.render import FrameRef, Quality, RenderPlan
from cvat_ray.storage.media.sources import MediaSource
from cvat_ray.storage.models import (
    CloudStorage,
    Data,
    DataFrame,
    Job,
    RelatedFile,
    Segment,
    Task,
    utcnow,
)
from cvat_ray.storage.schemas.data import DataMetaPatch, DataMetaRead, FrameMeta
from cvat_ray.storage.services.cloud_storages import access_for
from cvat_ray.storage.services.data_processing import raw_dir
from cvat_ray.storage.services.resources import (
    get_job,
    get_project,
    get_task,
    job_resource,
    project_resource,
    task_resource,
)

DataType = Literal["chunk", "frame", "preview", "context_image"]


class NoMedia(NotFound):
    """The object exists but has no media yet (a task without data, a project without such
    tasks): a 404, or a 204 for clients that prefer an empty answer to a placeholder."""


def _data(session: Session, task: Task) -> Data:
    data = session.get(Data, task.data_id) if task.data_id is not None else None
    if data is None:
        raise NoMedia("The task has no data yet.")
    return data


def source_of(session: Session, data: Data, settings: Settings) -> MediaSource:
    if data.storage == "cloud_storage":
        storage = (
            session.get(CloudStorage, data.cloud_storage_id) if data.cloud_storage_id else None
        )
        if storage is None:
            raise NotFound("The task's cloud storage was deleted; its frames cannot be read.")
        return MediaSource(
            storage="cloud_storage",
            access=access_for(storage, settings),
            timeout=settings.cloud.timeout_s,
        )
    if data.storage == "share":
        if settings.media.share_root is None:
            raise NotFound("The server's file share is not configured any more.")
        return MediaSource(storage="share", root=str(settings.media.share_root.resolve()))
    return MediaSource(storage="local", root=str(raw_dir(settings, data.id)))


def _frames(session: Session, data: Data, numbers: list[int]) -> tuple[FrameRef, ...]:
    if not numbers:
        return ()
    lo, hi = min(numbers), max(numbers)
    rows = {
        r.frame: r
        for r in session.scalars(
            select(DataFrame).where(
                DataFrame.data_id == data.id, DataFrame.frame >= lo, DataFrame.frame <= hi
            )
        )
    }
    return tuple(
        FrameRef(
            path=rows[n].path,
            width=rows[n].width,
            height=rows[n].height,
            pts=rows[n].pts,
            key_pts=rows[n].key_pts,
        )
        for n in numbers
    )


def _key(data: Data, *parts: object) -> str:
    stamp = int(data.chunks_updated_date.timestamp() * 1_000_000)
    return f"d{data.id}-{stamp}:" + ":".join(str(p) for p in parts)


def _asked(
    plan: RenderPlan, ctx: RequestContext, task: Task, job_id: int | None = None
) -> RenderPlan:
    """The plan with who asked for it and what it belongs to (the cache item events')."""
    ids = Scope(
        org_id=task.organization_id, project_id=task.project_id, task_id=task.id, job_id=job_id
    )
    return replace(plan, origin=(Actor.of(ctx), ids))


def cache_prefix(data_id: int) -> str:
    return f"d{data_id}-"


def _media(data: Data) -> Literal["imageset", "video"]:
    return "video" if data.original_chunk_type == "video" else "imageset"


def _plan(
    session: Session,
    data: Data,
    settings: Settings,
    kind: DataType,
    numbers: list[int],
    quality: Quality,
    key: str,
) -> RenderPlan:
    chunk_type = data.original_chunk_type if quality == "original" else data.compressed_chunk_type
    related: tuple[str, ...] = ()
    if kind == "context_image":
        related = tuple(
            session.scalars(
                select(RelatedFile.path)
                .where(RelatedFile.data_id == data.id, RelatedFile.frame == numbers[0])
                .order_by(RelatedFile.id)
            )
        )
        if not related:
            raise NotFound("The frame has no context images.")
    plan = RenderPlan(
        kind=kind,
        key=key,
        source=source_of(session, data, settings),
        frames=_frames(session, data, numbers),
        media=_media(data),
        chunk_type="video" if chunk_type == "video" else "imageset",
        quality=quality,
        image_quality=data.image_quality,
        preview_size=settings.media.preview_size,
        related=related,
        max_decode=settings.media.max_keyframe_interval,
    )
    if kind == "chunk":
        _check_chunk(plan, settings)
    return plan


def _check_chunk(plan: RenderPlan, settings: Settings) -> None:
    """Refuse a chunk over the server's limits: tasks get chunk sizes within them when they
    are made, so only a task made under looser limits (or restored) meets this."""
    count = len(plan.frames)
    pixels = sum(f.width * f.height for f in plan.frames)
    limits = settings.media
    if count > limits.max_chunk_size or (count > 1 and pixels > limits.max_chunk_pixels):
        raise InvalidInput(
            f"The chunk holds {count} frames ({pixels} pixels); this server builds chunks of at "
            f"most {limits.max_chunk_size} frames and {limits.max_chunk_pixels} pixels. Read "
            "its frames one by one (type=frame).",
            field="number",
        )


def frames_plan(session: Session, task: Task, settings: Settings, numbers: list[int]) -> RenderPlan:
    """A plan to decode the task's frames ``numbers`` (no authorization: the caller has
    authorized the work this is for). Raises NotFound when the task has no data."""
    data = _data(session, task)
    return _plan(session, data, settings, "frame", numbers, "original", _key(data, "m"))


def deleted_frames(session: Session, task: Task) -> frozenset[int]:
    data = _data(session, task)
    return frozenset(data.deleted_frames or ())


def _check_number(number: int | None, limit: int, what: str) -> int:
    if number is None:
        raise InvalidInput(f"The {what} number is required.", field="number")
    if not 0 <= number < limit:
        raise InvalidInput(f"The {what} number must be between 0 and {limit - 1}.", field="number")
    return number


def _data_plan(
    session: Session,
    data: Data,
    settings: Settings,
    kind: DataType,
    number: int | None,
    quality: Quality,
    allowed: list[int] | None = None,
) -> RenderPlan:
    """A plan over the task's frames; ``allowed`` limits them (a job's frames: its chunks
    are planned by :func:`job_data`)."""
    size = data.size
    if kind == "chunk":
        assert allowed is None
        chunk_size = data.chunk_size or 36
        n = _check_number(number, -(-size // chunk_size), "chunk")
        numbers = list(range(n * chunk_size, min(size, (n + 1) * chunk_size)))
        return _plan(session, data, settings, kind, numbers, quality, _key(data, "c", quality, n))
    if kind == "preview":
        first = (allowed or list(range(size)))[0]
        return _plan(session, data, settings, kind, [first], "original", _key(data, "p", first))
    n = _check_number(number, size, "frame")
    if allowed is not None and n not in allowed:
        raise InvalidInput("The frame is not in the job.", field="number")
    tag = "f" if kind == "frame" else "x"
    return _plan(session, data, settings, kind, [n], quality, _key(data, tag, quality, n))


def task_data(
    session: Session,
    ctx: RequestContext,
    task_id: int,
    kind: DataType,
    number: int | None,
    quality: Quality,
    settings: Settings,
) -> RenderPlan:
    """CVAT ``GET /api/tasks/{id}/data/?type=&number=&quality=``."""
    task = get_task(session, task_id)
    scope = "view" if kind == "preview" else "view:data"
    authorize(ctx.principal, ctx.org, scope, task_resource(session, task))
    plan = _data_plan(session, _data(session, task), settings, kind, number, quality)
    return _asked(plan, ctx, task)


def task_preview(
    session: Session, ctx: RequestContext, task_id: int, settings: Settings
) -> RenderPlan:
    return task_data(session, ctx, task_id, "preview", None, "original", settings)


def job_frames(segment: Segment) -> list[int]:
    if segment.frames is not None:
        return sorted(segment.frames)
    return list(range(segment.start_frame, segment.stop_frame + 1))


def _job(
    session: Session, ctx: RequestContext, job_id: int, scope: str
) -> tuple[Job, Segment, Task]:
    job = get_job(session, job_id)
    authorize(ctx.principal, ctx.org, scope, job_resource(session, job))
    segment = session.get(Segment, job.segment_id)
    task = session.get(Task, job.task_id)
    assert segment is not None and task is not None
    return job, segment, task


def job_data(
    session: Session,
    ctx: RequestContext,
    job_id: int,
    kind: DataType,
    number: int | None,
    index: int | None,
    quality: Quality,
    settings: Settings,
) -> RenderPlan:
    """CVAT ``GET /api/jobs/{id}/data``: ``index`` numbers the job's own chunks from 0;
    ``number`` is a task chunk or frame number (as CVAT, deprecated for chunks). A chunk by
    ``number`` holds the frames of that task chunk that are the job's, in order: never
    another job's frames."""
    _, segment, task = _job(session, ctx, job_id, "view" if kind == "preview" else "view:data")
    data = _data(session, task)
    frames = job_frames(segment)
    if kind != "chunk":
        plan = _data_plan(session, data, settings, kind, number, quality, allowed=frames)
        return _asked(plan, ctx, task, job_id)
    chunk_size = data.chunk_size or 36
    if index is not None:
        n = _check_number(index, -(-len(frames) // chunk_size), "chunk")
        numbers = frames[n * chunk_size : (n + 1) * chunk_size]
        key = _key(data, "j", segment.id, quality, n)
        return _asked(
            _plan(session, data, settings, "chunk", numbers, quality, key), ctx, task, job_id
        )
    if number is None:
        raise InvalidInput("The chunk index (or number) is required.", field="index")
    first, last = frames[0] // chunk_size, frames[-1] // chunk_size
    if not first <= number <= last:
        raise InvalidInput(
            f"The chunk number must be between {first} and {last} for this job.", field="number"
        )
    numbers = [f for f in frames if f // chunk_size == number]
    if not numbers:
        raise InvalidInput("The chunk holds none of the job's frames.", field="number")
    key = _key(data, "jn", segment.id, quality, number)
    return _asked(_plan(session, data, settings, "chunk", numbers, quality, key), ctx, task, job_id)


def job_preview(
    session: Session, ctx: RequestContext, job_id: int, settings: Settings
) -> RenderPlan:
    return job_data(session, ctx, job_id, "preview", None, None, "original", settings)


def project_preview(
    session: Session, ctx: RequestContext, project_id: int, settings: Settings
) -> RenderPlan:
    """The preview of the project's first task that has data."""
    project = get_project(session, project_id)
    authorize(ctx.principal, ctx.org, "view", project_resource(project))
    task = session.scalar(
        select(Task)
        .where(Task.project_id == project.id, Task.data_id.is_not(None))
        .order_by(Task.id)
        .limit(1)
    )
    if task is None:
        raise NoMedia("The project has no tasks with data.")
    plan = _data_plan(session, _data(session, task), settings, "preview", None, "original")
    return _asked(plan, ctx, task)


def _frame_metas(session: Session, data: Data, lo: int, hi: int) -> list[FrameMeta]:
    rows = session.execute(
        select(DataFrame.path, DataFrame.width, DataFrame.height, DataFrame.related_files)
        .where(DataFrame.data_id == data.id, DataFrame.frame >= lo, DataFrame.frame <= hi)
        .order_by(DataFrame.frame)
    )
    return [
        FrameMeta(
            name=r.path,
            width=r.width,
            height=r.height,
            related_files=r.related_files,
            has_related_context=r.related_files > 0,
        )
        for r in rows
    ]


def _meta(
    session: Session, data: Data, lo: int, hi: int, deleted: list[int], start: int, stop: int
) -> DataMetaRead:
    if data.original_chunk_type == "video":
        frames = _frame_metas(session, data, lo, lo)  # CVAT: one entry for a video
    else:
        frames = _frame_metas(session, data, lo, hi)
    return DataMetaRead(
        chunks_updated_date=data.chunks_updated_date,
        chunk_size=data.chunk_size,
        size=hi - lo + 1,
        image_quality=data.image_quality,
        start_frame=start,
        stop_frame=stop,
        frame_filter=data.frame_filter,
        frames=frames,
        deleted_frames=deleted,
        storage=data.storage,
        storage_method=data.storage_method,
        sorting_method=data.sorting_method,
        cloud_storage_id=data.cloud_storage_id,
    )


def _step(data: Data) -> int:
    return int(data.frame_filter.split("=", 1)[1]) if data.frame_filter else 1


def task_meta(session: Session, ctx: RequestContext, task_id: int) -> DataMetaRead:
    """CVAT ``GET /api/tasks/{id}/data/meta``."""
    task = get_task(session, task_id)
    authorize(ctx.principal, ctx.org, "view:metadata", task_resource(session, task))
    data = _data(session, task)
    return _meta(
        session,
        data,
        0,
        data.size - 1,
        sorted(data.deleted_frames or []),
        data.start_frame,
        data.stop_frame,
    )


def update_task_meta(
    session: Session, ctx: RequestContext, task_id: int, patch: DataMetaPatch
) -> DataMetaRead:
    """CVAT ``PATCH /api/tasks/{id}/data/meta``: the deleted frames (positions stay)."""
    task = get_task(session, task_id, for_update=True)
    authorize(ctx.principal, ctx.org, "update:metadata", task_resource(session, task))
    data = _data(session, task)
    if patch.deleted_frames is not None:
        _set_deleted(data, sorted(set(patch.deleted_frames)), range(data.size))
        task.updated_date = utcnow()
        session.flush()
    return task_meta(session, ctx, task_id)


def _set_deleted(
    data: Data, wanted: list[int], scope: range | list[int], keep: list[int] | None = None
) -> None:
    allowed = set(scope)
    bad = [f for f in wanted if f not in allowed]
    if bad:
        raise InvalidInput(
            f"Frames {bad[:5]} are not in range; valid frames are {min(allowed)}..{max(allowed)}.",
            field="deleted_frames",
        )
    data.deleted_frames = sorted(set(wanted) | set(keep or []))


def job_meta(session: Session, ctx: RequestContext, job_id: int) -> DataMetaRead:
    """CVAT ``GET /api/jobs/{id}/data/meta``: the job's frames, start and stop in the
    media's numbering, and the deleted frames that fall into the job."""
    _, segment, task = _job(session, ctx, job_id, "view:metadata")
    data = _data(session, task)
    frames = job_frames(segment)
    step = _step(data)
    lo, hi = frames[0], frames[-1]
    deleted = [f for f in (data.deleted_frames or []) if lo <= f <= hi]
    return _meta(
        session, data, lo, hi, deleted, data.start_frame + lo * step, data.start_frame + hi * step
    )


def update_job_meta(
    session: Session, ctx: RequestContext, job_id: int, patch: DataMetaPatch
) -> DataMetaRead:
    """CVAT ``PATCH /api/jobs/{id}/data/meta``: deleted frames within the job."""
    _, segment, task = _job(session, ctx, job_id, "update:metadata")
    task = get_task(session, task.id, for_update=True)
    data = _data(session, task)
    if patch.deleted_frames is not None:
        frames = job_frames(segment)
        outside = [f for f in (data.deleted_frames or []) if f not in set(frames)]
        _set_deleted(data, sorted(set(patch.deleted_frames)), frames, keep=outside)
        task.updated_date = utcnow()
        session.flush()
    return job_meta(session, ctx, job_id)
