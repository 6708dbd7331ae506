"""What every model runtime implements, whatever serves it.

Images are ``numpy.ndarray`` of shape ``(height, width, 3)``, ``uint8``, RGB.

A detector is split in three steps so a pipeline can run them on different workers:
``preprocess`` (CPU, one frame), ``infer`` (the accelerator, a whole batch) and
``postprocess`` (CPU, one frame). A Serve replica runs all three; a Ray Data pipeline
runs preprocess with decoding, infer in an actor pool with the function's resources, and
postprocess with saving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

Image = np.ndarray
ShapeType = Literal["rectangle", "polygon", "polyline", "points", "mask", "ellipse", "tag"]


@dataclass
class Detection:
    """One object found on a frame, in the frame's pixel coordinates.

    ``points`` follow CVAT's layout for ``type`` (rectangle: xtl, ytl, xbr, ybr; polygon:
    x0, y0, x1, y1, ...). A mask is CVAT's RLE (``mask``: run lengths over the box, starting
    with zeros) followed by the box's xtl, ytl, xbr, ybr in ``points``.
    """

    label: str
    type: ShapeType
    points: list[float]
    confidence: float
    attributes: dict[str, str] = field(default_factory=dict)
    mask: list[int] | None = None


@runtime_checkable
class Detector(Protocol):
    """A detector: frames in, detections out."""

    # Labels the model can emit, by name (the spec's labels must be a superset).
    labels: list[str]
    # ``preprocess`` and ``postprocess`` must be safe to call from several threads at once
    # (they only read the model's settings). ``infer`` is called one batch at a time unless
    # the model has a true ``concurrent_infer`` attribute: then calls may overlap, and the
    # model serialises its device work itself (CUDA models stage batches concurrently).

    def preprocess(self, image: Image) -> Any:
        """CPU work for one frame (resize, normalise); the result must pickle (numpy)."""

    def infer(self, batch: list[Any]) -> list[Any]:
        """The model on a batch of preprocessed frames; one output per input, picklable."""

    def postprocess(self, output: Any, threshold: float) -> list[Detection]:
        """Detections of one frame with ``confidence >= threshold``."""


@dataclass
class InteractorResult:
    """A polygon (``points`` flat x, y list) and, when the model makes one, the mask as
    a ``(height, width)`` uint8 array of the whole frame."""

    points: list[float]
    mask: np.ndarray | None = None


@runtime_checkable
class Interactor(Protocol):
    def interact(
        self,
        image: Image,
        pos_points: list[tuple[float, float]],
        neg_points: list[tuple[float, float]],
        obj_bbox: tuple[float, float, float, float] | None,
    ) -> InteractorResult: ...


@dataclass
class TrackResult:
    """The tracked shape on the new frame (rectangle points) and the state to send next."""

    points: list[float]
    state: dict[str, Any]


@runtime_checkable
class Tracker(Protocol):
    def start(self, image: Image, points: list[float]) -> TrackResult:
        """Start tracking the rectangle ``points`` on ``image``."""

    def step(self, image: Image, state: dict[str, Any]) -> TrackResult:
        """Follow the object onto ``image`` from ``state`` (returned by start/step)."""


class ModelError(Exception):
    """A model cannot be loaded or run (bad file, wrong output layout); the message is
    shown to the user as is."""


def to_device(device: str | None) -> str:
    """``"cuda"`` when asked for and available, else ``"cpu"``."""
    if device and device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return device
    return "cpu"
