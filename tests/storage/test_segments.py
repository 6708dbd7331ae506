"""CVAT's segment rules (reference/cvat-server-facts.md §6.1) and status derivation."""

from __future__ import annotations

import pytest

from cvat_ray.storage.services.segments import job_status, segment_ranges, task_status


@pytest.mark.parametrize(
    ("size", "segment_size", "overlap", "mode", "expected"),
    [
        (0, 0, None, "annotation", []),
        (10, 0, None, "annotation", [(0, 9)]),
        (10, 20, None, "annotation", [(0, 9)]),
        (10, 4, None, "annotation", [(0, 3), (4, 7), (8, 9)]),
        (10, 5, None, "annotation", [(0, 4), (5, 9)]),
        # video: overlap 5 by default, capped at half a segment
        (20, 10, None, "interpolation", [(0, 9), (5, 14), (10, 19)]),
        (10, 4, None, "interpolation", [(0, 3), (2, 5), (4, 7), (6, 9)]),
        (10, 4, 1, "annotation", [(0, 3), (3, 6), (6, 9)]),
        # explicit overlap larger than half a segment is capped
        (10, 4, 3, "annotation", [(0, 3), (2, 5), (4, 7), (6, 9)]),
        (7, 1, None, "annotation", [(i, i) for i in range(7)]),
    ],
)
def test_segment_ranges(size, segment_size, overlap, mode, expected) -> None:
    assert segment_ranges(size, segment_size, overlap, mode=mode) == expected


@pytest.mark.parametrize("size", range(1, 60, 7))
@pytest.mark.parametrize("segment_size", [0, 1, 3, 8, 100])
@pytest.mark.parametrize("overlap", [None, 0, 2])
@pytest.mark.parametrize("mode", ["annotation", "interpolation"])
def test_segments_cover_every_frame(size, segment_size, overlap, mode) -> None:
    ranges = segment_ranges(size, segment_size, overlap, mode=mode)
    covered = {f for start, stop in ranges for f in range(start, stop + 1)}
    assert covered == set(range(size))
    assert all(start <= stop for start, stop in ranges)
    assert [s for s, _ in ranges] == sorted(s for s, _ in ranges)


@pytest.mark.parametrize(
    ("stage", "state", "status"),
    [
        ("annotation", "new", "annotation"),
        ("annotation", "completed", "annotation"),
        ("validation", "in progress", "validation"),
        ("acceptance", "new", "validation"),
        ("acceptance", "completed", "completed"),
    ],
)
def test_job_status(stage: str, state: str, status: str) -> None:
    assert job_status(stage, state) == status


def test_task_status() -> None:
    assert task_status([]) == "annotation"
    assert task_status(["completed", "annotation"]) == "annotation"
    assert task_status(["completed", "validation"]) == "validation"
    assert task_status(["completed", "completed"]) == "completed"
