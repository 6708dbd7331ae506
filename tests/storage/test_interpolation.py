"""Track interpolation and slicing: pure functions, no database."""

from __future__ import annotations

import pytest

from cvat_ray.storage.annotations.interpolation import interpolate, shape_at
from cvat_ray.storage.annotations.merge import (
    JobRange,
    TrackJoiner,
    duplicates,
    slice_track,
    split_for_jobs,
    track_similarity,
)
from cvat_ray.storage.schemas.annotations import (
    AttributeVal,
    LabeledData,
    LabeledShape,
    LabeledTrack,
    SubLabeledTrack,
    TrackedShape,
)


def key(frame: int, points: list[float], kind: str = "rectangle", **kw: object) -> TrackedShape:
    return TrackedShape(type=kind, frame=frame, points=points, **kw)  # type: ignore[arg-type]


def track(*keys: TrackedShape, label: int = 1, **kw: object) -> LabeledTrack:
    return LabeledTrack(label_id=label, frame=keys[0].frame, shapes=list(keys), **kw)  # type: ignore[arg-type]


def test_linear_between_keyframes_and_hold_after_the_last() -> None:
    t = track(key(0, [0, 0, 10, 10]), key(4, [4, 8, 14, 18]))
    shapes = interpolate(t, 0, 7)
    assert [s.frame for s in shapes] == list(range(7))
    assert shapes[2].points == [2, 4, 12, 14] and not shapes[2].keyframe
    assert shapes[4].keyframe and shapes[6].points == [4, 8, 14, 18]
    assert interpolate(t, 2, 3)[0].points == [2, 4, 12, 14]


def test_outside_ends_a_segment_until_the_next_keyframe() -> None:
    t = track(key(0, [0, 0, 1, 1]), key(2, [2, 2, 3, 3], outside=True), key(5, [5, 5, 6, 6]))
    frames = {s.frame: s for s in interpolate(t, 0, 8)}
    assert sorted(frames) == [0, 1, 2, 5, 6, 7]
    assert frames[2].outside and not frames[5].outside
    assert [s.frame for s in interpolate(t, 0, 8, include_outside=False)] == [0, 1, 5, 6, 7]
    assert shape_at(t, 3) is None


def test_rotation_takes_the_short_way_round() -> None:
    t = track(key(0, [0, 0, 1, 1], rotation=350), key(4, [0, 0, 1, 1], rotation=10))
    assert [round(s.rotation) for s in interpolate(t, 0, 5)] == [350, 355, 0, 5, 10]


@pytest.mark.parametrize(
    ("kind", "p0", "p1", "middle"),
    [
        ("ellipse", [0, 0, 2, 2], [4, 4, 6, 6], [2, 2, 4, 4]),
        ("points", [0, 0], [4, 2], [2, 1]),
        ("polygon", [0, 0, 4, 0, 4, 4], [0, 0, 8, 0, 8, 8], [0, 0, 6, 0, 6, 6]),
        ("cuboid", [0] * 16, [2] * 16, [1] * 16),
    ],
)
def test_each_shape_type_is_linear(
    kind: str, p0: list[float], p1: list[float], middle: list[float]
) -> None:
    t = track(key(0, p0, kind), key(2, p1, kind))
    assert interpolate(t, 1, 2)[0].points == middle


def test_masks_hold_and_polygons_of_different_sizes_are_resampled() -> None:
    mask = track(key(0, [1, 0, 0, 0, 0], "mask"), key(2, [1, 1, 1, 1, 1], "mask"))
    assert interpolate(mask, 1, 2)[0].points == [1, 0, 0, 0, 0]
    poly = track(
        key(0, [0, 0, 2, 0, 2, 2], "polyline"), key(2, [0, 0, 1, 0, 2, 0, 2, 2], "polyline")
    )
    middle = interpolate(poly, 1, 2)[0].points
    assert len(middle) == 8 and middle[:2] == [0, 0] and middle[-2:] == [2, 2]


def test_attributes_carry_over_and_skeleton_elements_follow() -> None:
    t = track(
        key(0, [0, 0, 1, 1], attributes=[AttributeVal(spec_id=1, value="a")]),
        key(2, [0, 0, 1, 1], attributes=[AttributeVal(spec_id=2, value="b")]),
    )
    last = interpolate(t, 3, 4)[0]
    assert {(a.spec_id, a.value) for a in last.attributes} == {(1, "a"), (2, "b")}
    element = SubLabeledTrack(
        label_id=7, frame=0, shapes=[key(0, [0, 0], "points"), key(2, [2, 2], "points")]
    )
    skeleton = track(key(0, [], "skeleton"), elements=[element])
    one = interpolate(skeleton, 1, 2)[0]
    assert one.type == "skeleton" and one.elements[0][0] == 7
    assert one.elements[0][1].points == [1, 1]


def test_slicing_adds_boundary_keyframes() -> None:
    t = track(key(2, [0, 0, 10, 10]), key(8, [6, 6, 16, 16]))
    assert [s.frame for s in slice_track(t, 0, 4)] == [2, 4]
    assert [s.frame for s in slice_track(t, 5, 9)] == [5, 8]
    assert slice_track(t, 5, 9)[0].points == [3, 3, 13, 13]
    hidden = track(key(0, [0, 0, 1, 1]), key(1, [0, 0, 1, 1], outside=True), key(9, [0, 0, 1, 1]))
    assert [s.frame for s in slice_track(hidden, 3, 6)] == []
    assert [s.frame for s in slice_track(hidden, 3, 9)] == [9]


def test_split_copies_shared_frames_and_merging_drops_them() -> None:
    jobs = [JobRange(1, 0, 5), JobRange(2, 4, 9)]
    shape = LabeledShape(type="rectangle", frame=5, label_id=1, points=[0, 0, 10, 10])
    split = split_for_jobs(LabeledData(shapes=[shape]), jobs)
    a, b = split.per_job[1].shapes[0], split.per_job[2].shapes[0]
    assert a is shape and b is not shape and b.points == shape.points
    a.id, b.id = 1, 2
    assert duplicates([a], [b]) == {2}
    b.points = [1, 1, 10, 10]  # IoU 0.81: still the same object
    assert duplicates([a], [b]) == {2}
    b.points = [5, 5, 15, 15]
    assert duplicates([a], [b]) == set()


def test_tracks_of_overlapping_jobs_are_joined() -> None:
    whole = track(key(1, [0, 0, 10, 10]), key(8, [7, 7, 17, 17]))
    jobs = [JobRange(1, 0, 5), JobRange(2, 4, 9)]
    split = split_for_jobs(LabeledData(tracks=[whole]), jobs)
    first, second = split.per_job[1].tracks[0], split.per_job[2].tracks[0]
    assert track_similarity(first, second, 4, 5) == pytest.approx(1.0)
    joiner = TrackJoiner()
    assert joiner.job(jobs[0], [first], last=False) == []
    (joined,) = joiner.job(jobs[1], [second], last=True)
    assert joined.shapes[0].frame == 1 and joined.shapes[-1].frame == 8
    assert [round(p, 6) for p in interpolate(joined, 6, 7)[0].points] == [5, 5, 15, 15]


def test_an_unmatched_track_ends_after_its_job() -> None:
    jobs = [JobRange(1, 0, 4), JobRange(2, 5, 9)]
    joiner = TrackJoiner()
    t = track(key(0, [0, 0, 1, 1]))
    assert joiner.job(jobs[0], [t], last=False) == []
    (ended,) = joiner.job(jobs[1], [], last=True)
    assert ended.shapes[-1].frame == 5 and ended.shapes[-1].outside
