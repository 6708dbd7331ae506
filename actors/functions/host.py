"""One loaded function and the calls CVAT makes to it, in CVAT's wire shapes.

The one place where a spec's model is loaded (:func:`load_spec_model`), where a process
that runs it sets its threads (:func:`use_threads`), and where its calls are made: every
holder of a model (the Serve replica, the in-process runner, the CLI, the stages of a
whole-task run) holds a :class:`ModelHost`. A detector's batch goes through
:func:`~cvat_ray.actors.functions.loader.run_detector` (:meth:`ModelHost.detect`); the
whole-task stages (``cvat_ray.actors.stages``) run the same steps (:meth:`ModelHost.preprocess`,
:meth:`ModelHost.infer`, :meth:`ModelHost.answer`) spread over threads or Ray Data stages.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from typing import Any

from cvat_ray.actors.functions.base import Detector, Image, Interactor, ModelError, Tracker
from cvat_ray.actors.functions.loader import Model, checked_infer, load_model, run_detector
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


def load_spec_model(spec: FunctionSpec, device: str | None = None) -> Model:
    """The model of ``spec`` on ``device`` (default: ``cuda`` when the spec asks for GPUs,
    falling back to the CPU when none is visible). Raises ModelError."""
    return load_model(
        spec.kind,
        spec.runtime.to_loader(),
        [label.name for label in spec.labels],
        device or ("cuda" if spec.resources.num_gpus > 0 else "cpu"),
    )


def use_threads(threads: int) -> None:
    """Give a process that runs a model ``threads`` threads for its math: OpenMP (for
    libraries not loaded yet), torch and OpenCV. Set before the model loads."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(threads)
    with contextlib.suppress(Exception):
        import cv2

        cv2.setNumThreads(threads)


class ModelHost:
    """A spec's model, loaded once, and its calls. ``owns_process``: this process runs the
    model (a Serve replica, an inference actor, a run's driver): its threads are set from
    the spec first (:func:`use_threads`)."""

    def __init__(
        self, spec: FunctionSpec, device: str | None = None, *, owns_process: bool = False
    ) -> None:
        self.spec = spec
        if owns_process:
            use_threads(spec.threads)
        self.model = load_spec_model(spec, device)
        self._detector = self.model if isinstance(self.model, Detector) else None
        # OpenCV trackers and some models are not thread-safe.
        self._lock = threading.Lock()
        # ``infer`` is serialised here unless the model serialises its device work itself
        # (``concurrent_infer``: CUDA models stage batches concurrently).
        concurrent = getattr(self.model, "concurrent_infer", False)
        self._infer_guard: Any = contextlib.nullcontext() if concurrent else self._lock

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            raise ModelError(f"{self.spec.id} is a {self.spec.kind}, not a detector")
        return self._detector

    def call(self, method: str, *args: Any) -> Any:
        """CVAT's call ``method`` (``detect``, ``interact``, ``track``) on one frame, as the
        Serve replica answers it: ``detect(image, threshold, conv_mask_to_poly)``."""
        if method == "detect":
            image, threshold, conv = args
            return self.detect([image], [threshold], [conv])[0]
        if method not in ("interact", "track"):
            raise ModelError(f"unknown function call {method!r}")
        return getattr(self, method)(*args)

    # -- a detector's steps. preprocess and postprocess work on one frame's arrays, so the
    # calls a replica has in flight run them in their own threads while another batch is on
    # the accelerator (a GPU otherwise idles through them); only ``infer`` is serialised.

    def preprocess(self, image: Image) -> Any:
        return self.detector.preprocess(image)

    def infer(self, inputs: list[Any]) -> list[Any]:
        """The model on a batch of preprocessed frames: one output per input."""
        return checked_infer(self.detector, inputs, self._device_infer)

    def _device_infer(self, inputs: list[Any]) -> list[Any]:
        with self._infer_guard:
            return self.detector.infer(inputs)

    def answer(
        self, output: Any, threshold: float, conv_mask_to_poly: bool
    ) -> list[dict[str, Any]]:
        """One frame's output as CVAT's function answer (detections at ``threshold``)."""
        return [
            detection_dict(d, conv_mask_to_poly=conv_mask_to_poly)
            for d in self.detector.postprocess(output, threshold)
        ]

    def detect(
        self, images: list[Image], thresholds: Sequence[float], conv_mask_to_poly: list[bool]
    ) -> list[list[dict[str, Any]]]:
        """One batch through preprocess -> infer -> postprocess; one answer per image."""
        found = run_detector(self.detector, images, thresholds, infer=self._device_infer)
        return [
            [detection_dict(d, conv_mask_to_poly=c) for d in dets]
            for dets, c in zip(found, conv_mask_to_poly, strict=True)
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
