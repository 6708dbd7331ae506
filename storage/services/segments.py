"""Segments and jobs of a task, and the status rules of jobs and tasks.

The media pipeline calls :func:`create_segments_and_jobs` once a task's frames are known.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.models import Job, Segment, Task, utcnow

# CVAT's MAX_JOBS_PER_TASK default.
MAX_JOBS_PER_TASK = 5000


def segment_ranges(
    size: int,
    segment_size: int,
    overlap: int | None,
    *,
    mode: str = "annotation",
    media_type: str = "image",
) -> list[tuple[int, int]]:
    """Inclusive (start, stop) frame ranges, following CVAT's segment rules:

    a segment is ``segment_size`` frames (all frames when 0 or larger than the task);
    overlap defaults to 5 for video (interpolation mode), 0 otherwise, and is capped at
    half a segment; segments start every ``segment - overlap`` frames.
    """
    if size <= 0:
        return []
    seg = segment_size if 0 < segment_size <= size else size
    if overlap is None:
        if size <= seg:
            overlap = 0
        elif media_type == "audio":
            overlap = 10000
        elif mode == "interpolation":
            overlap = 5
        else:
            overlap = 0
    overlap = min(overlap, seg // 2)
    step = seg - overlap
    return [(start, min(start + seg - 1, size - 1)) for start in range(0, size - overlap, step)]


def create_segments_and_jobs(
    session: Session,
    task: Task,
    size: int,
    ranges: Sequence[tuple[int, int]] | None = None,
) -> list[Job]:
    """Create one segment with one annotation job per range (computed when not given)."""
    if ranges is None:
        ranges = segment_ranges(
            size, task.segment_size, task.overlap, mode=task.mode, media_type=task.media_type
        )
    if len(ranges) > MAX_JOBS_PER_TASK:
        raise InvalidInput(
            f"The task would have {len(ranges)} jobs; at most {MAX_JOBS_PER_TASK} are allowed. "
            "Use a larger segment_size.",
            field="segment_size",
        )
    now = utcnow()
    segments = [
        Segment(task_id=task.id, start_frame=start, stop_frame=stop, type="range")
        for start, stop in ranges
    ]
    session.add_all(segments)
    session.flush()
    jobs = [
        Job(segment_id=s.id, task_id=task.id, created_date=now, updated_date=now) for s in segments
    ]
    session.add_all(jobs)
    session.flush()
    return jobs


def job_status(stage: str, state: str) -> str:
    """CVAT's derived (deprecated, read-only) job status."""
    if stage == "annotation":
        return "annotation"
    if stage == "acceptance" and state == "completed":
        return "completed"
    return "validation"


def task_status(job_statuses: Sequence[str]) -> str:
    if not job_statuses or "annotation" in job_statuses:
        return "annotation"
    if "validation" in job_statuses:
        return "validation"
    return "completed"


def refresh_task_status(session: Session, task: Task) -> None:
    statuses = session.scalars(select(Job.status).where(Job.task_id == task.id)).all()
    task.status = task_status(statuses)
