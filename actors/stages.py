"""The stages of a whole-task auto-annotation pipeline, as plain functions and Ray Data
callable classes.

Kept light on imports (numpy, the frame decoder, the model loader on demand; no database
code), because every Ray Data actor that runs a stage imports this module when it starts,
and that start is part of every run's latency.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from actors.functions.base import Detector
from actors.functions.output import detection_dict
from storage.functions.spec import FunctionSpec
from storage.media.render import RenderPlan, decode


def decode_frames(plan: RenderPlan, indexes: list[int]) -> list[tuple[int, np.ndarray | str]]:
    """``(position, RGB array or error)`` for ``plan.frames[i]`` of each index; a failing
    group is retried frame by frame so one bad frame costs only itself."""
    sub = dataclasses.replace(plan, frames=tuple(plan.frames[i] for i in indexes))
    try:
        return [(i, np.asarray(im)) for i, im in zip(indexes, decode(sub), strict=True)]
    except Exception:
        if len(indexes) == 1:
            return [(indexes[0], reason())]
    out: list[tuple[int, np.ndarray | str]] = []
    for i in indexes:
        out.extend(decode_frames(plan, [i]))
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


def infer_isolating(model: Detector, inputs: list[Any]) -> list[Any | str]:
    """``model.infer`` on a batch, a failing frame isolated (:func:`isolating`)."""
    return isolating(model.infer, inputs)


def postprocess_json(model: Detector, output: Any, threshold: float, conv: bool) -> str:
    dets = model.postprocess(output, threshold)
    return json.dumps([detection_dict(d, conv_mask_to_poly=conv) for d in dets])


def load_detector(spec: FunctionSpec, *, device: str | None = None) -> Detector:
    from actors.functions.loader import load_model

    model = load_model(
        spec.kind,
        spec.runtime.to_loader(),
        [label.name for label in spec.labels],
        device or ("cuda" if spec.resources.num_gpus > 0 else "cpu"),
    )
    assert isinstance(model, Detector)
    return model


def set_threads(spec: FunctionSpec) -> None:
    import torch

    with contextlib.suppress(RuntimeError):
        torch.set_num_threads(spec.threads)


class Decode:
    """Ray Data stage: decode a group of frames and run the model's preprocess."""

    def __init__(self, plan: RenderPlan, spec: FunctionSpec) -> None:
        self.plan = plan
        self.model = load_detector(spec, device="cpu")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        positions: list[int] = []
        inputs: list[Any] = []
        errors: list[str] = []
        for start, stop in zip(batch["start"].tolist(), batch["stop"].tolist(), strict=True):
            for pos, image in decode_frames(self.plan, list(range(start, stop))):
                positions.append(pos)
                if isinstance(image, str):
                    inputs.append(None)
                    errors.append(image)
                    continue
                try:
                    inputs.append(self.model.preprocess(image))
                    errors.append("")
                except Exception:
                    inputs.append(None)
                    errors.append(reason())
        return {"pos": np.array(positions), "input": _column(inputs), "error": errors}


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
    """Ray Data stage: the model on batches, with the function's resources."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.model = load_detector(spec)
        set_threads(spec)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        positions = list(batch["pos"])
        errors = list(batch["error"])
        live = [i for i, e in enumerate(errors) if not e]
        outputs: list[Any] = [None] * len(positions)
        results = infer_isolating(self.model, [batch["input"][i] for i in live]) if live else []
        for i, output in zip(live, results, strict=True):
            if isinstance(output, str):
                errors[i] = output
            else:
                outputs[i] = output
        return {"pos": positions, "output": outputs, "error": errors}


def _stacked(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """Frames of one shape as one array: one buffer to serialize instead of one per frame."""
    first = images[0]
    if all(im.shape == first.shape and im.dtype == first.dtype for im in images):
        return np.stack(images)
    return images


class DecodeServeInfer:
    """Ray Data stage: decode a block of frames and send it, as one batch, to the function's
    Serve replicas (preprocess, infer and postprocess run there). A run thus shares the
    replicas, their GPUs and their autoscaling with online calls instead of reserving its
    own. The pool has two actors per replica: while one waits for its batch, the other
    decodes the next, so the replicas never wait for frames; decoded frames go straight to
    the replica (no copy through Ray Data's blocks)."""

    def __init__(
        self, app: str, plan: RenderPlan, threshold: float, conv: bool, timeout_s: float
    ) -> None:
        from ray import serve

        self.handle = serve.get_app_handle(app)
        self.plan = plan
        self.threshold = threshold
        self.conv = conv
        self.timeout_s = timeout_s

    def _detect_batch(self, images: list[Any]) -> list[Any]:
        result: list[Any] = self.handle.detect_many.remote(
            _stacked(images), self.threshold, self.conv
        ).result(timeout_s=self.timeout_s)
        return result

    def _detect(self, images: list[Any]) -> list[Any]:
        return isolating(self._detect_batch, images)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        positions: list[int] = []
        objects: list[str] = []
        errors: list[str] = []
        for start, stop in zip(batch["start"].tolist(), batch["stop"].tolist(), strict=True):
            decoded = decode_frames(self.plan, list(range(start, stop)))
            live = [(pos, image) for pos, image in decoded if not isinstance(image, str)]
            results = dict(
                zip(
                    [pos for pos, _ in live],
                    self._detect([image for _, image in live]) if live else [],
                    strict=True,
                )
            )
            for pos, image in decoded:
                positions.append(pos)
                result = image if isinstance(image, str) else results[pos]
                if isinstance(result, str):
                    objects.append("")
                    errors.append(result)
                else:
                    objects.append(json.dumps(result))
                    errors.append("")
        return {"pos": positions, "objects": objects, "error": errors}


class Post:
    """Ray Data stage: detections as CVAT's function output (JSON text)."""

    def __init__(self, spec: FunctionSpec, threshold: float, conv: bool) -> None:
        self.model = load_detector(spec, device="cpu")
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
                objects.append(postprocess_json(self.model, output, self.threshold, self.conv))
            except Exception:
                objects.append("")
                errors[i] = reason()
        return {"pos": list(batch["pos"]), "objects": objects, "error": errors}
