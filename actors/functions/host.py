"""One loaded function and the calls CVAT makes to it, in CVAT's wire shapes.

The Serve deployment (``cvat_ray.serve_apps.functions``) and the in-process runner both hold a
:class:`ModelHost`; it turns arrays and model results into CVAT's function answers.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from cvat_ray.actors.functions.base import Detector, Image, Interactor, ModelError, Tracker
from cvat_ray.actors.functions.loader import load_model
from cvat_ray.actors.functions.output import detection_dict, interactor_dict
from cvat_ray.storage.functions.spec import FunctionSpec

# glibc's allocator settings for a process that runs a model (Serve replicas and inference
# actors), set when the process starts. A model's calls run on a worker thread, and a
# thread's arena grows in heaps of at most 64 MiB that are unmapped when they empty: with a
# batch's tensors above that (eight 640x480 float frames are 29 MiB, a frame's activations
# 20 MiB), every batch mapped fresh pages and faulted them in again, about 19 MiB a frame
# (measured: 110-180 thousand minor faults/s and a fifth of the replica's CPU in the
# kernel). One arena (the main heap, which has no such limit), never trimmed below 1 GiB
# of free top and with blocks up to 32 MiB kept in it, makes the memory of one batch the
# memory of the next: a process keeps the peak of what it used.
MODEL_PROCESS_ENV = {
    "MALLOC_ARENA_MAX": "1",
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024),
}


def model_process_options(spec: FunctionSpec) -> dict[str, Any]:
    """Ray options of a process that runs the model of ``spec``: its resources and the
    allocator settings above."""
    options: dict[str, Any] = {
        "num_cpus": spec.resources.num_cpus,
        "runtime_env": {"env_vars": dict(MODEL_PROCESS_ENV)},
    }
    if spec.resources.num_gpus:
        options["num_gpus"] = spec.resources.num_gpus
    if spec.resources.memory:
        options["memory"] = spec.resources.memory
    return options


class ModelHost:
    def __init__(self, spec: FunctionSpec, device: str | None = None) -> None:
        self.spec = spec
        self.model = load_model(
            spec.kind,
            spec.runtime.to_loader(),
            [label.name for label in spec.labels],
            device or ("cuda" if spec.resources.num_gpus > 0 else "cpu"),
        )
        # OpenCV trackers and some models are not thread-safe.
        self._lock = threading.Lock()

    def detect(
        self, images: list[Image], thresholds: list[float], conv_mask_to_poly: list[bool]
    ) -> list[list[dict[str, Any]]]:
        """One batch through preprocess -> infer -> postprocess; one answer per image."""
        model = self.model
        if not isinstance(model, Detector):
            raise ModelError(f"{self.spec.id} is a {self.spec.kind}, not a detector")
        # preprocess and postprocess work on one frame's arrays, so the calls a replica has
        # in flight run them in their own threads while another batch is on the accelerator
        # (a GPU otherwise idles through them). ``infer`` is serialised here unless the
        # model serialises its device work itself (``concurrent_infer``).
        inputs = [model.preprocess(im) for im in images]
        with contextlib.nullcontext() if getattr(model, "concurrent_infer", False) else self._lock:
            outputs = model.infer(inputs)
        return [
            [detection_dict(d, conv_mask_to_poly=c) for d in model.postprocess(out, t)]
            for out, t, c in zip(outputs, thresholds, conv_mask_to_poly, strict=True)
        ]

    def interact(
        self,
        image: Image,
        pos_points: list[tuple[float, float]],
        neg_points: list[tuple[float, float]],
        obj_bbox: tuple[float, float, float, float] | None,
    ) -> dict[str, Any]:
        model = self.model
        if not isinstance(model, Interactor):
            raise ModelError(f"{self.spec.id} is a {self.spec.kind}, not an interactor")
        with self._lock:
            return interactor_dict(model.interact(image, pos_points, neg_points, obj_bbox))

    def track(
        self,
        image: Image,
        shapes: list[list[float]] | None,
        states: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """CVAT's tracker call: ``shapes`` start tracks; ``states`` continue them (a state of
        null with a shape restarts that one). Answers ``{shapes, states}``."""
        model = self.model
        if not isinstance(model, Tracker):
            raise ModelError(f"{self.spec.id} is a {self.spec.kind}, not a tracker")
        count = len(states) if states else len(shapes or [])
        out_shapes: list[list[float]] = []
        out_states: list[dict[str, Any]] = []
        with self._lock:
            for i in range(count):
                state = states[i] if states else None
                if state:
                    result = model.step(image, state)
                else:
                    assert shapes is not None
                    result = model.start(image, shapes[i])
                out_shapes.append([float(v) for v in result.points])
                out_states.append(result.state)
        return {"shapes": out_shapes, "states": out_states}
