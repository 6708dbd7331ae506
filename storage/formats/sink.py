"""Imported items -> ``LabeledData`` for a task (or one job): frames matched by name, labels
and attributes by name.

An item is matched to a frame by its name: the media file's path, that path without its
extension, or its base name (with or without extension); a video's frames are also known as
``frame_000012``. A parsed dataset marked ``by_frame`` (CVAT for video) uses frame numbers.
A label, sublabel or attribute name the task does not have, or an item that matches no
frame, fails the whole import with a message naming it; the exceptions are a parsed
dataset's ``soft_attributes`` (attributes a format always writes, left out where the label
lacks them, as CVAT does). A skeleton's unnamed points take its sublabels in order.

An item's shape with ``track_id`` set (MOTS PNG: its instance id) is a track's keyframe:
once the items' frames are matched, the shapes of one id and label become one track (as
CVAT's MOTS importer builds them), ending (``outside``) on the task's next frame after each
run of frames it is on; a second shape of the id on one frame is a track of its own.
"""

from __future__ import annotations

import itertools
import math
import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TypeVar

import msgspec
from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.annotations.identity import ByIdentity
from cvat_ray.storage.formats.model import Item, Parsed, Shape, Tag, Track, TrackKey
from cvat_ray.storage.formats.source import video_frame_name
from cvat_ray.storage.models import AttributeSpec, Data, DataFrame, Label, Task
from cvat_ray.storage.schemas.annotations import (
    AttributeVal,
    LabeledData,
    LabeledImage,
    LabeledShape,
    LabeledTrack,
    SubLabeledShape,
    SubLabeledTrack,
    TrackedShape,
)


@dataclass(frozen=True)
class _Spec:
    """What an import needs of an attribute spec (plain values: the chunks of an import
    are converted in a thread of their own, away from the session)."""

    id: int
    mutable: bool
    input_type: str


@dataclass
class _LabelRef:
    id: int
    name: str
    specs: dict[str, _Spec] = field(default_factory=dict)
    children: dict[str, _LabelRef] = field(default_factory=dict)


class LabelIndex:
    """The target's labels by name (a project task's are its project's)."""

    def __init__(self, session: Session, task: Task) -> None:
        owner = (
            Label.project_id == task.project_id
            if task.project_id is not None
            else Label.task_id == task.id
        )
        rows = list(session.scalars(select(Label).where(owner).order_by(Label.id)))
        refs = {r.id: _LabelRef(r.id, r.name) for r in rows}
        if rows:
            for a in session.scalars(
                select(AttributeSpec).where(AttributeSpec.label_id.in_(list(refs)))
            ):
                refs[a.label_id].specs[a.name] = _Spec(a.id, a.mutable, a.input_type)
        self.top: dict[str, _LabelRef] = {}
        self._attrs: dict[tuple[object, ...], list[AttributeVal]] = {}
        self._by_object: ByIdentity[
            tuple[_LabelRef, bool | None, frozenset[str], list[AttributeVal]]
        ] = ByIdentity()
        for r in rows:
            if r.parent_id is None:
                self.top[r.name] = refs[r.id]
            elif r.parent_id in refs:
                refs[r.parent_id].children[r.name] = refs[r.id]

    def label(self, name: str, parent: _LabelRef | None = None) -> _LabelRef:
        pool = parent.children if parent is not None else self.top
        ref = pool.get(name)
        if ref is None:
            where = f"label '{parent.name}'" if parent is not None else "the task"
            known = ", ".join(sorted(pool)) or "none"
            raise InvalidInput(
                f"Label '{name}' is not in {where} (its labels: {known}); add it first or "
                "fix the dataset."
            )
        return ref

    def attrs(
        self,
        ref: _LabelRef,
        values: dict[str, str],
        *,
        mutable: bool | None = None,
        soft: frozenset[str] = frozenset(),
    ) -> list[AttributeVal]:
        """The values as the label's attributes. Most objects of a dataset repeat a few
        combinations of values: each is converted once and its list shared (only read
        afterwards; the validator's normalising of a checkbox is the same for each)."""
        if not values:
            return []
        # readers often hand over one dict for many objects: known by identity, else by
        # its items
        same = self._by_object.get(values)
        if same is not None and same[0] is ref and same[1] is mutable and same[2] is soft:
            return same[3]
        key = (ref.id, mutable, soft, *values.items())
        found = self._attrs.get(key)
        if found is None:
            found = self._convert(ref, values, mutable, soft)
            if len(self._attrs) < 10_000:
                self._attrs[key] = found
        self._by_object.put(values, (ref, mutable, soft, found))
        return found

    def _convert(
        self, ref: _LabelRef, values: dict[str, str], mutable: bool | None, soft: frozenset[str]
    ) -> list[AttributeVal]:
        out = []
        for name, value in values.items():
            spec = ref.specs.get(name)
            if spec is None and name in soft:
                continue
            if spec is None:
                known = ", ".join(sorted(ref.specs)) or "none"
                raise InvalidInput(
                    f"Attribute '{name}' is not an attribute of label '{ref.name}' "
                    f"(its attributes: {known})."
                )
            if mutable is not None and spec.mutable != mutable:
                continue
            out.append(AttributeVal(spec_id=spec.id, value=_value(spec, value)))
        return out


def _value(spec: _Spec, value: str) -> str:
    if spec.input_type == "checkbox":
        return "true" if value.strip().lower() in ("true", "1", "yes") else "false"
    return value


class FrameIndex:
    """The task's frames by name."""

    def __init__(self, session: Session, task: Task, frames: Iterable[int] | None = None) -> None:
        self.names: dict[str, int] = {}
        self.frames: set[int] = set()
        self.sizes: dict[int, tuple[int, int]] = {}
        data = session.get(Data, task.data_id) if task.data_id is not None else None
        if data is None:
            raise InvalidInput("The task has no data yet: upload its images before importing.")
        video = data.original_chunk_type == "video"
        wanted = set(frames) if frames is not None else None
        deleted = set(data.deleted_frames or ())
        for frame, path, width, height in session.execute(
            select(DataFrame.frame, DataFrame.path, DataFrame.width, DataFrame.height).where(
                DataFrame.data_id == data.id
            )
        ):
            if (wanted is not None and frame not in wanted) or frame in deleted:
                continue
            self.frames.add(frame)
            self.sizes[frame] = (width, height)
            if video:
                self.names[video_frame_name(frame)] = frame
                continue
            p = PurePosixPath(path)
            for key in (path, str(p.with_suffix("")), p.name, p.stem):
                self.names.setdefault(key, frame)

    def match(self, item: Item, *, by_frame: bool = False) -> int:
        if by_frame:
            if item.frame in self.frames:
                return item.frame
            raise InvalidInput(f"Frame {item.frame} is not a frame of the task.")
        name = item.name.replace("\\", "/")
        found = self.names.get(name)
        if found is not None:  # the usual case, without the cost of a path object
            return found
        p = PurePosixPath(name)
        for key in (name, str(p.with_suffix("")), p.name, p.stem):
            if key in self.names:
                return self.names[key]
        # CVAT XML names items; an item without a matching name falls back to its id
        if item.frame >= 0 and item.frame in self.frames and not name:
            return item.frame
        raise InvalidInput(f"'{item.name}' matches no frame of the task.")


def _elements(labels: LabelIndex, s: Shape, ref: _LabelRef, frame: int) -> list[SubLabeledShape]:
    """A skeleton's points; an element without a name is the sublabel at its position
    (positions past the label's points must be outside: padding up to the largest
    skeleton)."""
    order = list(ref.children)
    positional = any(not e.label for e in s.elements)
    if positional and len(s.elements) < len(order):
        raise InvalidInput(
            f"Label '{ref.name}' has {len(order)} points; the dataset gives "
            f"{len(s.elements)} per skeleton."
        )
    out = []
    for k, e in enumerate(s.elements):
        if not e.label:
            if k >= len(order):
                if e.outside:
                    continue
                raise InvalidInput(
                    f"Label '{ref.name}' has {len(order)} points; the dataset gives point "
                    f"{k + 1} of a skeleton."
                )
            e.label = order[k]
        out.append(_shape(labels, e, frame, ref))
    return out


_SOURCES = frozenset(("manual", "auto", "semi-auto", "file"))


def _shape(
    labels: LabelIndex,
    s: Shape,
    frame: int,
    parent: _LabelRef | None = None,
    soft: frozenset[str] = frozenset(),
) -> SubLabeledShape:
    # keywords spelled out, not a dict of them: an import converts millions of shapes
    ref = labels.label(s.label, parent)
    attributes = labels.attrs(ref, s.attributes, soft=soft) if s.attributes else []
    source = s.source if s.source in _SOURCES else "file"
    score = s.score if 0.0 <= s.score <= 1.0 else min(1.0, max(0.0, s.score))
    rotation = s.rotation % 360
    if parent is not None:
        return SubLabeledShape(
            type=s.type, occluded=s.occluded, outside=s.outside, z_order=s.z_order,  # type: ignore[arg-type]
            rotation=rotation, points=s.points, label_id=ref.id, group=s.group,
            source=source, frame=frame, attributes=attributes, score=score,
        )  # fmt: skip
    return LabeledShape(
        type=s.type, occluded=s.occluded, outside=s.outside, z_order=s.z_order,  # type: ignore[arg-type]
        rotation=rotation, points=s.points, label_id=ref.id, group=s.group, source=source,
        frame=frame, attributes=attributes, score=score,
        elements=_elements(labels, s, ref, frame) if s.elements else [],
    )  # fmt: skip


def _tag(
    labels: LabelIndex, t: Tag, frame: int, soft: frozenset[str] = frozenset()
) -> LabeledImage:
    ref = labels.label(t.label)
    return LabeledImage(
        label_id=ref.id,
        group=t.group,
        source=t.source if t.source in _SOURCES else "file",
        frame=frame,
        attributes=labels.attrs(ref, t.attributes, soft=soft),
    )


def _keys(labels: LabelIndex, ref: _LabelRef, keys: list[TrackKey]) -> list[TrackedShape]:
    """The keyframes (outside ones included) of a track, in frame order."""
    out: list[TrackedShape] = []
    for k in sorted(keys, key=lambda k: k.frame):
        if not k.keyframe and not (k.outside and out and not out[-1].outside):
            continue
        out.append(
            TrackedShape(
                type=k.type,  # type: ignore[arg-type]
                occluded=k.occluded,
                outside=k.outside,
                z_order=k.z_order,
                rotation=k.rotation % 360,
                points=list(k.points),
                attributes=labels.attrs(ref, k.attributes, mutable=True),
                frame=k.frame,
            )
        )
    return out


def _track(
    labels: LabelIndex, t: Track, frames: FrameIndex, parent: _LabelRef | None = None
) -> SubLabeledTrack | None:
    ref = labels.label(t.label, parent)
    last = max(frames.frames, default=-1)
    # an outside key just past the task's last frame ends the track: nothing to keep
    t.keys = [k for k in t.keys if not (k.outside and k.frame > last)]
    for k in t.keys:
        if k.frame not in frames.frames:
            raise InvalidInput(f"Track '{t.label}': frame {k.frame} is not a frame of the task.")
    shapes = _keys(labels, ref, t.keys)
    if not shapes and not t.elements:
        return None
    first = t.keys[0].attributes if t.keys else {}
    track_attrs = labels.attrs(ref, {**first, **t.attributes}, mutable=False)
    common = {
        "label_id": ref.id,
        "group": t.group,
        "source": t.source if t.source in _SOURCES else "file",
        "frame": min((s.frame for s in shapes), default=0),
        "attributes": track_attrs,
        "shapes": shapes,
    }
    if parent is not None:
        return SubLabeledTrack(**common)  # type: ignore[arg-type]
    elements = [e for e in (_track(labels, e, frames, ref) for e in t.elements) if e is not None]
    if elements and not shapes:
        common["frame"] = min(e.frame for e in elements)
    return LabeledTrack(**common, elements=elements)  # type: ignore[arg-type]


def _shape_tracks(
    tracked: dict[tuple[int, str], list[tuple[int, Shape]]], frames: FrameIndex
) -> list[Track]:
    """The tracks of the imported shapes with a ``track_id`` (their matched frames)."""
    order = sorted(frames.frames)
    after = dict(itertools.pairwise(order))
    runs: list[list[tuple[int, Shape]]] = []
    for _, shapes in sorted(tracked.items(), key=lambda kv: kv[0]):
        shapes.sort(key=lambda fs: fs[0])
        main: list[tuple[int, Shape]] = []
        for frame, s in shapes:
            if main and main[-1][0] == frame:
                runs.append([(frame, s)])  # CVAT: another track of its own
            else:
                main.append((frame, s))
        runs.append(main)
    out: list[Track] = []
    for run in sorted(runs, key=lambda r: r[0][0]):
        keys: list[TrackKey] = []
        for n, (frame, s) in enumerate(run):
            keys.append(
                TrackKey(frame, s.type, list(s.points), occluded=s.occluded,
                         z_order=s.z_order, rotation=s.rotation, attributes=s.attributes)
            )  # fmt: skip
            nxt = after.get(frame)
            if nxt is not None and (n + 1 == len(run) or run[n + 1][0] != nxt):
                keys.append(TrackKey(nxt, s.type, list(s.points), outside=True,
                                     z_order=s.z_order, rotation=s.rotation))  # fmt: skip
        first = run[0][1]
        out.append(Track(first.label, keys, source=first.source))
    return out


def corners_to_box(corners: list[float]) -> tuple[list[float], float]:
    """A rotated rectangle (its corners before rotation, and the rotation in degrees) from
    its four corners in order (an oriented bounding box)."""
    xs, ys = corners[0::2], corners[1::2]
    cx, cy = sum(xs) / 4, sum(ys) / 4
    width = math.dist((xs[0], ys[0]), (xs[1], ys[1]))
    height = math.dist((xs[1], ys[1]), (xs[2], ys[2]))
    rotation = math.degrees(math.atan2(ys[1] - ys[0], xs[1] - xs[0])) % 360
    return [cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], rotation


def masks_to_polygons(parsed: Parsed) -> None:
    """CVAT's ``conv_mask_to_poly`` (on by default for imports): every mask becomes the
    polygons of its blobs (as the items stream by)."""
    from cvat_ray.storage.formats.masks import cvat_to_polygons

    def converted(items: Iterator[Item]) -> Iterator[Item]:
        for item in items:
            if any(s.type == "mask" for s in item.shapes):
                shapes: list[Shape] = []
                for s in item.shapes:
                    if s.type != "mask":
                        shapes.append(s)
                        continue
                    for polygon in cvat_to_polygons(s.points):
                        shapes.append(
                            msgspec.structs.replace(s, type="polygon", points=polygon, elements=[])
                        )
                item.shapes = shapes
            yield item

    items, more = parsed.items, parsed.more

    def source() -> Iterator[Item]:
        yield from items
        if more is not None:
            yield from more

    parsed.more = converted(source())
    parsed.items = []
    divide = parsed.divide
    if divide is not None and not items:
        parsed.divide = lambda k, n: converted(divide(k, n))
    else:
        parsed.divide = None


_T = TypeVar("_T")

# objects converted and written at once by an import
CHUNK = 50_000


def iter_labeled_data(
    parsed: Parsed, labels: LabelIndex, frames: FrameIndex, chunk: int | None = None
) -> Iterator[LabeledData]:
    """The parsed dataset as ``LabeledData`` in chunks of about ``chunk`` objects (tracks in
    the last one), so an import holds one chunk at a time."""
    chunk = chunk or CHUNK
    data = LabeledData()
    count = 0
    tracked: dict[tuple[int, str], list[tuple[int, Shape]]] = {}
    for item in parsed.all_items():
        if not item.tags and not item.shapes:
            # an image without annotations: nothing to match (CVAT lists every image)
            continue
        frame = frames.match(item, by_frame=parsed.by_frame)
        if parsed.normalized:
            width, height = frames.sizes[frame]
            for shape in item.shapes:
                if shape.type == "mask":  # masks are in pixels already
                    continue
                for part in (shape, *shape.elements):
                    part.points = [
                        v * (width if k % 2 == 0 else height) for k, v in enumerate(part.points)
                    ]
        for shape in item.shapes:
            if shape.type == "rectangle" and len(shape.points) == 8:
                shape.points, shape.rotation = corners_to_box(shape.points)
        if any(s.track_id is not None for s in item.shapes):
            for s in item.shapes:
                if s.track_id is not None:
                    tracked.setdefault((s.track_id, s.label), []).append((frame, s))
            item.shapes = [s for s in item.shapes if s.track_id is None]
        soft = parsed.soft_attributes
        data.tags.extend(_tag(labels, t, frame, soft) for t in item.tags)
        data.shapes.extend(
            _shape(labels, s, frame, soft=soft)  # type: ignore[misc]
            for s in item.shapes
        )
        count += len(item.tags) + len(item.shapes)
        if count >= chunk:
            yield data
            data = LabeledData()
            count = 0
    for track in [*parsed.tracks, *_shape_tracks(tracked, frames)]:
        converted = _track(labels, track, frames)
        if converted is not None:
            data.tracks.append(converted)  # type: ignore[arg-type]
    yield data


def ahead(chunks: Iterator[_T]) -> Generator[_T, None, None]:
    """``chunks``, each made by a thread of its own while the caller works on the previous
    one (an import parses the next chunk while the database writes this one: the write
    waits on the database without the GIL). One chunk waits at most, so memory stays that
    of two chunks. The producer's error is raised here, in order; when the caller stops
    early (its write failed), the producer stops after the chunk it is making."""
    handoff: queue.Queue[tuple[bool, _T | None, BaseException | None]] = queue.Queue(1)
    stop = threading.Event()

    def give(item: tuple[bool, _T | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not give((False, chunk, None)):
                    return
            give((True, None, None))
        except BaseException as exc:  # handed to the caller
            give((True, None, exc))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="import-ahead", daemon=True)
    thread.start()
    try:
        while True:
            last, chunk, error = handoff.get()
            if error is not None:
                raise error
            if last:
                return
            yield chunk  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


def to_labeled_data(parsed: Parsed, labels: LabelIndex, frames: FrameIndex) -> LabeledData:
    """The whole parsed dataset as one ``LabeledData``."""
    out = LabeledData()
    for data in iter_labeled_data(parsed, labels, frames):
        out.tags.extend(data.tags)
        out.shapes.extend(data.shapes)
        out.tracks.extend(data.tracks)
    return out
