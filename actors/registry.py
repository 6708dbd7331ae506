"""The one registry of background work: operation type -> handler, and who runs it.

Every background request is a ``requests`` row of an operation type (``create:task``,
``autoannotate:task``, ``export:backup``, ``import:backup``; later dataset exports and
imports, webhook delivery, events flushing).
:func:`default_registry` is the one place where each type is registered with its handler and
its :class:`Family`: the kind of runner that runs it. Under Ray a family is one or more named,
detached actors (``<actor>-<i>``: ``media-worker-0``, ``autoannotate-driver-0``) that Ray
restarts and the dashboard shows; without Ray it is a thread pool of the API process. The
launcher (:mod:`cvat_ray.actors.launcher`) hands each submitted request to its family's
runner; the sweep (:mod:`cvat_ray.actors.sweep`) covers every registered type.

A handler takes a :class:`Context` and a request id. It claims the row itself
(``requests.claim``: one conditional UPDATE, so a request handed over twice runs once), moves
it to ``finished`` or ``failed`` with a readable message, and never raises for a failure of
the work: failures are data on the row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database


@dataclass(frozen=True)
class Context:
    """What a handler gets from the runner that calls it."""

    db: Database
    settings: Settings
    # the runner's name, written on the rows it claims (a sweep checks that it is alive)
    worker: str
    # whether the runner is a Ray actor (a handler may then use Ray Data and Serve)
    on_ray: bool


Handler = Callable[[Context, str], object]


@dataclass(frozen=True)
class Family:
    """A kind of runner and how many of it run, with what resources."""

    name: str
    # actor names are ``<actor>-<index>``
    actor: str
    # the message of a request whose runner died while it was started
    lost_reason: str
    count: Callable[[Settings], int]
    # requests one runner runs at once (its threads)
    concurrency: Callable[[Settings], int]
    num_cpus: Callable[[Settings], float]
    # run in a thread of a Ray runner when it starts (warm caches, worker processes)
    warm: Callable[[Settings], None] | None = None
    # run by every sweep (stale files, ...)
    housekeeping: Callable[[Database, Settings], object] | None = None
    # a service loop the runner runs in a thread of its own for as long as it lives (the
    # events sink); it returns when the event is set
    loop: Callable[[Context, threading.Event], None] | None = None
    # answers a caller waits for, run by the family's first runner (reads of data only that
    # runner's process may open: the embedded ClickHouse)
    queries: Mapping[str, Callable[[Context, dict[str, Any]], Any]] = field(default_factory=dict)

    def actor_name(self, index: int, prefix: str = "") -> str:
        return f"{prefix}{self.actor}-{index}"


@dataclass(frozen=True)
class Operation:
    type: str
    family: Family
    handler: Handler


class ServiceLoop(Protocol):
    """A long-lived loop a :class:`Service` builds (the webhook sender)."""

    def start(self) -> None: ...

    def wake(self) -> None:
        """Work now (called after a commit that gave it work)."""
        ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Service:
    """Background work that is not a request row but a loop over an outbox (the webhook
    sender): one named, detached actor under Ray (``<actor>``, restarted by Ray), a thread of
    the API process without Ray. Woken after the commits that give it work (``wakes``: an
    :func:`cvat_ray.storage.webhooks.outbox.set_waker` key is registered for it), and sweeping
    on its own schedule, so a lost wake-up delays work, never loses it."""

    name: str
    actor: str
    num_cpus: Callable[[Settings], float]
    # the loop, from the runner's database, settings and name (its ``worker``)
    build: Callable[[Database, Settings, str], ServiceLoop]
    # threads of its actor that answer calls (wake, ping, stats) next to the loop's own
    control_calls: int = 4
    # the CPU niceness of its actor's process (background work yields to request handling)
    nice: Callable[[Settings], int] = lambda s: 0

    def actor_name(self, prefix: str = "") -> str:
        return f"{prefix}{self.actor}"


class UnknownOperation(KeyError):
    """A request of a type nothing is registered for."""


class Registry:
    """Operation types, their handlers and their families (immutable once built)."""

    def __init__(self, operations: Iterable[Operation], services: Iterable[Service] = ()) -> None:
        self._operations: dict[str, Operation] = {}
        self._families: dict[str, Family] = {}
        self._services: dict[str, Service] = {}
        for service in services:
            if service.name in self._services:
                raise ValueError(f"service {service.name!r} registered twice")
            self._services[service.name] = service
        for op in operations:
            if op.type in self._operations:
                raise ValueError(f"operation {op.type!r} registered twice")
            known = self._families.setdefault(op.family.name, op.family)
            if known is not op.family:
                raise ValueError(f"two families named {op.family.name!r}")
            self._operations[op.type] = op

    def operation(self, operation_type: str) -> Operation:
        try:
            return self._operations[operation_type]
        except KeyError:
            raise UnknownOperation(operation_type) from None

    def family(self, name: str) -> Family:
        return self._families[name]

    def families(self) -> list[Family]:
        return list(self._families.values())

    def types(self) -> list[str]:
        return list(self._operations)

    def service(self, name: str) -> Service:
        return self._services[name]

    def services(self) -> list[Service]:
        return list(self._services.values())


# ---------------------------------------------------------------------------------- handlers


def _create_task(ctx: Context, request_id: str) -> None:
    from cvat_ray.storage.services.data_processing import process_request

    process_request(ctx.db, ctx.settings, request_id, ctx.worker)


def _collect_garbage(db: Database, settings: Settings) -> int:
    from cvat_ray.storage.services.data_processing import collect_garbage

    return collect_garbage(db, settings)


def _autoannotate_task(ctx: Context, request_id: str) -> None:
    from cvat_ray.actors.autoannotate import pick_engine, run_request

    run_request(
        ctx.db,
        ctx.settings,
        request_id,
        ctx.worker,
        engine=pick_engine(ctx.settings, on_ray=ctx.on_ray),
    )


def _export_backup(ctx: Context, request_id: str) -> None:
    from cvat_ray.storage.services.backups import run_export

    run_export(ctx.db, ctx.settings, request_id, ctx.worker)


def _export(ctx: Context, request_id: str) -> None:
    from cvat_ray.storage.services.datasets import run_export

    run_export(ctx.db, ctx.settings, request_id, ctx.worker)


def _import_backup(ctx: Context, request_id: str) -> None:
    from cvat_ray.storage.services.backups import run_import

    run_import(ctx.db, ctx.settings, request_id, ctx.worker)


def _import(ctx: Context, request_id: str) -> None:
    from cvat_ray.storage.services.datasets import run_import

    run_import(ctx.db, ctx.settings, request_id, ctx.worker)


def _collect_backups(db: Database, settings: Settings) -> int:
    from cvat_ray.storage.services.backups import collect_backups

    return collect_backups(db, settings)


def _remove_expired_exports(db: Database, settings: Settings) -> int:
    from cvat_ray.storage.services.datasets import remove_expired

    return remove_expired(db, settings)


# Worker processes warmed for the pipelines' tasks (two per function replica run).
WARM_WORKERS = 4


def _warm_autoannotate(settings: Settings) -> None:
    """Import Ray Data once (every run's pipeline executes in the driver), leave worker
    processes with the stage code imported, and connect Serve's controller client: a run's
    first look at the deployed functions took 0.6 s otherwise."""
    import ray.data  # noqa: F401
    from ray import serve

    from cvat_ray.actors import stages

    stages.warm_workers(WARM_WORKERS, settings.functions.decode_num_cpus)
    serve.status()


MEDIA = Family(
    name="media",
    actor="media-worker",
    lost_reason="The media worker's process died while processing this request. "
    "Upload the data again.",
    count=lambda s: s.media.workers,
    concurrency=lambda s: s.media.worker_concurrency,
    num_cpus=lambda s: s.media.worker_num_cpus,
    housekeeping=_collect_garbage,
)

AUTOANNOTATE = Family(
    name="autoannotate",
    # one long-lived, warm driver: a run starts its pipeline at once
    actor="autoannotate-driver",
    lost_reason="The auto-annotation run's process died during this run. Start the run "
    "again (a dataset run resumes where it stopped).",
    count=lambda s: 1,
    concurrency=lambda s: s.functions.concurrent_runs,
    num_cpus=lambda s: s.functions.driver_num_cpus,
    warm=_warm_autoannotate,
)


def _export_events(ctx: Context, request_id: str) -> None:
    from cvat_ray.actors.analytics import export_request

    export_request(ctx, request_id)


def _sink_loop(ctx: Context, stop: threading.Event) -> None:
    from cvat_ray.actors.analytics import run_sink

    run_sink(ctx, stop)


def _dashboard(ctx: Context, params: dict[str, Any]) -> Any:
    from cvat_ray.actors.analytics import dashboard

    return dashboard(ctx, params)


def _analytics_housekeeping(db: Database, settings: Settings) -> int:
    from cvat_ray.storage.services.events import remove_stale_exports

    return remove_stale_exports(db, settings)


ANALYTICS = Family(
    name="analytics",
    # one sink: the only process that opens the embedded ClickHouse
    actor="events-sink",
    lost_reason="The events sink's process died during this export. Export the events again.",
    count=lambda s: 1,
    concurrency=lambda s: 2,
    num_cpus=lambda s: s.analytics.sink_num_cpus,
    housekeeping=_analytics_housekeeping,
    loop=_sink_loop,
    queries={"dashboard": _dashboard},
)


def _webhook_sender(db: Database, settings: Settings, worker: str) -> Any:
    from cvat_ray.storage.webhooks.sender import WebhookSender

    return WebhookSender(db, settings, worker)


WEBHOOK_SENDER = Service(
    name="webhooks",
    actor="webhook-sender",
    num_cpus=lambda s: s.webhooks.num_cpus,
    build=_webhook_sender,
    nice=lambda s: s.webhooks.nice,
)


BACKUPS = Family(
    name="backups",
    actor="backup-worker",
    lost_reason="The backup worker's process died while writing or restoring this backup. "
    "Start the export or the restore again (a failed restore leaves nothing behind).",
    count=lambda s: s.backups.workers,
    concurrency=lambda s: s.backups.worker_concurrency,
    num_cpus=lambda s: s.backups.worker_num_cpus,
    housekeeping=_collect_backups,
)


DATASETS = Family(
    name="datasets",
    actor="dataset-worker",
    lost_reason="The dataset worker's process died while running this export or import. "
    "Start it again (a failed import changed nothing).",
    count=lambda s: s.datasets.workers,
    concurrency=lambda s: s.datasets.worker_concurrency,
    num_cpus=lambda s: s.datasets.worker_num_cpus,
    housekeeping=_remove_expired_exports,
)


def default_registry() -> Registry:
    """Every background operation of the server, registered here and nowhere else."""
    from cvat_ray.storage.services import datasets
    from cvat_ray.storage.services.backups import EXPORT as EXPORT_BACKUP
    from cvat_ray.storage.services.backups import IMPORT as IMPORT_BACKUP
    from cvat_ray.storage.services.data_upload import CREATE_TASK
    from cvat_ray.storage.services.events import EXPORT_EVENTS
    from cvat_ray.storage.services.lambda_functions import OPERATION as AUTOANNOTATE_TASK
    from cvat_ray.storage.webhooks import outbox

    # every process that builds a registry makes domain changes: their webhook deliveries
    # are written with them
    outbox.install()
    return Registry(
        [
            Operation(CREATE_TASK, MEDIA, _create_task),
            Operation(AUTOANNOTATE_TASK, AUTOANNOTATE, _autoannotate_task),
            Operation(EXPORT_BACKUP, BACKUPS, _export_backup),
            Operation(IMPORT_BACKUP, BACKUPS, _import_backup),
            Operation(datasets.EXPORT_DATASET, DATASETS, _export),
            Operation(datasets.EXPORT_ANNOTATIONS, DATASETS, _export),
            Operation(datasets.IMPORT_DATASET, DATASETS, _import),
            Operation(datasets.IMPORT_ANNOTATIONS, DATASETS, _import),
            Operation(EXPORT_EVENTS, ANALYTICS, _export_events),
        ],
        services=[WEBHOOK_SENDER],
    )
