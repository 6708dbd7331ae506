"""The one sweep over background requests, for every registered operation type.

A request can be lost two ways, and the sweep mends both:

- **queued, never handed over**: the API replica died between commit and ``submit``, or the
  runner it was sent to died before starting it. Rows queued for longer than
  ``background.requeue_after_s`` that no runner holds are submitted again (the runner's claim is
  atomic, so one that was merely slow is not run twice).
- **started, runner dead**: the process running it died. A Ray runner that Ray restarts fails
  what its name still holds as it starts; a runner that is gone for good (killed, its node
  lost), a dataset run's job that died, or a thread of a process that exited is found here: the
  row is failed with the family's reason, so nothing waits forever (and a new run of the same
  task is not refused with 409).

Under Ray the sweep runs in the ``requests-sweeper`` actor every
``background.sweep_interval_s``; without Ray, in a thread of the API process while it serves
(``ThreadLauncher.open``). Either way it is :func:`sweep`, which needs only a database and a
:class:`Runners` to ask.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from cvat_ray.actors.registry import Registry
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import utcnow
from cvat_ray.storage.services import requests as request_service

logger = logging.getLogger("cvat_ray.sweep")

THREAD_PREFIX = "thread@"


class Runners(Protocol):
    """What the sweep asks of a launcher."""

    def submit(self, request_id: str, operation_type: str) -> None: ...

    def held(self) -> set[str]:
        """Ids of the requests its runners have accepted and not finished."""
        ...

    def alive(self, worker: str) -> bool | None:
        """Whether the runner named ``worker`` (a row's ``worker``) is alive; None when this
        process cannot tell."""
        ...


def thread_worker() -> str:
    """The ``worker`` of requests run by threads of this process: ``thread@<host>:<pid>``."""
    return f"{THREAD_PREFIX}{socket.gethostname()}:{os.getpid()}"


def thread_alive(worker: str) -> bool | None:
    """Whether the process named by a ``thread@<host>:<pid>`` worker is alive: known on its
    own host only."""
    host, _, pid = worker.removeprefix(THREAD_PREFIX).rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@dataclass
class SweepReport:
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def sweep(db: Database, settings: Settings, registry: Registry, runners: Runners) -> SweepReport:
    """One pass over every registered operation type (see the module's docstring)."""
    report = SweepReport()
    types = registry.types()
    before = utcnow() - timedelta(seconds=settings.background.requeue_after_s)
    held = runners.held()
    with db.session() as session:
        lost = request_service.stale_queued(session, types, before)
        started = request_service.started_requests(session, types)
    for request_id, operation_type in lost:
        if request_id in held:
            continue
        try:
            runners.submit(request_id, operation_type)
            report.requeued.append(request_id)
        except Exception:
            logger.exception("re-queueing %s failed", request_id)
    verdicts: dict[str, bool | None] = {}
    for request_id, operation_type, worker in started:
        if worker is None or request_id in held:
            continue
        if worker not in verdicts:
            verdicts[worker] = runners.alive(worker)
        if verdicts[worker] is not False:
            continue
        reason = registry.operation(operation_type).family.lost_reason
        with db.session() as session:
            if request_service.fail_started(session, request_id, worker, reason):
                report.failed.append(request_id)
    for family in registry.families():
        if family.housekeeping is not None:
            try:
                family.housekeeping(db, settings)
            except Exception:
                logger.exception("housekeeping of %s failed", family.name)
    if report.requeued or report.failed:
        logger.warning(
            "sweep: re-queued %d lost requests, failed %d whose runner died",
            len(report.requeued),
            len(report.failed),
        )
    return report


class SweepLoop:
    """Runs :func:`sweep` every ``background.sweep_interval_s`` in a daemon thread."""

    def __init__(
        self, db: Database, settings: Settings, registry: Registry, runners: Runners
    ) -> None:
        self.db, self.settings, self.registry, self.runners = db, settings, registry, runners
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="cvat-sweep", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.background.sweep_interval_s):
            try:
                sweep(self.db, self.settings, self.registry, self.runners)
            except Exception:
                logger.exception("sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
