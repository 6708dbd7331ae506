"""The one launcher of background work, chosen once when the app is built.

Services write a queued ``requests`` row and hand ``launcher.submit`` to
``requests.launch_after_commit``; after commit the launcher runs the request's handler from
the registry (:mod:`cvat_ray.actors.registry`):

- :class:`~cvat_ray.actors.runners.RayLauncher` (``background.launcher=ray``; ``auto`` inside a
  Ray worker such as a Serve replica; ``cvat-ray up`` sets ``ray``): on the named runner actor
  of the operation's family, which the Ray dashboard shows; dataset runs as Ray jobs.
- :class:`ThreadLauncher` (``inprocess``; ``auto`` outside Ray: the test app, a plain
  uvicorn): on a thread pool per family in this process; dataset runs in a thread with the
  local engine.

Both run the same handlers, and both are swept (:mod:`cvat_ray.actors.sweep`).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any, Protocol

from cvat_ray.actors.registry import Context, Family, Registry, ServiceLoop, default_registry
from cvat_ray.actors.sweep import SweepLoop, thread_alive, thread_worker
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database

logger = logging.getLogger("cvat_ray.launcher")


class Launcher(Protocol):
    def submit(self, request_id: str, operation_type: str) -> None:
        """Run a committed, queued request in the background."""
        ...

    def submit_dataset(self, argv: list[str]) -> str | None:
        """Start a dataset run (``cvat_ray.actors.dataset_run`` arguments); the Ray job's id,
        or None when it runs in this process."""
        ...

    def held(self) -> set[str]: ...

    def query(self, family: str, name: str, params: dict[str, Any]) -> Any:
        """Run one of a family's queries in its runner's process and return the answer."""
        ...

    def alive(self, worker: str) -> bool | None: ...

    def open(self) -> None:
        """Called when the app starts serving (its lifespan): start sweeping, and the
        registry's services (the webhook sender)."""
        ...

    def wake(self, service: str) -> None:
        """Wake a registered service (e.g. ``webhooks``) now."""
        ...

    def close(self) -> None: ...


class ThreadLauncher:
    """Runs requests on threads of this process (no Ray), one pool per family."""

    def __init__(self, settings: Settings, db: Database, registry: Registry | None = None) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry or default_registry()
        self.worker = thread_worker()
        self.ctx = Context(db, settings, self.worker, on_ray=False)
        self._pools: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._sweep = SweepLoop(db, settings, self.registry, self)
        self._stop_loops = threading.Event()
        self._loops: list[threading.Thread] = []
        self._services: dict[str, ServiceLoop] = {}

    def _pool(self, family: Family | None) -> concurrent.futures.ThreadPoolExecutor:
        key = family.name if family else "dataset"
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:  # (re)created on first use, like the app's DB threads
                threads = family.concurrency(self.settings) if family else 1
                pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=key)
                self._pools[key] = pool
            return pool

    def submit(self, request_id: str, operation_type: str) -> None:
        op = self.registry.operation(operation_type)
        with self._lock:
            if request_id in self._held:
                return
            self._held.add(request_id)
        self._pool(op.family).submit(self._run, op.handler, request_id)

    def _run(self, handler: Any, request_id: str) -> None:
        try:
            handler(self.ctx, request_id)
        except Exception:  # handlers record failures themselves; this is a last resort
            logger.exception("background request %s failed", request_id)
        finally:
            with self._lock:
                self._held.discard(request_id)

    def submit_dataset(self, argv: list[str]) -> str | None:
        from cvat_ray.actors import dataset_run

        args = dataset_run.build_parser().parse_args([*argv, "--engine", "local"])
        self._pool(None).submit(dataset_run.execute, args, self.settings, self.db, self.worker)
        return None

    def held(self) -> set[str]:
        with self._lock:
            return set(self._held)

    def alive(self, worker: str) -> bool | None:
        return True if worker == self.worker else thread_alive(worker)

    def query(self, family: str, name: str, params: dict[str, Any]) -> Any:
        return self.registry.family(family).queries[name](self.ctx, params)

    def open(self) -> None:
        from cvat_ray.storage.webhooks import outbox

        self._sweep.start()
        if not self._loops:
            self._stop_loops.clear()
            for family in self.registry.families():
                if family.loop is not None:
                    thread = threading.Thread(
                        target=_run_loop,
                        args=(family, self.ctx, self._stop_loops),
                        name=f"cvat-{family.actor}",
                        daemon=True,
                    )
                    thread.start()
                    self._loops.append(thread)
        with self._lock:
            for service in self.registry.services():
                if service.name in self._services:
                    continue
                loop = service.build(self.db, self.settings, f"{self.worker}/{service.actor}")
                loop.start()
                self._services[service.name] = loop
        if "webhooks" in self._services:
            outbox.set_waker(outbox.db_key(self.db.engine), self._services["webhooks"].wake)

    def wake(self, service: str) -> None:
        with self._lock:
            loop = self._services.get(service)
        if loop is not None:
            loop.wake()

    def service_loop(self, service: str) -> ServiceLoop | None:
        """The running loop of a service (tests), None before :meth:`open`."""
        with self._lock:
            return self._services.get(service)

    def close(self) -> None:
        from cvat_ray.storage.webhooks import outbox

        self._sweep.stop()
        self._stop_loops.set()
        for thread in self._loops:
            thread.join(timeout=30)
        self._loops = []
        with self._lock:
            loops, self._services = list(self._services.values()), {}
        if loops:
            outbox.set_waker(outbox.db_key(self.db.engine), None)
        for loop in loops:
            loop.stop()
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=True)


def _run_loop(family: Family, ctx: Context, stop: threading.Event) -> None:
    assert family.loop is not None
    try:
        family.loop(ctx, stop)
    except Exception:
        logger.exception("the %s loop stopped", family.name)


def in_ray_worker() -> bool:
    """True inside a Ray worker process (a Serve replica, an actor); False in a driver or
    without Ray."""
    from cvat_ray.cluster.ray_compat import in_worker_process

    return in_worker_process()


def uses_ray(settings: Settings) -> bool:
    """Whether background work goes to Ray (``background.launcher``; ``auto``: when this
    process is a Ray worker, e.g. a Serve replica). The app asks once, when it is built."""
    mode = settings.background.launcher
    return mode == "ray" or (mode == "auto" and in_ray_worker())


def make_launcher(settings: Settings, db: Database, *, on_ray: bool | None = None) -> Launcher:
    if uses_ray(settings) if on_ray is None else on_ray:
        from cvat_ray.actors.runners import RayLauncher

        return RayLauncher(settings, db)
    return ThreadLauncher(settings, db)


def start_ray_workers(settings: Settings) -> None:
    """Create every family's runners and the sweeper on the connected cluster (``cvat-ray
    up`` calls this after deploying the API, so lost requests are picked up even before the
    first upload, and the first auto-annotation run starts warm)."""
    from cvat_ray.actors.runners import RayLauncher

    db = Database(settings.database_url, pool_size=1)
    launcher = RayLauncher(settings, db)
    try:
        launcher.start()
    finally:
        launcher.close()
        db.dispose()
