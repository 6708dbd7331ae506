"""Working time from a batch of client events (CVAT's algorithm).

Per POST batch, in the client's order: the time between consecutive events counts when the
gap is under ``MAX_GAP_MS`` (100 s; a longer gap is idle time, dropped), a ``change:frame``
event also counts its ``duration`` past the end of what was counted, and every stretch is
credited to the (job, task, project) of the event *before* it. ``previous_event`` (the last
event of the client's previous batch) chains batches: the first event's gap is measured from
its end, and it names the ids the first stretch is credited to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_GAP_MS = 100_000
COMPRESSED_SCOPES = frozenset({"change:frame"})

Ids = tuple[int | None, int | None, int | None]  # (job_id, task_id, project_id)


@dataclass(frozen=True)
class TimedEvent:
    scope: str
    timestamp: int  # ms since the epoch
    duration: int = 0  # ms
    job_id: int | None = None
    task_id: int | None = None
    project_id: int | None = None

    @property
    def ids(self) -> Ids:
        return (self.job_id, self.task_id, self.project_id)

    @property
    def end(self) -> int:
        if self.scope in COMPRESSED_SCOPES:
            return self.timestamp + max(self.duration, 0)
        return self.timestamp


@dataclass(frozen=True)
class WorkingTime:
    ids: Ids
    ms: int
    # the timestamp of the first event of the batch with these ids
    timestamp: int


def compute(events: Sequence[TimedEvent], previous: TimedEvent | None) -> list[WorkingTime]:
    """The working time per (job, task, project) of one batch, ids with no time left out."""
    if not events:
        return []
    start = previous if previous is not None else events[0]
    # the previous batch's last event counts to its end; a first event only starts the clock
    prev_end = previous.end if previous is not None else events[0].timestamp
    current = start.ids
    totals: dict[Ids, int] = {}
    first_seen: dict[Ids, int] = {}
    first_seen.setdefault(current, start.timestamp)
    for event in events:
        first_seen.setdefault(event.ids, event.timestamp)
        counted = 0
        gap = event.timestamp - prev_end
        if gap > 0:
            if gap < MAX_GAP_MS:
                counted += gap
            prev_end = event.timestamp
        if event.scope in COMPRESSED_SCOPES and event.end > prev_end:
            counted += event.end - prev_end
            prev_end = event.end
        if counted:
            totals[current] = totals.get(current, 0) + counted
        current = event.ids
    return [
        WorkingTime(ids=ids, ms=ms, timestamp=first_seen[ids]) for ids, ms in totals.items() if ms
    ]
