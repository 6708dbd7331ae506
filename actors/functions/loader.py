"""From a function spec's ``runtime`` to a model object, and the detector loop
(:func:`run_detector`).

``runtime`` (see ``cvat_ray.storage.functions.spec.RuntimeSpec.to_loader``) holds exactly one model
source:

- ``class``: ``"package.module:ClassName"`` or a short name of :data:`BUILTINS`; the class
  is instantiated as ``Cls(options=..., labels=..., device=..., weights=...)``;
- ``torchscript``: a ``torch.jit.save`` file, or ``onnx``: a ``.onnx`` file: detectors
  only, with the input/output contract of :mod:`cvat_ray.actors.functions.builtin.exported`;

and optionally ``options`` (a dict for the class), ``weights`` (a local file the class
reads) and ``input_size`` (``[height, width]`` for TorchScript/ONNX). Every failure is a
:class:`~cvat_ray.actors.functions.base.ModelError` whose message can be shown to the user.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cvat_ray.actors.functions.base import (
    Detection,
    Detector,
    Image,
    Interactor,
    ModelError,
    Tracker,
)

BUILTINS: dict[str, str] = {
    "colour": "cvat_ray.actors.functions.builtin.colour:ColourDetector",
    "haar-face": "cvat_ray.actors.functions.builtin.opencv:HaarFaceDetector",
    "hog-people": "cvat_ray.actors.functions.builtin.opencv:HogPeopleDetector",
    "grabcut": "cvat_ray.actors.functions.builtin.opencv:GrabCutInteractor",
    "mil-tracker": "cvat_ray.actors.functions.builtin.opencv:MilTracker",
}

# What each kind must implement; a "reid" model has no protocol yet and is not checked.
_PROTOCOLS: dict[str, type | None] = {
    "detector": Detector,
    "interactor": Interactor,
    "tracker": Tracker,
    "reid": None,
}
_SOURCES = ("class", "torchscript", "onnx")
_KEYS = {*_SOURCES, "options", "weights", "input_size"}

Model = Detector | Interactor | Tracker


def load_model(kind: str, runtime: dict[str, Any], labels: list[str], device: str = "cpu") -> Model:
    """The model object for ``runtime`` (see the module docstring), on ``device``
    (``"cuda"`` falls back to CPU when no GPU is visible). Raises ModelError."""
    if kind not in _PROTOCOLS:
        raise ModelError(f"unknown function kind {kind!r}; expected one of {sorted(_PROTOCOLS)}")
    unknown = sorted(set(runtime) - _KEYS)
    if unknown:
        raise ModelError(f"runtime: unknown keys {unknown}; expected some of {sorted(_KEYS)}")
    sources = [key for key in _SOURCES if runtime.get(key)]
    if len(sources) != 1:
        raise ModelError("runtime needs exactly one of 'class', 'torchscript' or 'onnx'")
    options = runtime.get("options") or {}
    if not isinstance(options, dict):
        raise ModelError(f"runtime.options must be a mapping, got {type(options).__name__}")
    weights = _local_file(runtime.get("weights"), "weights")
    source = sources[0]
    if source != "class":
        if kind != "detector":
            raise ModelError(f"{source} files are supported for detectors only, not {kind}s")
        return _load_file(source, str(runtime[source]), labels, device, runtime, options)
    model = _instantiate(str(runtime["class"]), options, labels, device, weights)
    protocol = _PROTOCOLS[kind]
    if protocol is not None and not isinstance(model, protocol):
        raise ModelError(f"{runtime['class']} is not a {kind} (it lacks the {kind} methods)")
    return model  # type: ignore[no-any-return]


def run_detector(
    model: Model,
    images: list[Image],
    threshold: float | Sequence[float],
    *,
    infer: Callable[[list[Any]], list[Any]] | None = None,
) -> list[list[Detection]]:
    """The detector loop: preprocess each frame, infer on the whole batch (with ``infer``
    when given: :class:`~cvat_ray.actors.functions.host.ModelHost` serialises the device
    there), postprocess each output. Detections of each frame with ``confidence >=`` its
    threshold (one for all, or one per frame). ModelError if ``model`` is not a detector
    (so the result of :func:`load_model` can be passed as is)."""
    if not isinstance(model, Detector):
        raise ModelError(f"{type(model).__name__} is not a detector")
    if not images:
        return []
    thresholds = (
        [float(threshold)] * len(images) if isinstance(threshold, int | float) else threshold
    )
    outputs = checked_infer(model, [model.preprocess(image) for image in images], infer)
    return [model.postprocess(output, t) for output, t in zip(outputs, thresholds, strict=True)]


def checked_infer(
    model: Detector, inputs: list[Any], infer: Callable[[list[Any]], list[Any]] | None = None
) -> list[Any]:
    """``model.infer`` (or ``infer``) on a batch, holding the model to one output per
    input."""
    outputs = (infer or model.infer)(inputs)
    if len(outputs) != len(inputs):
        raise ModelError(f"the model gave {len(outputs)} outputs for {len(inputs)} frames")
    return outputs


def resolve_class(path: str) -> type:
    """The class named by ``path`` (a :data:`BUILTINS` short name or ``module:Class``)."""
    target = BUILTINS.get(path, path)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ModelError(
            f"unknown model class {path!r}: use 'package.module:ClassName' or one of "
            f"{sorted(BUILTINS)}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"model class {path!r}: cannot import {module_name} ({exc})") from None
    cls = getattr(module, attr, None)
    if not isinstance(cls, type):
        raise ModelError(f"model class {path!r}: {module_name} has no class {attr!r}")
    return cls


def _instantiate(
    path: str, options: dict[str, Any], labels: list[str], device: str, weights: str | None
) -> Any:
    cls = resolve_class(path)
    try:
        return cls(options=options, labels=list(labels), device=device, weights=weights)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"model class {path!r} failed to start: {type(exc).__name__}: {exc}"
        ) from None


def _load_file(
    source: str,
    path: str,
    labels: list[str],
    device: str,
    runtime: dict[str, Any],
    options: dict[str, Any],
) -> Detector:
    from cvat_ray.actors.functions.builtin.exported import OnnxDetector, TorchScriptDetector

    cls = TorchScriptDetector if source == "torchscript" else OnnxDetector
    local = _local_file(path, source)
    assert local is not None
    return cls(local, labels, device=device, input_size=runtime.get("input_size"), options=options)


def _local_file(value: Any, key: str) -> str | None:
    """``value`` as a local file path (None stays None); ModelError for URLs and for files
    that do not exist."""
    if value is None or value == "":
        return None
    text = str(value)
    if "://" in text:
        raise ModelError(f"runtime.{key}: {text} must be downloaded to a local file first")
    if not Path(text).expanduser().is_file():
        raise ModelError(f"runtime.{key}: file {Path(text).name} not found ({text})")
    return str(Path(text).expanduser())
