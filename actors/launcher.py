"""The one launcher that starts background work, and its two implementations.

Services hand a request id to ``launcher.submit`` after commit. Under ``cvat-ray up`` (and
inside any Serve replica) it is :class:`RayLauncher`: named media worker actors
(:mod:`cvat_ray.actors.media`) process the requests and show up in the Ray dashboard. Without a Ray
runtime (the in-process test app, a plain uvicorn) it is :class:`InProcessLauncher`: the same
processing code in a small thread pool. Both run :func:`process_request`, which claims the
request row atomically, so a request submitted twice is processed once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import sys
import uuid
import zlib
from typing import Any, Protocol

from cvat_ray.cluster.names import NAMESPACE
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.data_processing import process_request

logger = logging.getLogger("cvat_ray.launcher")

WORKER_PREFIX = "media-worker"


class Launcher(Protocol):
    def submit(self, request_id: str) -> None: ...

    def close(self) -> None: ...


class InProcessLauncher:
    """Processes requests in this process's threads (no Ray)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.worker = f"inprocess-{uuid.uuid4().hex[:12]}"
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(self, request_id: str) -> None:
        if self._executor is None:  # (re)created on first use, like the app's DB threads
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.settings.media.worker_concurrency, thread_name_prefix="cvat-media"
            )
        self._executor.submit(self._run, request_id)

    def _run(self, request_id: str) -> None:
        try:
            process_request(self.db, self.settings, request_id, self.worker)
        except Exception:  # process_request records failures itself; this is a last resort
            logger.exception("processing %s failed", request_id)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def in_ray_worker() -> bool:
    """True inside a Ray worker process (a Serve replica, an actor); False in a driver or
    without Ray."""
    ray: Any = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    from ray._private.worker import WORKER_MODE

    return bool(ray.get_runtime_context().worker.mode == WORKER_MODE)


class RayLauncher:
    """Sends requests to named, detached media worker actors (created on first use).

    Each request goes to one worker chosen by its id. If the call fails because the actor
    died (not because processing failed, which the worker records itself), the request row
    is failed here with the reason; a worker that Ray restarts also fails what its dead
    predecessor left started, so no row waits forever.
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        prefix: str = WORKER_PREFIX,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.prefix = prefix
        self.runtime_env = runtime_env
        self._handles: dict[int, Any] = {}

    def worker_name(self, index: int) -> str:
        return f"{self.prefix}-{index}"

    def handle(self, index: int) -> Any:
        handle = self._handles.get(index)
        if handle is None:
            from cvat_ray.actors.media import MediaWorker

            media = self.settings.media
            options = service_actor_options(
                self.worker_name(index),
                max_concurrency=media.worker_concurrency + 1,  # + the sweep
                num_cpus=media.worker_num_cpus,
                runtime_env=self.runtime_env,
            )
            handle = MediaWorker.options(**options).remote(  # type: ignore[attr-defined]
                self.worker_name(index), index == 0
            )
            self._handles[index] = handle
        return handle

    def start(self, timeout: float = 120) -> None:
        """Create every worker and wait until each has started (and reclaimed its rows)."""
        import ray

        ray.get(
            [self.handle(i).ping.remote() for i in range(self.settings.media.workers)],
            timeout=timeout,
        )

    def submit(self, request_id: str) -> None:
        index = zlib.crc32(request_id.encode()) % self.settings.media.workers
        try:
            ref = self.handle(index).process.remote(request_id)
        except Exception as exc:
            self._handles.pop(index, None)
            self._fail(request_id, exc)
            return
        ref.future().add_done_callback(lambda fut: self._done(request_id, index, fut))

    def _done(self, request_id: str, index: int, fut: concurrent.futures.Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            self._handles.pop(index, None)
            self._fail(request_id, exc)

    def _fail(self, request_id: str, exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        logger.error("media worker call for %s failed: %s", request_id, reason)
        try:
            with self.db.session() as session:
                request_service.fail_if_unfinished(
                    session,
                    request_id,
                    f"The media worker stopped while processing the request ({reason}). "
                    "Upload the data again.",
                )
        except Exception:
            logger.exception("cannot record the failure of %s", request_id)

    def close(self) -> None:
        self._handles.clear()

    def kill_workers(self) -> None:
        """End this launcher's workers (tests; a cluster shutdown ends them otherwise)."""

        for index in range(self.settings.media.workers):
            kill_actor(self.worker_name(index))
        self._handles.clear()


def service_actor_options(
    name: str,
    *,
    max_concurrency: int,
    num_cpus: float,
    runtime_env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ray options of a long-lived service actor (media workers, the run driver): one per
    name in our namespace, detached, restarted by Ray when its process dies, its calls not
    retried (the actor fails what a dead predecessor left)."""
    options: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "lifetime": "detached",
        "max_restarts": -1,
        "max_task_retries": 0,
        "max_concurrency": max_concurrency,
        "num_cpus": num_cpus,
    }
    if runtime_env:
        options["runtime_env"] = runtime_env
    return options


def kill_actor(name: str) -> None:
    """End the named actor of our namespace, if it exists (tests; a cluster shutdown ends
    them otherwise)."""
    import ray

    with contextlib.suppress(ValueError):  # never created, or gone
        ray.kill(ray.get_actor(name, namespace=NAMESPACE))


def uses_ray(settings: Settings) -> bool:
    """Whether background work goes to Ray actors (``media.launcher``; ``auto``: when this
    process is a Ray worker, e.g. a Serve replica)."""
    mode = settings.media.launcher
    return mode == "ray" or (mode == "auto" and in_ray_worker())


def make_launcher(settings: Settings, db: Database) -> Launcher:
    if uses_ray(settings):
        return RayLauncher(settings, db)
    return InProcessLauncher(settings, db)


def start_ray_workers(settings: Settings) -> None:
    """Create the media workers and the auto-annotation run driver on the connected cluster
    (``cvat-ray up`` calls this after deploying the API, so lost requests are picked up even
    before the first upload, and the first run starts warm)."""
    from cvat_ray.actors.runs import RayRunLauncher

    db = Database(settings.database_url, pool_size=1)
    try:
        RayLauncher(settings, db).start()
        RayRunLauncher(settings, db).start()
    finally:
        db.dispose()
