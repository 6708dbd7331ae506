"""Working time from client batches, case by case from CVAT's rules (storage/events/working_time)."""

from __future__ import annotations

from cvat_ray.storage.events.working_time import MAX_GAP_MS, TimedEvent, compute


def ev(scope: str, t: int, job: int | None = 1, duration: int = 0) -> TimedEvent:
    return TimedEvent(
        scope=scope, timestamp=t, duration=duration, job_id=job, task_id=10, project_id=None
    )


def totals(events: list[TimedEvent], previous: TimedEvent | None = None) -> dict[int | None, int]:
    return {wt.ids[0]: wt.ms for wt in compute(events, previous)}


def test_gaps_under_the_cap_count() -> None:
    events = [ev("load:job", 0), ev("draw:object", 5_000), ev("draw:object", 12_000)]
    assert totals(events) == {1: 12_000}


def test_a_gap_of_100_s_or_more_is_idle() -> None:
    events = [
        ev("load:job", 0),
        ev("draw:object", MAX_GAP_MS),
        ev("draw:object", MAX_GAP_MS + 3_000),
    ]
    # the 100 s gap is dropped entirely; the next 3 s count
    assert totals(events) == {1: 3_000}
    just_under = [ev("load:job", 0), ev("draw:object", MAX_GAP_MS - 1)]
    assert totals(just_under) == {1: MAX_GAP_MS - 1}


def test_change_frame_counts_its_duration_past_what_was_counted() -> None:
    events = [
        ev("load:job", 0),
        ev("change:frame", 1_000, duration=4_000),
        ev("draw:object", 6_000),
    ]
    # 1 s gap, then 4 s of frame changes (to 5 s), then the 1 s gap to 6 s
    assert totals(events) == {1: 6_000}
    # a later event inside the change:frame span adds nothing twice
    inside = [ev("change:frame", 0, duration=10_000), ev("draw:object", 4_000)]
    assert totals(inside) == {1: 10_000}


def test_long_change_frame_after_idle_counts_only_its_duration() -> None:
    events = [ev("load:job", 0), ev("change:frame", 200_000, duration=2_500)]
    assert totals(events) == {1: 2_500}


def test_time_is_credited_to_the_previous_events_job() -> None:
    events = [
        ev("load:job", 0, job=1),
        ev("load:job", 4_000, job=2),
        ev("draw:object", 9_000, job=2),
    ]
    assert totals(events) == {1: 4_000, 2: 5_000}
    result = {wt.ids[0]: wt.timestamp for wt in compute(events, None)}
    assert result == {1: 0, 2: 4_000}  # each tuple's first event


def test_batches_are_chained_by_the_previous_event() -> None:
    previous = ev("change:frame", 0, job=7, duration=2_000)
    events = [ev("draw:object", 5_000, job=1)]
    # measured from the previous event's end (2 s), credited to its job
    assert totals(events, previous) == {7: 3_000}
    # without it the first event only starts the clock
    assert totals(events) == {}


def test_events_out_of_order_add_nothing_for_negative_gaps() -> None:
    events = [ev("draw:object", 10_000), ev("draw:object", 4_000), ev("draw:object", 12_000)]
    assert totals(events) == {1: 2_000}


def test_empty_batch() -> None:
    assert compute([], ev("load:job", 0)) == []
