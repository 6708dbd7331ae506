"""The task view of annotations: splitting task-level writes into jobs, merging jobs on read.

Annotations belong to jobs. As in CVAT (``TaskAnnotation``, ``AnnotationIR.slice``,
``AnnotationManager.merge``):

- **Writes to a task** go to the job(s) whose frames hold each object. A tag or shape on a
  frame that two overlapping jobs share is written to both. A track is sliced per job: its
  keyframes inside the job's frames, plus an interpolated keyframe on the job's first frame
  when the track was already visible there, and on the job's last frame when it goes on
  after it (leading outside keyframes dropped).
- **Reading a task** is the union of its jobs in segment order. On the frames that a job
  shares with the previous one, its tags and shapes that match one of the previous job's
  (same frame and label; tags: nothing else; rectangles of equal rotation: IoU >= 0.75;
  other shapes: the same type and points) are left out. A track of the previous job that is
  still visible at that job's end is joined with a matching track of the next job that starts
  on the shared frames (mean similarity >= 0.5 over those frames; keyframes united, the earlier
  job's winning on the same frame); one that is not joined ends with an outside keyframe on
  the frame after the job.

Deviations from CVAT: CVAT matches shapes with the Hungarian algorithm and compares polygons
by area IoU (other types never match, so their copies appear twice); here matching is greedy,
rectangles use IoU and every other type matches only an identical shape. Task-level updates
and deletes by id change the object in the job that holds it, not its copy in a neighbouring
job (as in CVAT).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from msgspec import structs

from cvat_ray.storage.annotations.interpolation import FrameShape, interpolate
from cvat_ray.storage.schemas.annotations import (
    LabeledData,
    LabeledImage,
    LabeledShape,
    LabeledTrack,
    SubLabeledTrack,
    TrackedShape,
)

SHAPE_IOU = 0.75
TRACK_SIMILARITY = 0.5


@dataclass(frozen=True)
class JobRange:
    id: int
    start: int
    stop: int
    # explicit frame list (ground-truth jobs); None for a range
    frames: frozenset[int] | None = None

    def holds(self, frame: int) -> bool:
        return self.start <= frame <= self.stop and (self.frames is None or frame in self.frames)


class JobIndex:
    """Finds the jobs that hold a frame without scanning every job (a task may have
    thousands; neighbouring jobs overlap by at most half a segment)."""

    def __init__(self, jobs: Sequence[JobRange]) -> None:
        self.jobs = sorted(jobs, key=lambda j: (j.start, j.id))
        self.starts = [j.start for j in self.jobs]
        self.max_length = max((j.stop - j.start + 1 for j in self.jobs), default=0)
        # frame -> its jobs (a payload's objects share few frames); read-only lists
        self._seen: dict[int, list[JobRange]] = {}

    def holding(self, frame: int) -> list[JobRange]:
        found = self._seen.get(frame)
        if found is None:
            found = self._seen[frame] = self._find(frame)
        return found

    def _find(self, frame: int) -> list[JobRange]:
        found: list[JobRange] = []
        k = bisect.bisect_right(self.starts, frame) - 1
        while k >= 0 and self.jobs[k].start > frame - self.max_length:
            if self.jobs[k].holds(frame):
                found.append(self.jobs[k])
            k -= 1
        found.reverse()
        return found

    def from_frame(self, frame: int) -> list[JobRange]:
        """Jobs that end at or after ``frame``, in order."""
        return [j for j in self.jobs if j.stop >= frame]


# ---------------------------------------------------------------------------------- writes


def _copy_shape(shape: LabeledShape) -> LabeledShape:
    return structs.replace(
        shape, id=None, elements=[structs.replace(e, id=None) for e in shape.elements]
    )


def slice_track(track: SubLabeledTrack, start: int, stop: int) -> list[TrackedShape]:
    """The keyframes of ``track`` for a job on frames ``start..stop`` (CVAT's _slice_track)."""
    keys = track.shapes
    inside = [s for s in keys if start <= s.frame <= stop]
    if len(inside) < len(keys):
        around = interpolate(track, start, stop + 1, with_elements=False)
        if around:
            first, last = around[0], around[-1]
            if first.frame == start and not first.keyframe:
                inside.insert(0, first.to_tracked())
            if last.frame == stop and not last.keyframe and keys[-1].frame > stop:
                inside.append(last.to_tracked())
    while inside and inside[0].outside:
        inside.pop(0)
    return inside


def _slice_labeled_track(track: LabeledTrack, job: JobRange) -> LabeledTrack | None:
    shapes = slice_track(track, job.start, job.stop)
    if not shapes:
        return None
    elements = []
    for e in track.elements:
        element_shapes = slice_track(e, job.start, job.stop)
        if element_shapes:
            elements.append(
                structs.replace(e, id=None, frame=element_shapes[0].frame, shapes=element_shapes)
            )
    return structs.replace(track, id=None, frame=shapes[0].frame, shapes=shapes, elements=elements)


@dataclass
class Split:
    """A task-level payload split into jobs; ``firsts`` pairs each input track with its
    first piece, to give the input the piece's ids once they are assigned."""

    per_job: dict[int, LabeledData]
    firsts: list[tuple[LabeledTrack, LabeledTrack]]

    def copy_track_ids(self) -> None:
        for source, piece in self.firsts:
            source.id = piece.id
            ids = {e.label_id: e.id for e in piece.elements}
            for e in source.elements:
                e.id = ids.get(e.label_id)


def split_for_jobs(
    data: LabeledData, jobs: Sequence[JobRange], index: JobIndex | None = None
) -> Split:
    """Objects per job. The first job holding a tag or shape gets the object itself (so its
    id is assigned to the caller's object), later ones a copy. ``index``: the jobs' index,
    when the caller keeps one."""
    per_job = {job.id: LabeledData() for job in jobs}
    index = index or JobIndex(jobs)
    for tag in data.tags:
        for k, job in enumerate(index.holding(tag.frame)):
            per_job[job.id].tags.append(tag if k == 0 else structs.replace(tag, id=None))
    for shape in data.shapes:
        holding = index.holding(shape.frame)
        if len(holding) == 1:  # the usual case, without the loop
            per_job[holding[0].id].shapes.append(shape)
            continue
        for k, job in enumerate(holding):
            per_job[job.id].shapes.append(shape if k == 0 else _copy_shape(shape))
    firsts: list[tuple[LabeledTrack, LabeledTrack]] = []
    for track in data.tracks:
        first = True
        for job in index.from_frame(track.shapes[0].frame if track.shapes else track.frame):
            piece = _slice_labeled_track(track, job)
            if piece is not None:
                per_job[job.id].tracks.append(piece)
                if first:
                    firsts.append((track, piece))
                    first = False
    return Split(per_job, firsts)


# ---------------------------------------------------------------------------------- reads


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ax1, ay1, ax2, ay2 = min(a[0], a[2]), min(a[1], a[3]), max(a[0], a[2]), max(a[1], a[3])
    bx1, by1, bx2, by2 = min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])
    w = min(ax2, bx2) - max(ax1, bx1)
    h = min(ay2, by2) - max(ay1, by1)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def _same_points(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-6 for x, y in zip(a, b, strict=True))


def shape_similarity(
    kind_a: str,
    points_a: Sequence[float],
    rot_a: float,
    kind_b: str,
    points_b: Sequence[float],
    rot_b: float,
) -> float:
    if kind_a != kind_b or abs(rot_a - rot_b) > 1e-6:
        return 0.0
    if kind_a == "rectangle":
        return _iou(points_a, points_b)
    return 1.0 if _same_points(points_a, points_b) else 0.0


def _shapes_match(a: LabeledShape, b: LabeledShape) -> bool:
    if a.label_id != b.label_id:
        return False
    if a.type == "skeleton" and b.type == "skeleton":
        mine = {e.label_id: e.points for e in a.elements}
        return all(_same_points(mine.get(e.label_id, ()), e.points) for e in b.elements)
    return shape_similarity(a.type, a.points, a.rotation, b.type, b.points, b.rotation) >= SHAPE_IOU


def duplicates(
    previous: Sequence[LabeledShape | LabeledImage], current: Sequence[LabeledShape | LabeledImage]
) -> set[int]:
    """Ids of ``current`` objects that repeat one of ``previous`` on the same frame."""
    by_frame: dict[int, list[LabeledShape | LabeledImage]] = {}
    for obj in previous:
        by_frame.setdefault(obj.frame, []).append(obj)
    found: set[int] = set()
    for obj in current:
        candidates = by_frame.get(obj.frame)
        if not candidates:
            continue
        for k, old in enumerate(candidates):
            if isinstance(obj, LabeledShape):
                if not isinstance(old, LabeledShape) or not _shapes_match(old, obj):
                    continue
            elif old.label_id != obj.label_id:
                continue
            assert obj.id is not None
            found.add(obj.id)
            del candidates[k]
            break
    return found


def _frame_similarity(a: FrameShape | None, b: FrameShape | None) -> float:
    if a is None or b is None:
        return 0.0
    if a.outside != b.outside:
        return 0.0
    if a.outside:
        return 1.0
    if a.type == "skeleton":
        mine = {label: s.points for label, s in a.elements}
        same = all(_same_points(mine.get(label, ()), s.points) for label, s in b.elements)
        return 1.0 if same else 0.0
    return shape_similarity(a.type, a.points, a.rotation, b.type, b.points, b.rotation)


def track_similarity(a: LabeledTrack, b: LabeledTrack, start: int, stop: int) -> float:
    """Mean similarity of two tracks on the frames ``start..stop`` (CVAT's TrackManager)."""
    if a.label_id != b.label_id:
        return 0.0
    sa = {s.frame: s for s in interpolate(a, start, stop + 1)}
    sb = {s.frame: s for s in interpolate(b, start, stop + 1)}
    count = 0
    error = 0.0
    for frame in range(start, stop + 1):
        fa, fb = sa.get(frame), sb.get(frame)
        if fa is None and fb is None:
            continue
        count += 1
        error += 1 - _frame_similarity(fa, fb)
    return 1 - error / count if count else 0.0


def _unite_keys(
    earlier: Sequence[TrackedShape], later: Sequence[TrackedShape]
) -> list[TrackedShape]:
    keys = {s.frame: s for s in later}
    keys.update({s.frame: s for s in earlier})
    return [keys[f] for f in sorted(keys)]


def unite_tracks(earlier: LabeledTrack, later: LabeledTrack) -> LabeledTrack:
    """One track from a track of a job and its continuation in the next job."""
    elements = {e.label_id: e for e in earlier.elements}
    united_elements: list[SubLabeledTrack] = []
    for e in later.elements:
        old = elements.pop(e.label_id, None)
        if old is None:
            united_elements.append(e)
        else:
            united_elements.append(structs.replace(old, shapes=_unite_keys(old.shapes, e.shapes)))
    united_elements.extend(elements.values())
    return structs.replace(
        earlier,
        frame=min(earlier.frame, later.frame),
        shapes=_unite_keys(earlier.shapes, later.shapes),
        elements=united_elements,
    )


def alive_at_end(track: SubLabeledTrack) -> bool:
    return bool(track.shapes) and not track.shapes[-1].outside


def end_track(track: LabeledTrack, frame: int) -> None:
    """Hide a track from ``frame`` on (CVAT's ``_modify_unmatched_object``)."""
    for t in (track, *track.elements):
        last = t.shapes[-1] if t.shapes else None
        if last is not None and not last.outside and last.frame < frame:
            t.shapes.append(structs.replace(last, frame=frame, outside=True))


class TrackJoiner:
    """Carries tracks still visible at a job's end over to the next job (bounded memory:
    only those tracks are held)."""

    def __init__(self) -> None:
        self.pending: list[LabeledTrack] = []
        self.previous: JobRange | None = None

    def job(self, job: JobRange, tracks: Sequence[LabeledTrack], last: bool) -> list[LabeledTrack]:
        """Tracks ready to send after reading ``job``'s tracks."""
        out: list[LabeledTrack] = []
        shared: tuple[int, int] | None = None
        if self.previous is not None and job.start <= self.previous.stop:
            shared = (job.start, self.previous.stop)
        carried: list[LabeledTrack] = []
        for track in tracks:
            if shared is not None and self.pending and track.frame <= shared[1]:
                best, best_score = None, TRACK_SIMILARITY
                for k, old in enumerate(self.pending):
                    score = track_similarity(old, track, *shared)
                    if score >= best_score:
                        best, best_score = k, score
                if best is not None:
                    track = unite_tracks(self.pending.pop(best), track)
            carried.append(track)
        if self.previous is not None:
            for old in self.pending:
                end_track(old, self.previous.stop + 1)
                out.append(old)
        self.pending = []
        for track in carried:
            if not last and alive_at_end(track):
                self.pending.append(track)
            else:
                out.append(track)
        self.previous = job
        return out
