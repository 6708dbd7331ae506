"""Whole-task auto-annotation: the driver of one ``/api/lambda/requests`` run.

A run streams the task's frames through decode (+ the model's preprocess) -> batched
inference -> postprocess -> save. Two engines run the same stage code (``cvat_ray.actors.stages``):

* ``ray``: a Ray Data pipeline, named after the request so it shows in the dashboard's Ray
  Data view. When the function is deployed on Serve, one stage of tasks (two per replica, on
  warm workers) reads blocks of frames and sends them, batch by batch with requests in
  flight, to the function's replicas (which decode image files, preprocess, infer and
  postprocess); otherwise decode, inference (an actor pool with the function's resources,
  GPUs included) and postprocess are stages of their own.
* ``local``: the same decode, inference and postprocess stages in the driver's own threads
  on one model (blocks decoded ahead in a thread pool); used without Ray (the in-process
  app, tests).

The driver saves results every ``functions.save_every`` frames (``source: auto``, the
model's confidence as ``score``), reports progress, and stops when the request is cancelled
(what was saved stays; a ``cleanup`` run replaces the old annotations only when it finishes,
see ``lambda_runs``). A frame that fails to decode or to run is recorded and skipped.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cvat_ray.actors import stages
from cvat_ray.actors.functions.host import ModelHost, model_process_options
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.functions.spec import FunctionSpec
from cvat_ray.storage.services import lambda_runs
from cvat_ray.storage.services import requests as request_service

logger = logging.getLogger("cvat_ray.autoannotate")

# Frames decoded together (a video group is one seek).
DECODE_GROUP = 8
# Batches per Ray Data block when the function's replicas infer.
BLOCK_BATCHES = 4
# Blocks the local engine decodes ahead of its inference.
LOCAL_AHEAD = 2


@dataclass
class RunStats:
    frames: int = 0
    done: int = 0
    objects: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    cancelled: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        text = (
            f"Annotated {self.done} of {self.frames} frames: {self.objects} objects saved"
            f" in {self.seconds:.1f} s"
        )
        if self.failed:
            shown = "; ".join(f"frame {f}: {why}" for f, why in self.failed[:5])
            text += f"; {len(self.failed)} frames failed and were skipped ({shown})"
        if self.dropped:
            text += f"; {len(self.dropped)} objects refused ({self.dropped[0]})"
        return text


# ---------------------------------------------------------------------------------- engines

# (position in plan.frames, objects as JSON | None, error | None)
Result = tuple[int, str | None, str | None]


def local_results(run: lambda_runs.RunPlan, settings: Settings) -> Iterator[Result]:
    """The stages in this process, on one model: blocks of frames decoded and preprocessed
    in a thread pool ahead of the batched inference and postprocessing."""
    spec = run.spec
    host = ModelHost(spec, owns_process=True)
    decode = stages.Decode(run.plan, spec, host)
    infer = stages.Infer(spec, host)
    post = stages.Post(spec, run.threshold, run.conv_mask_to_poly, host)
    block = max(DECODE_GROUP, spec.batching.max_batch_size)
    blocks = [
        {"start": np.array([i]), "stop": np.array([min(i + block, len(run.frames))])}
        for i in range(0, len(run.frames), block)
    ]
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="cvat-decode") as pool:
        ahead = collections.deque(pool.submit(decode, b) for b in blocks[:LOCAL_AHEAD])
        submitted = len(ahead)
        while ahead:
            decoded = ahead.popleft().result()
            if submitted < len(blocks):
                ahead.append(pool.submit(decode, blocks[submitted]))
                submitted += 1
            done = post(infer(decoded))
            for pos, objects, error in zip(
                done["pos"], done["objects"], done["error"], strict=True
            ):
                yield int(pos), (objects or None), (error or None)


def ray_results(run: lambda_runs.RunPlan, settings: Settings) -> Iterator[Result]:
    """The stages as a streaming Ray Data pipeline."""
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    spec = run.spec
    pool = max(1, spec.autoscaling.max_replicas)
    app = _serve_app(spec) if settings.functions.use_replicas else None
    # Few blocks keep Ray Data's per-block scheduling cost small: on the replicas' path a
    # task sends its block as several batches, pipelined; otherwise a block is one batch.
    block = max(DECODE_GROUP, spec.batching.max_batch_size)
    if app is not None:
        block *= BLOCK_BATCHES
    items = [
        {"start": i, "stop": min(i + block, len(run.frames))}
        for i in range(0, len(run.frames), block)
    ]
    if not items:
        return
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    # Ray Data budgets each operator from the resources its autoscaling coordinator (an
    # actor) has reserved for the run, and that answer reaches the executor a second or
    # more after the start: until then the stage ran one task at a time, then two (a run's
    # 64th frame came after 4.5 s; with the four tasks started together, after 3.6-3.8 s).
    # The replicas' path is one stage of tasks capped by ``concurrency`` whose outputs are
    # a few kB of JSON, so it runs without the reservation; the actor pools' path keeps it
    # for its blocks of decoded frames. A dataset takes a copy of this context when it is
    # created.
    ctx.op_resource_reservation_enabled = app is None
    decode_cpus = settings.functions.decode_num_cpus
    ds: Any = ray.data.from_items(items, override_num_blocks=len(items))
    if app is not None:
        # Tasks, not an actor pool: they run on the cluster's warm worker processes (the run
        # driver keeps some), so a run starts in about a second instead of spawning actors.
        cpus = ray.cluster_resources().get("CPU", 1.0)  # type: ignore[no-untyped-call]
        tasks, in_flight = stages.run_shape(spec, cpus)
        ds = ds.map_batches(
            stages.decode_serve_infer,
            fn_args=(
                app,
                run.plan,
                run.threshold,
                run.conv_mask_to_poly,
                settings.functions.call_timeout_s,
                spec.batching.max_batch_size,
                in_flight,
            ),
            batch_size=1,
            num_cpus=decode_cpus,
            concurrency=tasks,
        )
    else:
        ds = ds.map_batches(
            stages.Decode,
            fn_constructor_args=(run.plan, spec),
            batch_size=1,
            num_cpus=decode_cpus,
            compute=ActorPoolStrategy(size=1),
            zero_copy_batch=True,
        )
        ds = ds.map_batches(
            stages.Infer,
            fn_constructor_args=(spec,),
            batch_size=spec.batching.max_batch_size,
            compute=ActorPoolStrategy(min_size=1, max_size=pool),
            batch_format="numpy",
            **model_process_options(spec),
        )
        ds = ds.map_batches(
            stages.Post,
            fn_constructor_args=(spec, run.threshold, run.conv_mask_to_poly),
            batch_size=spec.batching.max_batch_size,
            num_cpus=decode_cpus,
            compute=ActorPoolStrategy(size=1),
        )
    ds.set_name(f"autoannotate-task-{run.task_id}-{run.request_id[:8]}")
    # No prefetching: the executor runs ahead on its own, and a prefetched first block
    # reached this loop seconds after its task ended (the first progress report with it).
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for pos, objects, error in zip(
            batch["pos"].tolist(), batch["objects"].tolist(), batch["error"].tolist(), strict=True
        ):
            yield int(pos), (objects or None), (error or None)


def _serve_app(spec: FunctionSpec) -> str | None:
    """The function's Serve application when it is deployed on this cluster, else None."""
    try:
        from ray import serve

        from cvat_ray.storage.services.lambda_functions import app_name

        name = app_name(spec.id)
        return name if name in serve.status().applications else None
    except Exception:
        return None


Engine = Callable[[lambda_runs.RunPlan, Settings], Iterator[Result]]


def pick_engine(settings: Settings, *, on_ray: bool) -> Engine:
    """``functions.engine``; ``auto``: Ray Data when the run's runner is a Ray actor."""
    engine = settings.functions.engine
    if engine == "auto":
        engine = "ray" if on_ray else "local"
    return ray_results if engine == "ray" else local_results


# ---------------------------------------------------------------------------------- the run


def _save(
    db: Database, run: lambda_runs.RunPlan, stats: RunStats, results: list[tuple[int, list[Any]]]
) -> bool:
    """Save one batch of results, unless the run was cancelled (then False, nothing saved).
    The check and the write are one transaction."""
    with db.session() as session:
        running = lambda_runs.report(
            session,
            run.request_id,
            stats.done / max(1, stats.frames),
            f"{stats.done}/{stats.frames} frames, {stats.objects} objects",
        )
        if not running:
            return False
        written, dropped = lambda_runs.save(session, run, results)
        stats.objects += written
        stats.dropped.extend(dropped)
        return True


def run_request(
    db: Database,
    settings: Settings,
    request_id: str,
    worker: str,
    *,
    engine: Engine | None = None,
) -> RunStats | None:
    """Claim and run one request to its end; None when another worker has it. Without an
    ``engine``, the one ``functions.engine`` names (``auto``: local)."""
    with db.session() as session:
        if not request_service.claim(session, request_id, worker):
            return None
    stats = RunStats()
    started = time.monotonic()
    run: lambda_runs.RunPlan | None = None
    try:
        with db.session() as session:
            run = lambda_runs.load_run(session, settings, request_id)
        stats.frames = len(run.frames)
        pending: list[tuple[int, list[Any]]] = []
        every = settings.functions.save_every
        results = (engine or pick_engine(settings, on_ray=False))(run, settings)
        try:
            for pos, objects, error in results:
                stats.done += 1
                frame = run.frames[pos]
                if error is not None:
                    stats.failed.append((frame, error))
                elif objects:
                    pending.append((frame, json.loads(objects)))
                if stats.done % every == 0 or stats.done == stats.frames:
                    running = _save(db, run, stats, pending)
                    pending = []
                    if not running:
                        stats.cancelled = True
                        break
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
        if pending and not stats.cancelled:
            stats.cancelled = not _save(db, run, stats, pending)
        stats.seconds = time.monotonic() - started
        if not stats.cancelled:
            with db.session() as session:
                # cleanup: the old annotations go in the transaction that finishes the run
                stats.cancelled = not lambda_runs.finish(session, run, stats.summary())
        if stats.cancelled:
            with db.session() as session:
                lambda_runs.abandon(session, run)
    except Exception as exc:
        logger.exception("auto-annotation %s failed", request_id)
        stats.seconds = time.monotonic() - started
        with db.session() as session:
            lambda_runs.fail(session, request_id, f"{type(exc).__name__}: {exc}"[:1000], run)
    return stats
