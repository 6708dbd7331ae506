"""The one registry of background work: operation type -> handler, and who runs it.

Every background request is a ``requests`` row of an operation type (``create:task``,
``autoannotate:task``; later exports, imports, backups, webhook delivery, events flushing).
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

from collections.abc import Callable, Iterable
from dataclasses import dataclass

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

    def actor_name(self, index: int, prefix: str = "") -> str:
        return f"{prefix}{self.actor}-{index}"


@dataclass(frozen=True)
class Operation:
    type: str
    family: Family
    handler: Handler


class UnknownOperation(KeyError):
    """A request of a type nothing is registered for."""


class Registry:
    """Operation types, their handlers and their families (immutable once built)."""

    def __init__(self, operations: Iterable[Operation]) -> None:
        self._operations: dict[str, Operation] = {}
        self._families: dict[str, Family] = {}
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


def default_registry() -> Registry:
    """Every background operation of the server, registered here and nowhere else."""
    from cvat_ray.storage.services.data_upload import CREATE_TASK
    from cvat_ray.storage.services.lambda_functions import OPERATION as AUTOANNOTATE_TASK

    return Registry(
        [
            Operation(CREATE_TASK, MEDIA, _create_task),
            Operation(AUTOANNOTATE_TASK, AUTOANNOTATE, _autoannotate_task),
        ]
    )
