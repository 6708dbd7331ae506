"""Server events recorded off a hot path: the media cache's ``create:cache_item`` and
``read:cache_item``.

They are no domain change (nothing is written to the database) and the read they describe
must never wait for the database or fail because of it. So recording one appends a tuple to a
bounded deque (no lock, no I/O, no row built); a daemon thread of the process turns what has
gathered into CVAT rows and writes them to the events outbox in one transaction every
``interval_s`` (and once more on :meth:`DeferredEvents.close`). From the outbox on they are
shipped like every other event.

Unlike events of changes these may be lost: a process that dies loses what it had not written
yet (at most ``interval_s`` worth), a failed write drops its batch (logged), and past ``cap``
waiting entries the oldest go (counted in ``dropped``).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque

from cvat_ray.storage.changes import Actor, Scope
from cvat_ray.storage.db import Database
from cvat_ray.storage.events.outbox import add_rows, names
from cvat_ray.storage.events.rows import Row, cache_item_row

logger = logging.getLogger("cvat_ray.events")

# scope, epoch ms, who, which objects, item kind, cache key, bytes, build time (ms)
_Entry = tuple[str, int, Actor, Scope, str, str, int, int]
# every queue of this process, for close_all
_queues: weakref.WeakSet[DeferredEvents] = weakref.WeakSet()


class DeferredEvents:
    def __init__(self, db: Database, interval_s: float = 1.0, cap: int = 100_000) -> None:
        self.db = db
        self.interval_s = interval_s
        self.cap = cap
        self.dropped = 0
        self._pending: deque[_Entry] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        _queues.add(self)

    def cache_item(
        self,
        scope: str,
        actor: Actor,
        ids: Scope,
        kind: str,
        key: str,
        size: int,
        duration_ms: int = 0,
    ) -> None:
        """Record a cache item event (called on the read path: an append, nothing more)."""
        pending = self._pending
        if len(pending) >= self.cap:
            self.dropped += 1
            return
        pending.append(
            (scope, time.time_ns() // 1_000_000, actor, ids, kind, key, size, duration_ms)
        )
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._stop.is_set():
                thread = threading.Thread(
                    target=self._run, name="cvat-deferred-events", daemon=True
                )
                thread.start()
                self._thread = thread

    def _take(self) -> list[_Entry]:
        taken: list[_Entry] = []
        pop = self._pending.popleft
        while True:
            try:
                taken.append(pop())
            except IndexError:
                return taken

    def flush(self) -> int:
        """Write what has gathered to the outbox (one transaction); the number of rows."""
        entries = self._take()
        if not entries:
            return 0
        with self.db.session() as session, session.no_autoflush:
            rows: list[Row] = []
            for scope, ts, actor, ids, kind, key, size, duration in entries:
                org_id = ids.org_id if ids.org_id is not None else actor.org_id
                rows.append(
                    cache_item_row(
                        scope,
                        ts,
                        actor,
                        ids,
                        kind=kind,
                        key=key,
                        size=size,
                        duration_ms=duration,
                        user_email=names.get(session, "user", actor.user_id),
                        org_slug=names.get(session, "org", org_id),
                    )
                )
            add_rows(session, rows)
        return len(rows)

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # the database may be away: these events are dropped, reads go on
            logger.warning("could not record cache item events", exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._flush_logged()

    def close(self, write: bool = True) -> None:
        """Stop the writer thread and write what is left (or, ``write=False``, drop it)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=max(5.0, self.interval_s * 2))
        if write:
            self._flush_logged()
        else:
            self._pending.clear()


def close_all(write: bool = True) -> None:
    """Close every queue of this process: nothing is written after this returns (tests end
    each test with it, so no app of theirs writes into the next test's database)."""
    for queue in list(_queues):
        queue.close(write)
