"""Track interpolation: the shape a track has on every frame between its keyframes.

A pure function over :class:`~cvat_ray.storage.schemas.annotations.LabeledTrack` data, used by the task
view (slicing tracks into jobs, matching tracks of overlapping jobs) and, later, by exports and
trackers. CVAT's rules, as in ``TrackManager.get_interpolated_shapes``:

- keyframes appear as they are (``keyframe=True``), outside ones included;
- between a visible keyframe and the next keyframe, shapes are interpolated linearly
  (rectangles, ellipses, cuboids and points/polylines/polygons with the same number of
  points per coordinate; rotation along the shorter arc); occluded, z_order and attributes
  come from the earlier keyframe;
- after an ``outside`` keyframe nothing is produced until the next keyframe (``outside`` ends
  a segment of the track);
- after the last keyframe, if it is visible, the track stays where it is to the end of the
  range;
- mutable attributes carry over from one keyframe to the next unless the next one sets them;
- masks are not interpolated: a mask holds until the next keyframe (as in CVAT);
- a skeleton's elements are tracks of their own, interpolated the same way; the skeleton's
  shape on a frame lists its elements' shapes on that frame.

Deviation: CVAT resamples polygons and polylines with different point counts along their
contour; here two keyframes with different point counts are interpolated by resampling both
to the larger count by arc length, then linearly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from cvat_ray.storage.schemas.annotations import AttributeVal, SubLabeledTrack, TrackedShape


@dataclass
class FrameShape:
    """A track's shape on one frame."""

    frame: int
    type: str
    points: list[float]
    rotation: float = 0.0
    occluded: bool = False
    outside: bool = False
    z_order: int = 0
    attributes: list[AttributeVal] = field(default_factory=list)
    keyframe: bool = False
    # For skeletons: (element label id, element shape) on the same frame.
    elements: list[tuple[int, FrameShape]] = field(default_factory=list)

    def to_tracked(self) -> TrackedShape:
        return TrackedShape(
            type=self.type,  # type: ignore[arg-type]
            occluded=self.occluded,
            outside=self.outside,
            z_order=self.z_order,
            rotation=self.rotation,
            points=list(self.points),
            attributes=list(self.attributes),
            frame=self.frame,
        )


def _angle_diff(a: float, b: float) -> float:
    """The signed shortest rotation from ``b`` to ``a`` in degrees."""
    diff = (a - b) % 360
    return diff - 360 if diff > 180 else diff


def _resample(points: Sequence[float], count: int) -> list[float]:
    """``count`` points spread evenly by arc length along the polyline ``points``."""
    xy = [(points[i], points[i + 1]) for i in range(0, len(points) - 1, 2)]
    if len(xy) == 1 or count == len(xy):
        return [c for p in (xy * count if len(xy) == 1 else xy) for c in p][: count * 2]
    lengths = [0.0]
    for (x0, y0), (x1, y1) in itertools.pairwise(xy):
        lengths.append(lengths[-1] + math.hypot(x1 - x0, y1 - y0))
    total = lengths[-1]
    out: list[float] = []
    seg = 0
    for k in range(count):
        target = total * k / (count - 1) if count > 1 else 0.0
        while seg < len(lengths) - 2 and lengths[seg + 1] < target:
            seg += 1
        span = lengths[seg + 1] - lengths[seg]
        t = (target - lengths[seg]) / span if span else 0.0
        (x0, y0), (x1, y1) = xy[seg], xy[seg + 1]
        out.extend((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t))
    return out


def _between(
    s0: TrackedShape, s1: TrackedShape, frame: int, attrs: list[AttributeVal]
) -> FrameShape:
    """The shape on ``frame`` strictly between keyframes ``s0`` (visible) and ``s1``."""
    offset = (frame - s0.frame) / (s1.frame - s0.frame)
    p0, p1 = s0.points, s1.points
    if s0.type == "mask" or s0.type != s1.type:
        points = list(p0)
    else:
        if len(p0) != len(p1) and s0.type in ("polygon", "polyline", "points"):
            count = max(len(p0), len(p1)) // 2
            p0, p1 = _resample(p0, count), _resample(p1, count)
        if len(p0) == len(p1):
            points = [a + (b - a) * offset for a, b in zip(p0, p1, strict=True)]
        else:
            points = list(p0)
    rotation = (s0.rotation + _angle_diff(s1.rotation, s0.rotation) * offset + 360) % 360
    return FrameShape(
        frame=frame,
        type=s0.type,
        points=points,
        rotation=rotation,
        occluded=s0.occluded,
        outside=False,
        z_order=s0.z_order,
        attributes=attrs,
    )


def _carry(previous: list[AttributeVal], current: list[AttributeVal]) -> list[AttributeVal]:
    """Attributes of a keyframe plus those of earlier keyframes it does not set."""
    if not previous:
        return list(current)
    given = {a.spec_id for a in current}
    return list(current) + [a for a in previous if a.spec_id not in given]


def interpolate(
    track: SubLabeledTrack,
    start: int,
    stop: int,
    *,
    include_outside: bool = True,
    with_elements: bool = True,
) -> list[FrameShape]:
    """The track's shapes on the frames ``start <= frame < stop``, in frame order.

    Frames where the track is hidden (after an outside keyframe) are left out; outside
    keyframes themselves are included unless ``include_outside`` is false.
    """
    out: list[FrameShape] = []
    keys = track.shapes
    attrs: list[AttributeVal] = []
    for k, shape in enumerate(keys):
        attrs = _carry(attrs, shape.attributes)
        if shape.frame >= stop:
            break
        if start <= shape.frame and (include_outside or not shape.outside):
            out.append(
                FrameShape(
                    frame=shape.frame,
                    type=shape.type,
                    points=list(shape.points),
                    rotation=shape.rotation,
                    occluded=shape.occluded,
                    outside=shape.outside,
                    z_order=shape.z_order,
                    attributes=attrs,
                    keyframe=True,
                )
            )
        if shape.outside:
            continue
        nxt = keys[k + 1] if k + 1 < len(keys) else None
        first = max(shape.frame + 1, start)
        if nxt is not None:
            last = min(nxt.frame, stop)
            out.extend(_between(shape, nxt, f, attrs) for f in range(first, last))
        else:
            out.extend(
                FrameShape(
                    frame=f,
                    type=shape.type,
                    points=list(shape.points),
                    rotation=shape.rotation,
                    occluded=shape.occluded,
                    z_order=shape.z_order,
                    attributes=attrs,
                )
                for f in range(first, stop)
            )
    elements = getattr(track, "elements", None) if with_elements else None
    if elements:
        by_frame = {s.frame: s for s in out}
        for element in elements:
            for es in interpolate(element, start, stop, include_outside=include_outside):
                parent = by_frame.get(es.frame)
                if parent is not None:
                    parent.elements.append((element.label_id, es))
    return out


def shape_at(track: SubLabeledTrack, frame: int) -> FrameShape | None:
    """The track's shape on one frame (outside shapes included), or None where it is hidden."""
    shapes = interpolate(track, frame, frame + 1)
    return shapes[0] if shapes else None
