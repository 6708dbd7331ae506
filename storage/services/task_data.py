"""Attaching media to a task: the data record, the frame manifest, segments and jobs.

This is the domain step the media pipeline ends with, once frames are decoded and known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import insert
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import Conflict, InvalidInput
from cvat_ray.storage.models import Data, DataFrame, Task, utcnow
from cvat_ray.storage.services.segments import create_segments_and_jobs, refresh_task_status


@dataclass(frozen=True)
class FrameInfo:
    path: str
    width: int
    height: int
    related_files: int = 0
    # video frames: presentation timestamp and the keyframe to seek to
    pts: int | None = None
    key_pts: int | None = None


def default_chunk_size(frames: Sequence[FrameInfo], chunk_type: str) -> int:
    """CVAT's rule: fewer frames per chunk for larger images, 36 frames per video chunk."""
    if chunk_type != "imageset" or not frames:
        return 36
    area = max(f.width * f.height for f in frames)
    return max(2, min(72, 36 * 1920 * 1080 // max(area, 1)))


def fitting_chunk_size(
    frames: Sequence[FrameInfo], wanted: int, *, max_frames: int, max_pixels: int
) -> int:
    """``wanted`` lowered so that no chunk holds more than ``max_frames`` frames or (unless
    it is one frame) ``max_pixels`` pixels, the largest frame counted for every frame."""
    area = max((f.width * f.height for f in frames), default=1)
    return max(1, min(wanted, max_frames, max_pixels // max(area, 1)))


def attach_data(
    session: Session,
    task: Task,
    frames: Sequence[FrameInfo],
    *,
    mode: str = "annotation",
    chunk_size: int | None = None,
    image_quality: int = 70,
    original_chunk_type: str = "imageset",
    compressed_chunk_type: str = "imageset",
    start_frame: int = 0,
    stop_frame: int | None = None,
    frame_filter: str = "",
    sorting_method: str = "lexicographical",
    storage: str = "local",
    storage_method: str = "cache",
    cloud_storage_id: int | None = None,
    job_ranges: Sequence[tuple[int, int]] | None = None,
    max_chunk_size: int | None = None,
    max_chunk_pixels: int | None = None,
) -> Data:
    """Create the task's data record, frame list, segments and jobs in one go. The chunk
    size (``chunk_size``, or CVAT's default) is lowered to fit ``max_chunk_size`` frames and
    ``max_chunk_pixels`` pixels (:func:`fitting_chunk_size`)."""
    if task.data_id is not None:
        raise Conflict("The task already has data.")
    if not frames:
        raise InvalidInput("No media files were found.", field="client_files")
    if not 0 <= image_quality <= 100:
        raise InvalidInput("Must be between 0 and 100.", field="image_quality")
    size = len(frames)
    chunk_size = chunk_size or default_chunk_size(frames, original_chunk_type)
    if max_chunk_size is not None or max_chunk_pixels is not None:
        chunk_size = fitting_chunk_size(
            frames,
            chunk_size,
            max_frames=max_chunk_size or chunk_size,
            max_pixels=max_chunk_pixels or 2**63,
        )
    data = Data(
        size=size,
        chunk_size=chunk_size,
        image_quality=image_quality,
        start_frame=start_frame,
        stop_frame=start_frame + size - 1 if stop_frame is None else stop_frame,
        frame_filter=frame_filter,
        original_chunk_type=original_chunk_type,
        compressed_chunk_type=compressed_chunk_type,
        sorting_method=sorting_method,
        storage=storage,
        storage_method=storage_method,
        cloud_storage_id=cloud_storage_id,
        deleted_frames=[],
        chunks_updated_date=utcnow(),
    )
    session.add(data)
    session.flush()
    session.execute(
        insert(DataFrame),
        [
            {
                "data_id": data.id,
                "frame": i,
                "path": f.path,
                "width": f.width,
                "height": f.height,
                "related_files": f.related_files,
                "pts": f.pts,
                "key_pts": f.key_pts,
            }
            for i, f in enumerate(frames)
        ],
    )
    task.data_id = data.id
    task.mode = mode
    create_segments_and_jobs(session, task, size, job_ranges)
    refresh_task_status(session, task)
    task.updated_date = utcnow()
    session.flush()
    return data
