"""Checks that need the task: labels, attributes, frames, point counts, track keyframes.

Types, ranges (rotation 0..360, score 0..1, frame >= 0) and required fields are checked while
decoding (``cvat_ray.storage.schemas.annotations``). Everything here runs once per object in a tight
loop (a PUT may carry a million shapes), raises :class:`InvalidInput` naming the object's
index and field (``shapes[12].points``), and normalises in place (``group`` null -> 0,
checkbox values lower-cased).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.annotations.identity import ByIdentity
from cvat_ray.storage.models import AttributeSpec, Label, Task
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

# ``source`` is spliced into JSON without escaping (cvat_ray.storage.annotations.reads), so it keeps to
# a safe alphabet; CVAT's values are manual, semi-auto, auto, file and consensus.
_SOURCE = re.compile(r"^[A-Za-z0-9_.-]{1,16}$")


@dataclass(frozen=True)
class LabelInfo:
    id: int
    type: str
    parent_id: int | None
    sublabels: frozenset[int] = frozenset()


@dataclass(frozen=True)
class SpecInfo:
    label_id: int
    input_type: str
    mutable: bool
    values: tuple[str, ...]
    # number: (min, max, step)
    bounds: tuple[float, float, float] | None = None


@dataclass
class Scope:
    """What annotations of one job (or of a whole task) may refer to."""

    labels: dict[int, LabelInfo]
    specs: dict[int, SpecInfo]
    start: int
    stop: int
    # For jobs with an explicit frame list (ground truth); None for a frame range.
    frames: frozenset[int] | None = None
    _sources: set[str] = field(default_factory=lambda: {"manual", "auto", "semi-auto", "file"})

    def with_frames(self, start: int, stop: int, frames: frozenset[int] | None) -> Scope:
        return Scope(self.labels, self.specs, start, stop, frames, self._sources)


def load_scope(session: Session, task: Task, start: int, stop: int) -> Scope:
    """Labels (the task's, or its project's) with their attribute specs, and a frame range."""
    owner = (
        Label.project_id == task.project_id
        if task.project_id is not None
        else Label.task_id == task.id
    )
    rows = session.execute(select(Label.id, Label.type, Label.parent_id).where(owner)).all()
    children: dict[int, set[int]] = defaultdict(set)
    for r in rows:
        if r.parent_id is not None:
            children[r.parent_id].add(r.id)
    labels = {
        r.id: LabelInfo(r.id, r.type, r.parent_id, frozenset(children.get(r.id, ()))) for r in rows
    }
    specs: dict[int, SpecInfo] = {}
    if labels:
        for a in session.scalars(
            select(AttributeSpec).where(AttributeSpec.label_id.in_(list(labels)))
        ):
            values = tuple(a.values.split("\n")) if a.values else ()
            bounds = None
            if a.input_type == "number" and len(values) == 3:
                try:
                    low, high, step = (float(v) for v in values)
                    bounds = (low, high, step)
                except ValueError:
                    bounds = None
            specs[a.id] = SpecInfo(a.label_id, a.input_type, a.mutable, values, bounds)
    return Scope(labels, specs, start, stop)


def _fail(where: str, message: str) -> InvalidInput:
    return InvalidInput(message, field=where)


# (exact count, minimum count, must be even)
_POINT_RULES: dict[str, tuple[int | None, int, bool]] = {
    "rectangle": (4, 4, False),
    "ellipse": (4, 4, False),
    "cuboid": (16, 16, False),
    "polygon": (None, 6, True),
    "polyline": (None, 4, True),
    "points": (None, 2, True),
    "mask": (None, 5, False),
    "skeleton": (0, 0, False),
}


def _check_points(kind: str, points: list[float], where: str) -> None:
    exact, least, even = _POINT_RULES[kind]
    n = len(points)
    if exact is not None:
        if n != exact:
            raise _fail(f"{where}.points", f"{kind} needs {exact} values, got {n}")
        return
    if n < least or (even and n % 2):
        parity = ", an even number" if even else ""
        raise _fail(f"{where}.points", f"{kind} needs at least {least} values{parity}, got {n}")
    if kind == "mask":
        _check_mask(points, where)


def _check_mask(points: list[float], where: str) -> None:
    """RLE counts over the box, then the box (left, top, right, bottom; inclusive)."""
    *counts, left, top, right, bottom = points
    if not all(v == int(v) and v >= 0 for v in points):
        raise _fail(f"{where}.points", "mask values must be non-negative integers")
    if left > right or top > bottom:
        raise _fail(f"{where}.points", "mask box needs left <= right and top <= bottom")
    area = (int(right) - int(left) + 1) * (int(bottom) - int(top) + 1)
    if int(sum(counts)) != area:
        raise _fail(
            f"{where}.points",
            f"mask RLE covers {int(sum(counts))} pixels but its box has {area}",
        )


class Validator:
    """Validates and normalises :class:`LabeledData` against a :class:`Scope`."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        # (label id, object kind) pairs already accepted: one dict lookup for the rest of a
        # payload's objects of that pair
        self._accepted: dict[tuple[int, str], LabelInfo] = {}
        # the label each shared attribute list (an import's) was checked against
        self._checked: ByIdentity[int] = ByIdentity()

    # ------------------------------------------------------------------ common parts

    def _frame(self, frame: int, where: str) -> None:
        s = self.scope
        if frame < s.start or frame > s.stop or (s.frames is not None and frame not in s.frames):
            raise _fail(
                f"{where}.frame", f"frame {frame} is outside the frames {s.start}..{s.stop}"
            )

    def _source(self, source: str, where: str) -> None:
        if source not in self.scope._sources:
            if not _SOURCE.match(source):
                raise _fail(f"{where}.source", "use at most 16 letters, digits, '.', '-' or '_'")
            self.scope._sources.add(source)

    def _label(self, label_id: int, kind: str, where: str) -> LabelInfo:
        label = self.scope.labels.get(label_id)
        if label is None or label.parent_id is not None:
            raise _fail(f"{where}.label_id", f"label {label_id} does not belong to this task")
        if kind == "skeleton" or label.type == "skeleton":
            if kind != label.type:
                raise _fail(
                    f"{where}.label_id",
                    f"label {label_id} of type {label.type} cannot be used for a {kind}",
                )
        elif label.type not in ("any", kind):
            raise _fail(
                f"{where}.label_id",
                f"label {label_id} of type {label.type} cannot be used for a {kind}",
            )
        return label

    def _attributes(
        self, attrs: list[AttributeVal], label_id: int, where: str, mutable_only: bool = False
    ) -> None:
        if self._checked.get(attrs) == label_id:
            return
        self._check_attributes(attrs, label_id, where)
        self._checked.put(attrs, label_id)

    def _check_attributes(self, attrs: list[AttributeVal], label_id: int, where: str) -> None:
        specs = self.scope.specs
        seen: set[int] = set()
        for k, a in enumerate(attrs):
            spec = specs.get(a.spec_id)
            if spec is None or spec.label_id != label_id:
                raise _fail(
                    f"{where}.attributes[{k}].spec_id",
                    f"attribute {a.spec_id} does not belong to label {label_id}",
                )
            if a.spec_id in seen:
                raise _fail(
                    f"{where}.attributes[{k}].spec_id", f"attribute {a.spec_id} is given twice"
                )
            seen.add(a.spec_id)
            kind = spec.input_type
            value = a.value
            if kind == "checkbox":
                low = value.lower()
                if low not in ("true", "false"):
                    raise _fail(
                        f"{where}.attributes[{k}].value", "a checkbox takes 'true' or 'false'"
                    )
                a.value = low
            elif kind in ("select", "radio"):
                if value not in spec.values:
                    raise _fail(
                        f"{where}.attributes[{k}].value",
                        f"{value!r} is not one of {list(spec.values)}",
                    )
            elif kind == "number":
                _check_number(value, spec, f"{where}.attributes[{k}].value")
            elif "\x00" in value:
                raise _fail(f"{where}.attributes[{k}].value", "Null characters are not allowed.")
            elif not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise _fail(
                        f"{where}.attributes[{k}].value", "Invalid Unicode (lone surrogate)."
                    ) from exc

    # ------------------------------------------------------------------ objects

    def tag(self, tag: LabeledImage, where: str) -> None:
        self._label(tag.label_id, "tag", where)
        self._frame(tag.frame, where)
        self._source(tag.source, where)
        if tag.group is None:
            tag.group = 0
        if tag.attributes:
            self._attributes(tag.attributes, tag.label_id, where)

    def shape(self, shape: LabeledShape, where: str) -> None:
        kind = shape.type
        label = self._accepted.get((shape.label_id, kind))
        if label is None:
            label = self._label(shape.label_id, kind, where)
            self._accepted[(shape.label_id, kind)] = label
        s = self.scope
        frame = shape.frame
        if frame < s.start or frame > s.stop or s.frames is not None:
            self._frame(frame, where)
        if shape.source not in s._sources:
            self._source(shape.source, where)
        _check_points(kind, shape.points, where)
        if shape.group is None:
            shape.group = 0
        if shape.attributes:
            self._attributes(shape.attributes, shape.label_id, where)
        if kind == "skeleton":
            self._elements(shape, label, where)
        elif shape.elements:
            raise _fail(f"{where}.elements", "only skeletons have elements")

    def _elements(self, shape: LabeledShape, label: LabelInfo, where: str) -> None:
        if not shape.elements:
            raise _fail(f"{where}.elements", "a skeleton needs its elements")
        seen: set[int] = set()
        for k, e in enumerate(shape.elements):
            at = f"{where}.elements[{k}]"
            self._element_label(e, label, seen, at)
            if e.type != "points":
                raise _fail(f"{at}.type", "skeleton elements are points")
            if e.frame != shape.frame:
                raise _fail(f"{at}.frame", "an element is on its skeleton's frame")
            self._source(e.source, at)
            _check_points(e.type, e.points, at)
            if e.group is None:
                e.group = 0
            if e.attributes:
                self._attributes(e.attributes, e.label_id, at)

    def _element_label(
        self, e: SubLabeledShape | SubLabeledTrack, label: LabelInfo, seen: set[int], at: str
    ) -> None:
        if e.label_id not in label.sublabels:
            raise _fail(
                f"{at}.label_id", f"label {e.label_id} is not a sublabel of label {label.id}"
            )
        if e.label_id in seen:
            raise _fail(f"{at}.label_id", f"sublabel {e.label_id} is given twice")
        seen.add(e.label_id)

    def track(self, track: LabeledTrack, where: str) -> None:
        if not track.shapes:
            raise _fail(f"{where}.shapes", "a track needs at least one keyframe")
        kind = track.shapes[0].type
        label = self._label(track.label_id, kind, where)
        self._track_body(track, kind, where)
        if kind == "skeleton":
            if not track.elements:
                raise _fail(f"{where}.elements", "a skeleton track needs its elements")
            seen: set[int] = set()
            for k, e in enumerate(track.elements):
                at = f"{where}.elements[{k}]"
                self._element_label(e, label, seen, at)
                if not e.shapes:
                    raise _fail(f"{at}.shapes", "a track needs at least one keyframe")
                if e.shapes[0].type != "points":
                    raise _fail(f"{at}.shapes[0].type", "skeleton elements are points")
                self._track_body(e, "points", at)
        elif track.elements:
            raise _fail(f"{where}.elements", "only skeleton tracks have elements")

    def _track_body(self, track: SubLabeledTrack, kind: str, where: str) -> None:
        self._frame(track.frame, where)
        self._source(track.source, where)
        if track.group is None:
            track.group = 0
        if track.attributes:
            self._attributes(track.attributes, track.label_id, where)
        fixed: dict[int, str] = {
            a.spec_id: a.value
            for a in track.attributes
            if a.spec_id in self.scope.specs and not self.scope.specs[a.spec_id].mutable
        }
        previous = -1
        for k, s in enumerate(track.shapes):
            at = f"{where}.shapes[{k}]"
            if s.type != kind:
                raise _fail(f"{at}.type", f"all keyframes of a track are {kind}s")
            if s.frame <= previous:
                raise _fail(f"{at}.frame", "keyframes must be ordered by frame, one per frame")
            previous = s.frame
            self._frame(s.frame, at)
            _check_points(kind, s.points, at)
            if s.attributes:
                self._attributes(s.attributes, track.label_id, at)
                self._immutable(s, fixed, at)

    def _immutable(self, shape: TrackedShape, fixed: dict[int, str], where: str) -> None:
        for k, a in enumerate(shape.attributes):
            if self.scope.specs[a.spec_id].mutable:
                continue
            if fixed.setdefault(a.spec_id, a.value) != a.value:
                raise _fail(
                    f"{where}.attributes[{k}].value",
                    f"attribute {a.spec_id} is immutable and must keep one value along the track",
                )

    # ------------------------------------------------------------------ payloads

    def payload(self, data: LabeledData) -> None:
        for i, tag in enumerate(data.tags):
            self.tag(tag, f"tags[{i}]")
        for i, shape in enumerate(data.shapes):
            self.shape(shape, f"shapes[{i}]")
        for i, track in enumerate(data.tracks):
            self.track(track, f"tracks[{i}]")


def _check_number(value: str, spec: SpecInfo, where: str) -> None:
    try:
        number = float(value)
    except ValueError as exc:
        raise _fail(where, f"{value!r} is not a number") from exc
    if spec.bounds is None:
        return
    low, high, step = spec.bounds
    if not low <= number <= high:
        raise _fail(where, f"{value} is outside {low:g}..{high:g}")
    if step > 0:
        steps = (number - low) / step
        if abs(steps - round(steps)) > 1e-6 * max(1.0, abs(steps)):
            raise _fail(where, f"{value} is not {low:g} plus a multiple of {step:g}")


def require_no_ids(data: LabeledData) -> None:
    """Objects to create carry no ids (CVAT: ids are absent on create and PUT)."""
    sections: tuple[tuple[str, Sequence[LabeledImage | LabeledShape | LabeledTrack]], ...] = (
        ("tags", data.tags),
        ("shapes", data.shapes),
        ("tracks", data.tracks),
    )
    for section, objects in sections:
        for i, obj in enumerate(objects):
            if obj.id is not None:
                raise _fail(f"{section}[{i}].id", "must be absent when creating annotations")
            for k, e in enumerate(getattr(obj, "elements", ())):
                if e.id is not None:
                    raise _fail(
                        f"{section}[{i}].elements[{k}].id",
                        "must be absent when creating annotations",
                    )


def ids_of(
    objects: Sequence[LabeledImage | LabeledShape | LabeledTrack], section: str
) -> list[int]:
    """The ids of objects to delete, all required and distinct."""
    ids: list[int] = []
    seen: set[int] = set()
    for i, obj in enumerate(objects):
        if obj.id is None:
            raise _fail(f"{section}[{i}].id", "is required to delete an object")
        if obj.id in seen:
            raise _fail(f"{section}[{i}].id", f"object {obj.id} is given twice")
        seen.add(obj.id)
        ids.append(obj.id)
    return ids
