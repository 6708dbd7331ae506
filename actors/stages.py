"""The stages of a whole-task auto-annotation pipeline, as plain functions and callable
classes: ``Decode`` (decode + the model's preprocess) -> ``Infer`` -> ``Post`` (postprocess
to CVAT's JSON), which the Ray Data pipeline runs as stages of their own and the local
engine runs in its threads (``cvat_ray.actors.autoannotate``), and
:func:`decode_serve_infer`, which sends frames to the function's Serve replicas (they run
:meth:`~cvat_ray.actors.functions.host.ModelHost.detect`). Every model call goes through a
:class:`~cvat_ray.actors.functions.host.ModelHost`.

Kept light on imports (numpy, the frame decoder, the model host; models and torch load on
demand; no database code), because every Ray Data actor that runs a stage imports this module when it starts,
and that start is part of every run's latency.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import json
import traceback
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np

from cvat_ray.actors.functions.host import ModelHost
from cvat_ray.cluster import ray_compat
from cvat_ray.storage.functions.spec import FunctionSpec
from cvat_ray.storage.media import cloud
from cvat_ray.storage.media.render import RenderPlan, decode_array, decode_arrays, read_encoded


def _load_secrets(storage_id: int) -> dict[str, str]:
    from cvat_ray.storage.services.cloud_storages import load_secrets

    return load_secrets(storage_id)


# A run's frame plan reaches the pipeline's tasks and actors pickled, its cloud credentials
# left behind (storage.media.cloud.CloudAccess): the processes that run these stages read
# them from the database themselves.
cloud.secret_loader = _load_secrets

T = TypeVar("T")
# A frame on its way to a model: an RGB array, or a stored image file still encoded.
Frame = np.ndarray | bytes


def decode_frames(plan: RenderPlan, indexes: list[int]) -> list[tuple[int, np.ndarray | str]]:
    """``(position, RGB array or error)`` for ``plan.frames[i]`` of each index; a failing
    group is retried frame by frame so one bad frame costs only itself."""

    def decoded(sub: RenderPlan) -> list[np.ndarray | str]:
        return list(decode_arrays(sub))

    return _frame_by_frame(decoded, plan, indexes)


def read_frames(plan: RenderPlan, indexes: list[int]) -> list[tuple[int, Frame | str]]:
    """Like :func:`decode_frames`, but an imageset's frames stay encoded (their files, a
    tenth of the pixels' size): whoever runs the model decodes them (:func:`frame_array`).
    A video's frames are decoded here, with one seek per group."""
    if plan.media == "video":
        return list(decode_frames(plan, indexes))

    def encoded(sub: RenderPlan) -> list[Frame | str]:
        return list(read_encoded(sub))

    return _frame_by_frame(encoded, plan, indexes)


def frame_array(frame: Frame) -> np.ndarray:
    """A frame as the RGB array models take (decoding a stored file)."""
    return decode_array(frame) if isinstance(frame, bytes) else frame


def _frame_by_frame(
    read: Callable[[RenderPlan], list[T]], plan: RenderPlan, indexes: list[int]
) -> list[tuple[int, T]]:
    """``read`` on the frames at ``indexes``; if it fails, on each frame alone, a frame that
    still fails giving its error (``T`` includes ``str``)."""
    sub = dataclasses.replace(plan, frames=tuple(plan.frames[i] for i in indexes))
    try:
        return list(zip(indexes, read(sub), strict=True))
    except Exception:
        if len(indexes) == 1:
            return [(indexes[0], cast(T, reason()))]
    out: list[tuple[int, T]] = []
    for i in indexes:
        out.extend(_frame_by_frame(read, plan, [i]))
    return out


def reason() -> str:
    lines = traceback.format_exc().strip().splitlines()
    return lines[-1][:200] if lines else "unknown error"


def isolating(batch_fn: Callable[[list[Any]], list[Any]], items: list[Any]) -> list[Any]:
    """``batch_fn`` on a batch; if the batch fails, on each item alone, so a bad frame
    becomes its error string instead of failing its neighbours."""
    try:
        return list(batch_fn(items))
    except Exception:
        if len(items) == 1:
            return [reason()]
    out: list[Any] = []
    for item in items:
        out.extend(isolating(batch_fn, [item]))
    return out


def prepare_frames(
    host: ModelHost, plan: RenderPlan, indexes: list[int]
) -> list[tuple[int, Any, str]]:
    """``(position, preprocessed frame or None, error or "")`` of ``plan.frames[i]`` for
    each index: decoded, then the model's preprocess; a frame that fails costs only itself."""
    out: list[tuple[int, Any, str]] = []
    for pos, image in decode_frames(plan, indexes):
        if isinstance(image, str):
            out.append((pos, None, image))
            continue
        try:
            out.append((pos, host.preprocess(image), ""))
        except Exception:
            out.append((pos, None, reason()))
    return out


class Decode:
    """Stage: decode a block of frames and run the model's preprocess."""

    def __init__(self, plan: RenderPlan, spec: FunctionSpec, host: ModelHost | None = None) -> None:
        self.plan = plan
        self.host = host or ModelHost(spec, device="cpu")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        prepared: list[tuple[int, Any, str]] = []
        for start, stop in zip(batch["start"].tolist(), batch["stop"].tolist(), strict=True):
            prepared.extend(prepare_frames(self.host, self.plan, list(range(start, stop))))
        return {
            "pos": np.array([pos for pos, _, _ in prepared]),
            "input": _column([value for _, value, _ in prepared]),
            "error": [error for _, _, error in prepared],
        }


def _column(values: list[Any]) -> Any:
    """Arrays of one shape as one stacked array (a tensor column Ray Data moves without
    pickling each frame); otherwise a list, failed frames as empty arrays."""
    arrays = [v for v in values if isinstance(v, np.ndarray)]
    if arrays and len(arrays) == len(values):
        first = arrays[0]
        if all(a.shape == first.shape and a.dtype == first.dtype for a in arrays):
            return np.stack(arrays)
    if arrays:
        empty = np.zeros((0,) * arrays[0].ndim, dtype=arrays[0].dtype)
        return [v if isinstance(v, np.ndarray) else empty for v in values]
    return values


class Infer:
    """Stage: the model on batches, with the function's resources (its process is the
    model's: :class:`ModelHost` ``owns_process``)."""

    def __init__(self, spec: FunctionSpec, host: ModelHost | None = None) -> None:
        self.host = host or ModelHost(spec, owns_process=True)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        positions = list(batch["pos"])
        errors = list(batch["error"])
        live = [i for i, e in enumerate(errors) if not e]
        outputs: list[Any] = [None] * len(positions)
        results = isolating(self.host.infer, [batch["input"][i] for i in live]) if live else []
        for i, output in zip(live, results, strict=True):
            if isinstance(output, str):
                errors[i] = output
            else:
                outputs[i] = output
        return {"pos": positions, "output": outputs, "error": errors}


def _stacked(frames: list[Frame]) -> np.ndarray | list[Frame]:
    """Decoded frames of one shape as one array: one buffer to serialize instead of one per
    frame. Encoded frames go as they are."""
    arrays = [f for f in frames if isinstance(f, np.ndarray)]
    if len(arrays) != len(frames):
        return frames
    first = arrays[0]
    if all(a.shape == first.shape and a.dtype == first.dtype for a in arrays):
        return np.stack(arrays)
    return frames


# Requests a pipeline task keeps outstanding at the function's replicas.
IN_FLIGHT = 2
# Pipeline tasks at once per function replica: while one waits for its last answers or
# Ray Data hands it the next block, the other keeps the replica busy.
TASKS_PER_REPLICA = 2
# A whole-task run's requests outstanding at each replica when it has them all.
RUN_REQUESTS_PER_REPLICA = TASKS_PER_REPLICA * IN_FLIGHT


def gpu_requests_per_replica(cpus: float) -> int:
    """Requests a GPU replica holds at once when a whole-task run feeds it: about one per
    CPU of the node (plus a few, as Python's default thread pool has), each decoding,
    preprocessing or postprocessing its batch in a thread of the replica while the device
    runs one batch after another."""
    return max(2, int(cpus)) + 4


def run_shape(spec: FunctionSpec, cpus: float) -> tuple[int, int]:
    """``(pipeline tasks, requests each keeps in flight)`` of a whole-task run on the
    function's Serve replicas, for a cluster of ``cpus`` CPUs.

    CPU replicas run one batch at a time on threads of their own: two tasks per replica with
    two requests each keep them busy (:data:`RUN_REQUESTS_PER_REPLICA`). A GPU replica is
    fed only when it holds :func:`gpu_requests_per_replica`; the run sends them from a task
    per two CPUs, so that the tasks also decode a video's frames (one seek per group) at the
    device's pace."""
    replicas = max(1, spec.autoscaling.max_replicas)
    if spec.resources.num_gpus <= 0:
        return TASKS_PER_REPLICA * replicas, IN_FLIGHT
    tasks = max(TASKS_PER_REPLICA * replicas, int(cpus) // 2)
    in_flight = max(IN_FLIGHT, -(-gpu_requests_per_replica(cpus) * replicas // tasks))
    return tasks, in_flight


_gc_frozen = False


def freeze_gc() -> None:
    """Take what this worker process holds so far (Ray, Ray Data, Serve, their modules)
    out of the garbage collector's sight, once per process. A pipeline task unpickles
    every answer into fresh dicts and lists, which triggers collections, and each full
    one walked all of that: half of the samples py-spy took of a busy task were in the
    collector; frozen, the tasks' processes used 1.5 ms of CPU per frame instead of 1.7."""
    global _gc_frozen
    if not _gc_frozen:
        gc.freeze()
        _gc_frozen = True


# Serve handles of this worker process, per application: a Ray Data task reuses its
# worker's handle (and its replica list) instead of asking the controller again.
_HANDLES: dict[str, Any] = {}


def serve_handle(app: str) -> Any:
    handle = _HANDLES.get(app)
    if handle is None:
        from ray import serve

        handle = _HANDLES[app] = serve.get_app_handle(app)
    return handle


def forget_handle(app: str) -> None:
    """Drop this process's handle to ``app`` and Serve's cached controller client: the
    next call looks both up again (the application may have been redeployed, or Serve
    restarted with a new controller)."""
    _HANDLES.pop(app, None)
    with contextlib.suppress(Exception):
        ray_compat.forget_serve_controller()


def decode_serve_infer(
    batch: dict[str, Any],
    app: str,
    plan: RenderPlan,
    threshold: float,
    conv: bool,
    timeout_s: float,
    batch_size: int,
    in_flight: int = IN_FLIGHT,
) -> dict[str, list[Any]]:
    """Ray Data stage (tasks): read a block of frames and send it, ``batch_size`` frames per
    request, to the function's Serve replicas, which decode, preprocess, infer and
    postprocess. A run thus shares the replicas, their GPUs and their autoscaling with
    online calls instead of reserving its own. Image files travel encoded (a tenth of their
    pixels' size; video frames are decoded here), straight to the replica rather than
    through Ray Data's blocks. Up to ``in_flight`` requests are outstanding while the
    next batch is read, so the replicas never wait for frames (:func:`run_shape`)."""

    freeze_gc()

    def send(images: list[Any]) -> Any:
        return serve_handle(app).detect_many.remote(_stacked(images), threshold, conv)

    def detect_batch(images: list[Any]) -> list[Any]:
        result: list[Any] = send(images).result(timeout_s=timeout_s)
        return result

    positions: list[int] = []
    objects: list[str] = []
    errors: list[str] = []

    def finish(decoded: list[tuple[int, Frame | str]], response: Any) -> None:
        frames = [frame for _, frame in decoded if not isinstance(frame, str)]
        answers: list[Any] = []
        if frames:
            try:
                answers = list(response.result(timeout_s=timeout_s))
            except Exception:
                # The batch failed: once more frame by frame, so a bad frame costs only
                # itself, through a new handle in case the application was redeployed.
                forget_handle(app)
                for frame in frames:
                    answers.extend(isolating(detect_batch, [frame]))
        it = iter(answers)
        for pos, item in decoded:
            positions.append(pos)
            result: Any = item if isinstance(item, str) else next(it)
            if isinstance(result, str):
                objects.append("")
                errors.append(result)
            else:
                objects.append(json.dumps(result))
                errors.append("")

    pending: collections.deque[tuple[list[tuple[int, Frame | str]], Any]] = collections.deque()
    for start, stop in zip(batch["start"].tolist(), batch["stop"].tolist(), strict=True):
        for first in range(start, stop, batch_size):
            decoded = read_frames(plan, list(range(first, min(first + batch_size, stop))))
            images = [image for _, image in decoded if not isinstance(image, str)]
            pending.append((decoded, send(images) if images else None))
            if len(pending) >= in_flight:
                finish(*pending.popleft())
    while pending:
        finish(*pending.popleft())
    return {"pos": positions, "objects": objects, "error": errors}


def warm_workers(count: int, num_cpus: float) -> None:
    """Run a tiny Ray Data pipeline of ``count`` concurrent tasks shaped like a run's, so
    that ``count`` worker processes are left with Ray Data, Serve and this module imported:
    the next run's tasks start on them at once instead of spawning workers."""
    import ray.data

    # from_items, not range: a read task would want a whole CPU
    items = [{"i": i} for i in range(count)]
    ds = ray.data.from_items(items, override_num_blocks=count).map_batches(
        _warm, batch_size=None, num_cpus=num_cpus, concurrency=count
    )
    ds.set_name("autoannotate-warm-up")
    for _ in ds.iter_batches(batch_size=None):
        pass


def _warm(batch: dict[str, Any]) -> dict[str, Any]:
    import time

    from ray import serve  # noqa: F401

    freeze_gc()

    time.sleep(0.5)  # held, so that the other tasks get workers of their own
    return batch


class Post:
    """Stage: detections as CVAT's function output (JSON text)."""

    def __init__(
        self, spec: FunctionSpec, threshold: float, conv: bool, host: ModelHost | None = None
    ) -> None:
        self.host = host or ModelHost(spec, device="cpu")
        self.threshold = threshold
        self.conv = conv

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        objects: list[str] = []
        errors = list(batch["error"])
        for i, output in enumerate(batch["output"]):
            if errors[i]:
                objects.append("")
                continue
            try:
                objects.append(json.dumps(self.host.answer(output, self.threshold, self.conv)))
            except Exception:
                objects.append("")
                errors[i] = reason()
        return {"pos": list(batch["pos"]), "objects": objects, "error": errors}
