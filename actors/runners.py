"""Background work on Ray: the named runner actors, the sweeper actor, and the launcher that
hands requests to them.

- :class:`Runner` (one per family and index, ``media-worker-0``, ``autoannotate-driver-0``):
  detached, restarted by Ray when its process dies, its calls never retried. ``submit`` only
  queues the request on the runner's own threads and returns, so the caller learns at once
  whether the runner took it. When it (re)starts it fails what its name still holds
  ``started``: a previous process died in the middle of it. Families may warm it up (the
  auto-annotation driver imports Ray Data and keeps worker processes ready, so a run starts at
  once).
- :class:`Sweeper` (``requests-sweeper``): runs :func:`cvat_ray.actors.sweep.sweep` every
  ``background.sweep_interval_s``.
- :class:`Lease` (``dataset-run-…``): a dataset run's Ray job holds one while it runs; it is
  owned by the job's driver, so it dies with it, and the rows the job left started are failed
  by the sweep.
- :class:`RayLauncher`: what the API replicas (and the sweeper) submit through.

Settings never travel in actor arguments: every actor reads them from its own environment.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import threading
import time
import uuid
import zlib
from typing import Any

import ray

from cvat_ray.actors.registry import Context, Family, Registry, Service, default_registry
from cvat_ray.actors.sweep import THREAD_PREFIX, SweepLoop, SweepReport, sweep, thread_alive
from cvat_ray.cluster.names import NAMESPACE
from cvat_ray.cluster.settings import Settings, get_settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.events import outbox
from cvat_ray.storage.services import requests as request_service

logger = logging.getLogger("cvat_ray.runners")

SWEEPER = "requests-sweeper"
# calls served next to the runner's own threads: submit, held, ping
_CONTROL_CALLS = 4


def service_actor_options(
    name: str,
    *,
    max_concurrency: int,
    num_cpus: float,
    runtime_env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ray options of a long-lived service actor: one per name in our namespace, detached,
    restarted by Ray when its process dies, its calls not retried (the actor fails what a dead
    predecessor left)."""
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
    with contextlib.suppress(ValueError):  # never created, or gone
        ray.kill(ray.get_actor(name, namespace=NAMESPACE))


def actor_alive(name: str) -> bool:
    """Whether a named actor of our namespace exists (alive, or being restarted by Ray: a
    restarted runner fails its own orphans)."""
    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


@ray.remote
class Runner:
    """Runs the requests of one family, on threads of its own."""

    def __init__(self, family: str, name: str) -> None:
        self.name = name
        self.registry = default_registry()
        self.family = self.registry.family(family)
        self.settings = get_settings()
        outbox.install(self.settings.analytics.enabled)
        threads = self.family.concurrency(self.settings)
        self.db = Database(self.settings.database_url, pool_size=threads + 1)
        with self.db.session() as session:
            failed = request_service.fail_orphans(session, name, self.family.lost_reason)
        if failed:
            logger.warning("%s: failed %d requests left by a dead process", name, len(failed))
        self.ctx = Context(self.db, self.settings, name, on_ray=True)
        # what its requests change (a task created, a request completed) wakes the sender
        prefix = name[: name.rfind(self.family.actor)] if self.family.actor in name else ""
        self._waker = _wake_service_after_commits(self.db, f"{prefix}webhook-sender", self.settings)
        self._executor = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=name)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        warm = self.family.warm
        if warm is not None:
            threading.Thread(target=self._warm, args=(warm,), daemon=True).start()
        self._stop = threading.Event()
        loop = self.family.loop
        if loop is not None:
            threading.Thread(
                target=self._loop, args=(loop,), name=f"{name}-loop", daemon=True
            ).start()

    def _loop(self, loop: Any) -> None:
        try:
            loop(self.ctx, self._stop)
        except Exception:
            logger.exception("%s: its loop stopped", self.name)

    def query(self, name: str, params: dict[str, Any]) -> Any:
        """One of the family's queries, run in this process."""
        return self.family.queries[name](self.ctx, params)

    def _warm(self, warm: Any) -> None:
        try:
            warm(self.settings)
        except Exception:
            logger.exception("%s: warming up failed", self.name)

    def ping(self) -> str:
        return self.name

    def submit(self, request_id: str, operation_type: str) -> None:
        """Queue the request on this runner's threads (returns at once)."""
        op = self.registry.operation(operation_type)
        with self._lock:
            if request_id in self._held:
                return
            self._held.add(request_id)
        self._executor.submit(self._run, op.handler, request_id)

    def _run(self, handler: Any, request_id: str) -> None:
        try:
            handler(self.ctx, request_id)
        except Exception:  # handlers record failures themselves; this is a last resort
            logger.exception("%s: %s failed", self.name, request_id)
        finally:
            with self._lock:
                self._held.discard(request_id)

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._held)


class RayWaker:
    """Wakes a named service actor, coalescing: a burst of commits makes one call (a
    thread forwards each wake-up; calls never block the committing thread), and calls are
    at least ``min_interval_s`` apart (the sender claims no more often than that anyway:
    more calls would cost the committing process, not speed anything up)."""

    def __init__(self, name: str, min_interval_s: float = 0.0) -> None:
        self.name = name
        self.min_interval_s = min_interval_s
        self._event = threading.Event()
        self._closed = False
        self._handle: Any = None
        self._thread = threading.Thread(target=self._loop, name=f"wake-{name}", daemon=True)
        self._thread.start()

    def __call__(self) -> None:
        self._event.set()

    def _loop(self) -> None:
        while True:
            self._event.wait()
            self._event.clear()
            if self._closed:
                return
            try:
                if self._handle is None:
                    self._handle = ray.get_actor(self.name, namespace=NAMESPACE)
                self._handle.wake.remote()
            except Exception:  # gone or restarting: its own sweep finds the rows
                self._handle = None
            if self.min_interval_s > 0:
                time.sleep(self.min_interval_s)

    def close(self) -> None:
        self._closed = True
        self._event.set()


def _wake_service_after_commits(db: Database, name: str, settings: Settings) -> RayWaker | None:
    """Commits of ``db`` in this process that write webhook deliveries wake ``name``; on
    PostgreSQL nothing is needed (None): the sender listens for the commits' ``NOTIFY``
    (:class:`~cvat_ray.storage.webhooks.sender.Listener`)."""
    from cvat_ray.storage.webhooks import outbox

    if db.dialect == "postgresql":
        return None
    waker = RayWaker(name, settings.webhooks.claim_interval_s)
    outbox.set_waker(outbox.db_key(db.engine), waker)
    return waker


def lower_priority(nice: int) -> None:
    """Set this process' CPU niceness to ``nice`` (when higher): every thread's, as Linux
    keeps one per thread; threads started later inherit their starter's."""
    if nice <= 0:
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # not Linux
        threads = [0]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that has ended
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)


@ray.remote
class ServiceHost:
    """Runs one registered :class:`~cvat_ray.actors.registry.Service`'s loop (the webhook
    sender), named, detached, restarted by Ray; the loop picks up what a dead predecessor
    held (its name is its ``worker``)."""

    def __init__(self, service: str, name: str) -> None:
        self.name = name
        self.settings = get_settings()
        self.service = default_registry().service(service)
        lower_priority(self.service.nice(self.settings))
        self.db = Database(
            self.settings.database_url, pool_size=self.settings.webhooks.concurrency + 2
        )
        self.loop = self.service.build(self.db, self.settings, name)
        self.loop.start()

    def ping(self) -> str:
        return self.name

    def wake(self) -> None:
        self.loop.wake()

    def stats(self) -> dict[str, Any]:
        import dataclasses

        stats = getattr(self.loop, "stats", None)
        return dataclasses.asdict(stats) if dataclasses.is_dataclass(stats) else {}  # type: ignore[arg-type]


@ray.remote
class Sweeper:
    """Sweeps the requests of every registered type (:mod:`cvat_ray.actors.sweep`)."""

    def __init__(self, prefix: str) -> None:
        self.settings = get_settings()
        self.db = Database(self.settings.database_url, pool_size=2)
        self.registry = default_registry()
        self.runners = RayLauncher(self.settings, self.db, self.registry, prefix=prefix)
        self.loop = SweepLoop(self.db, self.settings, self.registry, self.runners)
        self.loop.start()

    def ping(self) -> str:
        return SWEEPER

    def sweep(self) -> tuple[list[str], list[str]]:
        """One pass now: (re-queued ids, failed ids)."""
        report: SweepReport = sweep(self.db, self.settings, self.registry, self.runners)
        return report.requeued, report.failed


@ray.remote
class Lease:
    """Held by a dataset run's job while it runs (see :func:`take_lease`)."""

    def ping(self) -> str:
        return "ok"


def take_lease(run: str) -> tuple[str, Any]:
    """A lease actor owned by this driver, named after the run: ``(name, handle)``. Keep the
    handle; the lease dies with this process."""
    name = f"dataset-run-{run[:64]}-{uuid.uuid4().hex[:8]}"
    handle = Lease.options(  # type: ignore[attr-defined]
        name=name, namespace=NAMESPACE, num_cpus=0, max_restarts=0
    ).remote()
    ray.get(handle.ping.remote(), timeout=120)
    return name, handle


class RayLauncher:
    """Hands requests to the named runners of their family (created on first use).

    A request goes to one runner of its family, chosen by its id. If the runner cannot take
    it because it died, the call is tried once more on a fresh handle (Ray restarts the actor,
    or the name is free and it is created again); if that fails too the row is failed with
    the reason. ``prefix`` and ``runtime_env`` give tests runners of their own."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        registry: Registry | None = None,
        *,
        prefix: str = "",
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry or default_registry()
        self.prefix = prefix
        self.runtime_env = runtime_env
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._wakers: dict[str, RayWaker | None] = {}
        # failures and retries are handled here, off Ray's callback thread
        self._aside = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cvat-launch")

    # ---------------------------------------------------------------------- runners

    def runner_names(self) -> list[tuple[Family, str]]:
        return [
            (family, family.actor_name(i, self.prefix))
            for family in self.registry.families()
            for i in range(family.count(self.settings))
        ]

    def sweeper_name(self) -> str:
        return f"{self.prefix}{SWEEPER}"

    def _runner(self, family: Family, name: str) -> Any:
        with self._lock:
            handle = self._handles.get(name)
            if handle is None:
                options = service_actor_options(
                    name,
                    max_concurrency=family.concurrency(self.settings) + _CONTROL_CALLS,
                    num_cpus=family.num_cpus(self.settings),
                    runtime_env=self.runtime_env,
                )
                handle = Runner.options(**options).remote(  # type: ignore[attr-defined]
                    family.name, name
                )
                self._handles[name] = handle
            return handle

    def _forget(self, name: str) -> None:
        with self._lock:
            self._handles.pop(name, None)

    def _sweeper(self) -> Any:
        name = self.sweeper_name()
        with self._lock:
            handle = self._handles.get(name)
            if handle is None:
                options = service_actor_options(
                    name, max_concurrency=2, num_cpus=0, runtime_env=self.runtime_env
                )
                handle = Sweeper.options(**options).remote(self.prefix)  # type: ignore[attr-defined]
                self._handles[name] = handle
            return handle

    def service_name(self, service: Service) -> str:
        return service.actor_name(self.prefix)

    def _service(self, service: Service) -> Any:
        name = self.service_name(service)
        with self._lock:
            handle = self._handles.get(name)
            if handle is None:
                options = service_actor_options(
                    name,
                    max_concurrency=service.control_calls,
                    num_cpus=service.num_cpus(self.settings),
                    runtime_env=self.runtime_env,
                )
                handle = ServiceHost.options(**options).remote(  # type: ignore[attr-defined]
                    service.name, name
                )
                self._handles[name] = handle
            if service.name == "webhooks" and service.name not in self._wakers:
                self._wakers[service.name] = _wake_service_after_commits(
                    self.db, name, self.settings
                )
            return handle

    def service_handle(self, service: str) -> Any:
        """The handle of a registered service's actor (created on first use)."""
        return self._service(self.registry.service(service))

    def wake(self, service: str) -> None:
        try:
            self.service_handle(service).wake.remote()
        except Exception:  # its own sweep finds the work
            logger.warning("cannot wake %s", service)

    def open(self) -> None:
        """Make sure every runner, service and the sweeper exist (not waiting for them)."""
        for family, name in self.runner_names():
            self._runner(family, name)
        for service in self.registry.services():
            self._service(service)
        self._sweeper()

    def start(self, timeout: float = 120) -> None:
        """Create every runner, service and the sweeper and wait until each has started (and
        failed what its dead predecessor left)."""
        self.open()
        refs = [self._runner(f, n).ping.remote() for f, n in self.runner_names()]
        refs += [self._service(s).ping.remote() for s in self.registry.services()]
        ray.get([*refs, self._sweeper().ping.remote()], timeout=timeout)

    def handle(self, name: str) -> Any:
        """The handle of one of this launcher's runners, by name (tests)."""
        for family, known in self.runner_names():
            if known == name:
                return self._runner(family, name)
        raise KeyError(name)

    def sweeper(self) -> Any:
        return self._sweeper()

    # ---------------------------------------------------------------------- requests

    def submit(self, request_id: str, operation_type: str) -> None:
        op = self.registry.operation(operation_type)
        count = op.family.count(self.settings)
        name = op.family.actor_name(zlib.crc32(request_id.encode()) % count, self.prefix)
        self._send(op.family, name, request_id, operation_type, retry=True)

    def _send(
        self, family: Family, name: str, request_id: str, operation_type: str, *, retry: bool
    ) -> None:
        def not_taken(exc: BaseException) -> None:
            try:
                self._aside.submit(
                    self._not_taken, family, name, request_id, operation_type, exc, retry
                )
            except RuntimeError:  # closed: the sweep hands it over again
                logger.warning("%s did not take %s after close", name, request_id)

        try:
            ref = self._runner(family, name).submit.remote(request_id, operation_type)
        except Exception as exc:
            not_taken(exc)
            return

        def taken(fut: concurrent.futures.Future[Any]) -> None:
            exc = fut.exception()
            if exc is not None:
                not_taken(exc)

        ref.future().add_done_callback(taken)

    def _not_taken(
        self,
        family: Family,
        name: str,
        request_id: str,
        operation_type: str,
        exc: BaseException,
        retry: bool,
    ) -> None:
        self._forget(name)
        if retry:
            logger.warning("%s did not take %s (%s); trying again", name, request_id, _reason(exc))
            self._send(family, name, request_id, operation_type, retry=False)
            return
        logger.error("%s did not take %s: %s", name, request_id, _reason(exc))
        try:
            with self.db.session() as session:
                request_service.fail_if_unfinished(
                    session,
                    request_id,
                    f"{family.lost_reason} (runner {name}: {_reason(exc)})",
                )
        except Exception:
            logger.exception("cannot record the failure of %s", request_id)

    def query(self, family: str, name: str, params: dict[str, Any], timeout: float = 60) -> Any:
        """Run a family's query on its first runner (created on first use)."""
        fam = self.registry.family(family)
        handle = self._runner(fam, fam.actor_name(0, self.prefix))
        return ray.get(handle.query.remote(name, params), timeout=timeout)

    def held(self) -> set[str]:
        """What the runners that exist hold (a runner never created holds nothing)."""
        refs: list[Any] = []
        for _, name in self.runner_names():
            try:
                refs.append(ray.get_actor(name, namespace=NAMESPACE).held.remote())
            except ValueError:
                continue
        held: set[str] = set()
        for ref in refs:
            try:
                held.update(ray.get(ref, timeout=30))
            except Exception:  # dead or restarting: it holds nothing
                continue
        return held

    def alive(self, worker: str) -> bool | None:
        if worker.startswith(THREAD_PREFIX):
            return thread_alive(worker)
        return actor_alive(worker)

    def submit_dataset(self, argv: list[str]) -> str | None:
        from cvat_ray.actors.jobs import submit_from_cluster

        return submit_from_cluster(self.settings, argv)

    def close(self) -> None:
        from cvat_ray.storage.webhooks import outbox

        with self._lock:
            self._handles.clear()
            wakers, self._wakers = list(self._wakers.values()), {}
        if wakers:
            outbox.set_waker(outbox.db_key(self.db.engine), None)
        for waker in wakers:
            if waker is not None:
                waker.close()
        self._aside.shutdown(wait=False)

    def kill(self) -> None:
        """End this launcher's runners and sweeper (tests; a cluster shutdown ends them
        otherwise)."""
        for _, name in self.runner_names():
            kill_actor(name)
        for service in self.registry.services():
            kill_actor(self.service_name(service))
        kill_actor(self.sweeper_name())
        with self._lock:
            self._handles.clear()
