"""OpenCV detectors whose models ship inside opencv-python-headless 4.x (offline).

- :class:`HaarFaceDetector`: the frontal face Haar cascade (``cv2.data.haarcascades``);
- :class:`HogPeopleDetector`: the HOG + linear SVM people detector compiled into OpenCV.

OpenCV has no batched inference: ``infer`` runs the frames of a batch one after another
(it still pays to batch them, since the pipeline around it moves whole batches). Both are
CPU-only; ``device`` is accepted and ignored. The interactive tools (GrabCut, the MIL
tracker) live in :mod:`cvat_ray.actors.functions.builtin.interactive` and are re-exported here.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cvat_ray.actors.functions.base import Detection, Image, ModelError
from cvat_ray.actors.functions.builtin.common import (
    margin_to_confidence,
    option_float,
    option_int,
)
from cvat_ray.actors.functions.builtin.interactive import GrabCutInteractor, MilTracker

__all__ = ["GrabCutInteractor", "HaarFaceDetector", "HogPeopleDetector", "MilTracker"]

HAAR_FACE = "haarcascade_frontalface_default.xml"


def apply_cv_threads(options: Mapping[str, Any]) -> None:
    """``cv2.setNumThreads(options["threads"])`` when the option is given."""
    if "threads" in options:
        cv2.setNumThreads(option_int(options, "threads", 1, minimum=1))


def _label(options: Mapping[str, Any], labels: list[str] | None, default: str) -> str:
    """The one label the detector emits (option ``label``), which the spec must list."""
    name = str(options.get("label", default))
    if labels and name not in labels:
        raise ModelError(
            f"this model emits the label {name!r}, which the function's labels {labels} lack "
            "(add it, or rename it with the option 'label')"
        )
    return name


def _rgb(image: Image) -> Image:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ModelError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    return image


class HaarFaceDetector:
    """Faces with OpenCV's Viola-Jones cascade (``detectMultiScale3``).

    Options: ``scale_factor`` (1.1), ``min_neighbors`` (5), ``min_size`` (px, 30),
    ``equalize`` (histogram equalisation of the grey frame, true), ``cascade`` (another file
    of ``cv2.data.haarcascades``), ``label`` ("face"), ``threads`` (``cv2.setNumThreads``).
    ``weights``: a local cascade XML, instead of the shipped one.

    Confidence: the cascade's level weight ``w`` (the last stage's score: about 9 for a
    clear face, 1-8 for the faces it hallucinates in textures) as ``1 - exp(-w / 4)``,
    at least 0.01: ``w = 4`` gives 0.63, ``w = 9`` gives 0.89.
    """

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
        device: str = "cpu",
        weights: str | None = None,
    ) -> None:
        options = dict(options or {})
        apply_cv_threads(options)
        self.labels = [_label(options, labels, "face")]
        self.scale_factor = option_float(options, "scale_factor", 1.1, minimum=1.01)
        self.min_neighbors = option_int(options, "min_neighbors", 5, minimum=0)
        self.min_size = option_int(options, "min_size", 30, minimum=1)
        self.equalize = bool(options.get("equalize", True))
        path = weights or str(_haarcascades() / str(options.get("cascade", HAAR_FACE)))
        try:
            self.cascade = cv2.CascadeClassifier(path)
        except (cv2.error, SystemError):  # OpenCV raises on some malformed XML files
            self.cascade = cv2.CascadeClassifier()
        if self.cascade.empty():
            raise ModelError(f"{Path(path).name}: not a readable Haar cascade XML file")

    def preprocess(self, image: Image) -> np.ndarray:
        """RGB -> grey uint8 (histogram-equalised unless ``equalize`` is false)."""
        grey = cv2.cvtColor(_rgb(image), cv2.COLOR_RGB2GRAY)
        return cv2.equalizeHist(grey) if self.equalize else grey

    def infer(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Per frame, a ``(M, 5)`` float32 array of ``x, y, w, h, level weight``."""
        out = []
        for grey in batch:
            rects, _, level = self.cascade.detectMultiScale3(
                grey,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size),
                outputRejectLevels=True,
            )
            out.append(_rows(rects, level))
        return out

    def postprocess(self, output: np.ndarray, threshold: float) -> list[Detection]:
        found = []
        for x, y, w, h, weight in output.tolist():
            confidence = max(0.01, 1.0 - math.exp(-max(weight, 0.0) / 4.0))
            if confidence >= threshold:
                found.append(
                    Detection(self.labels[0], "rectangle", [x, y, x + w, y + h], confidence)
                )
        return found


class HogPeopleDetector:
    """Standing people with OpenCV's HOG descriptor and its default people SVM (trained on
    64x128 windows: people shorter than ~128 px are missed unless ``upscale`` > 1).

    Options: ``win_stride`` (8), ``padding`` (8), ``scale`` (pyramid step, 1.05),
    ``hit_threshold`` (SVM margin, 0), ``upscale`` (factor applied to the frame first, 1),
    ``label`` ("person"), ``threads`` (``cv2.setNumThreads``). ``weights`` is not used.

    Confidence: the SVM margin ``m`` (>= ``hit_threshold``, typically 0-6) as ``m / (1 +
    m)``: a margin of 1 gives 0.5, 4 gives 0.8.
    """

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
        device: str = "cpu",
        weights: str | None = None,
    ) -> None:
        options = dict(options or {})
        apply_cv_threads(options)
        self.labels = [_label(options, labels, "person")]
        stride = option_int(options, "win_stride", 8, minimum=1)
        pad = option_int(options, "padding", 8, minimum=0)
        self.win_stride = (stride, stride)
        self.padding = (pad, pad)
        self.scale = option_float(options, "scale", 1.05, minimum=1.01)
        self.hit_threshold = option_float(options, "hit_threshold", 0.0)
        self.upscale = option_float(options, "upscale", 1.0, minimum=0.1)
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(
            np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32)
        )

    def preprocess(self, image: Image) -> np.ndarray:
        """The RGB frame, resized by ``upscale`` (HOG takes the strongest gradient over the
        channels, so the channel order does not matter)."""
        image = _rgb(image)
        if self.upscale != 1.0:
            h, w = image.shape[:2]
            size = (round(w * self.upscale), round(h * self.upscale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(image)

    def infer(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        """Per frame, a ``(M, 5)`` float32 array of ``x, y, w, h, margin`` in frame pixels."""
        out = []
        for image in batch:
            rects, margins = self.hog.detectMultiScale(
                image,
                hitThreshold=self.hit_threshold,
                winStride=self.win_stride,
                padding=self.padding,
                scale=self.scale,
            )
            rows = _rows(rects, margins)
            rows[:, :4] /= self.upscale
            out.append(rows)
        return out

    def postprocess(self, output: np.ndarray, threshold: float) -> list[Detection]:
        found = []
        for x, y, w, h, margin in output.tolist():
            confidence = margin_to_confidence(margin)
            if confidence >= threshold and confidence > 0:
                found.append(
                    Detection(self.labels[0], "rectangle", [x, y, x + w, y + h], confidence)
                )
        return found


def _haarcascades() -> Path:
    """The folder of the cascades shipped in the wheel (``cv2.data.haarcascades``, which
    OpenCV's type stubs do not declare)."""
    return Path(importlib.import_module("cv2.data").haarcascades)


def _rows(rects: Any, scores: Any) -> np.ndarray:
    """OpenCV's ``(rects, scores)`` (tuples when empty) as one ``(M, 5)`` float32 array."""
    boxes = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
    values = np.asarray(scores, dtype=np.float32).reshape(-1, 1)
    if len(values) != len(boxes):  # OpenCV gives no scores for some configurations
        values = np.ones((len(boxes), 1), np.float32)
    return np.hstack([boxes, values])
