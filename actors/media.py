"""The media worker actor: processes ``create:task`` requests.

Lifecycle: one detached actor per name (``media-worker-<i>``), created by the launcher on
first use (or by ``cvat-ray up``), restarted by Ray when its process dies
(``max_restarts=-1``). It owns no state that matters: the request rows are the truth.

- On start (the first and every restart) it fails the requests still marked ``started`` by
  its name: a previous process of this worker died in the middle of them.
- Worker 0 also sweeps: every ``media.sweep_interval_s`` it processes ``create:task``
  requests left ``queued`` longer than ``media.requeue_after_s`` (their hand-over was lost,
  e.g. the API replica died right after commit) and removes media folders nothing uses.
  Claims are atomic, so a request that is merely waiting in another worker's queue is not
  processed twice.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import ray

from cvat_ray.cluster.settings import get_settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import utcnow
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.data_processing import collect_garbage, process_request
from cvat_ray.storage.services.data_upload import CREATE_TASK

logger = logging.getLogger("cvat_ray.media")

RESTART_REASON = (
    "The media worker's process died while processing this request and was restarted. "
    "Upload the data again."
)


@ray.remote
class MediaWorker:
    def __init__(self, name: str, sweeps: bool) -> None:
        self.name = name
        self.settings = get_settings()
        self.db = Database(self.settings.database_url, pool_size=2)
        with self.db.session() as session:
            failed = request_service.fail_orphans(session, name, RESTART_REASON)
        if failed:
            logger.warning("%s: failed %d requests left by a dead process", name, len(failed))
        self._stop = threading.Event()
        if sweeps:
            threading.Thread(target=self._sweep_loop, name="media-sweep", daemon=True).start()

    def ping(self) -> str:
        return self.name

    def process(self, request_id: str) -> None:
        process_request(self.db, self.settings, request_id, self.name)

    def sweep(self) -> int:
        """Process lost queued requests; returns how many were found."""
        before = utcnow() - timedelta(seconds=self.settings.media.requeue_after_s)
        with self.db.session() as session:
            lost = request_service.stale_queued(session, CREATE_TASK, before)
        for request_id in lost:
            process_request(self.db, self.settings, request_id, self.name)
        collect_garbage(self.db, self.settings)
        return len(lost)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.settings.media.sweep_interval_s):
            try:
                self.sweep()
            except Exception:
                logger.exception("%s: sweep failed", self.name)
