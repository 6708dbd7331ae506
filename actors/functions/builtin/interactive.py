"""OpenCV's interactive tools: GrabCut segmentation from clicks or a box, and the MIL
tracker. Both are classical (no model file), CPU-only and offline; ``device`` and
``weights`` are accepted and ignored."""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from cvat_ray.actors.functions.base import Image, InteractorResult, ModelError, TrackResult
from cvat_ray.actors.functions.builtin.common import option_float, option_int

Point = tuple[float, float]
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)


def _bgr(image: Image) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ModelError(f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}")
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)


class GrabCutInteractor:
    """Object outline from positive/negative clicks and/or a box, with ``cv2.grabCut``.

    The rectangle to cut from is the box when one is given, else the bounding box of the
    positive points grown by ``margin`` px on each side (default: a quarter of the frame's
    shorter side, since everything outside the rectangle is taken as background, so an
    object larger than the rectangle would be cut to it; clicks alone suit objects up to
    about half the frame, larger ones need a box). GrabCut runs on a crop around that
    rectangle (grown by ``context`` times its size, at least 16 px), so its background
    model is local and the cost does not grow with the frame; outside the rectangle is
    background, inside "probably foreground", and clicks are painted as discs of
    ``radius`` px: positive = foreground, negative = background, for sure.

    The result is the largest 8-connected foreground region: its outer contour simplified
    with ``cv2.approxPolyDP(epsilon)`` (flat x, y list in frame pixels, the centres of the
    boundary pixels) and the region as a full-frame uint8 mask (1 = object, 0 = not).

    Options: ``iterations`` (5), ``margin`` (px, see above), ``radius`` (3), ``epsilon``
    (1.0), ``context`` (0.5). It takes 0.1-0.5 s on one core for a 640x480 frame.
    """

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
        device: str = "cpu",
        weights: str | None = None,
    ) -> None:
        options = dict(options or {})
        self.labels: list[str] = list(labels or [])
        self.iterations = option_int(options, "iterations", 5, minimum=1)
        self.margin = option_int(options, "margin", 0, minimum=0) if "margin" in options else None
        self.radius = option_int(options, "radius", 3, minimum=1)
        self.epsilon = option_float(options, "epsilon", 1.0, minimum=0.0)
        self.context = option_float(options, "context", 0.5, minimum=0.0)

    def interact(
        self,
        image: Image,
        pos_points: list[tuple[float, float]],
        neg_points: list[tuple[float, float]],
        obj_bbox: tuple[float, float, float, float] | None,
    ) -> InteractorResult:
        bgr = _bgr(image)
        height, width = bgr.shape[:2]
        rect = self._rect(pos_points, obj_bbox, width, height)
        crop = _grow(rect, self.context, width, height)
        ox, oy = crop[0], crop[1]
        mask = np.full((crop[3] - oy, crop[2] - ox), cv2.GC_BGD, np.uint8)
        mask[rect[1] - oy : rect[3] - oy, rect[0] - ox : rect[2] - ox] = cv2.GC_PR_FGD
        for points, value in ((neg_points, cv2.GC_BGD), (pos_points, cv2.GC_FGD)):
            for x, y in points:
                cv2.circle(mask, (round(x) - ox, round(y) - oy), self.radius, int(value), -1)
        if not (mask == cv2.GC_BGD).any():
            # GrabCut needs background samples: the box covers the whole frame.
            mask[[0, -1], :] = cv2.GC_PR_BGD
            mask[:, [0, -1]] = cv2.GC_PR_BGD
        models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        try:
            cv2.grabCut(
                np.ascontiguousarray(bgr[oy : crop[3], ox : crop[2]]),
                mask,
                (0, 0, 0, 0),  # unused with GC_INIT_WITH_MASK
                models[0],
                models[1],
                self.iterations,
                cv2.GC_INIT_WITH_MASK,
            )
        except cv2.error as exc:
            raise ModelError(f"GrabCut failed on this selection: {exc.err}") from None
        region = _largest_region((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD))
        if region is None:
            raise ModelError("GrabCut found no object here; add positive points or a tighter box")
        polygon = self._polygon(region, ox, oy)
        full = np.zeros((height, width), np.uint8)
        full[oy : crop[3], ox : crop[2]] = region
        return InteractorResult(points=polygon, mask=full)

    def _rect(
        self,
        pos_points: Sequence[Point],
        obj_bbox: tuple[float, float, float, float] | None,
        width: int,
        height: int,
    ) -> Rect:
        if obj_bbox is not None:
            x0, y0, x1, y1 = obj_bbox
        elif pos_points:
            margin = self.margin if self.margin is not None else round(min(width, height) / 4)
            xs = [p[0] for p in pos_points]
            ys = [p[1] for p in pos_points]
            x0, y0 = min(xs) - margin, min(ys) - margin
            x1, y1 = max(xs) + margin + 1, max(ys) + margin + 1
        else:
            raise ModelError("GrabCut needs a box or at least one positive point")
        rect = (
            max(0, min(width, round(min(x0, x1)))),
            max(0, min(height, round(min(y0, y1)))),
            max(0, min(width, round(max(x0, x1)))),
            max(0, min(height, round(max(y0, y1)))),
        )
        if rect[2] - rect[0] < 2 or rect[3] - rect[1] < 2:
            raise ModelError("the selection is outside the frame or smaller than 2x2 px")
        return rect

    def _polygon(self, region: np.ndarray, ox: int, oy: int) -> list[float]:
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=cv2.contourArea)
        approx = cv2.approxPolyDP(contour, self.epsilon, True).reshape(-1, 2)
        if len(approx) < 3:  # a sliver: fall back to its bounding box
            x, y, w, h = cv2.boundingRect(contour)
            approx = np.array([[x, y], [x + w - 1, y], [x + w - 1, y + h - 1], [x, y + h - 1]])
        return [float(v) for xy in approx for v in (xy[0] + ox, xy[1] + oy)]


def _grow(rect: Rect, context: float, width: int, height: int) -> Rect:
    dx = max(16, round((rect[2] - rect[0]) * context))
    dy = max(16, round((rect[3] - rect[1]) * context))
    return (
        max(0, rect[0] - dx),
        max(0, rect[1] - dy),
        min(width, rect[2] + dx),
        min(height, rect[3] + dy),
    )


def _largest_region(foreground: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected region of a boolean mask as uint8 0/1, or None if empty."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        foreground.astype(np.uint8), connectivity=8
    )
    if count < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    region: np.ndarray = (labels == best).astype(np.uint8)
    return region


# OpenCV's random generator is per thread, and calls land on any thread of a pool: seeded
# before each MIL step, a track does not depend on which thread ran the calls before it.
RNG_SEED = 20261127


class MilTracker:
    """Rectangle tracking with ``cv2.TrackerMIL`` (about 16 ms a frame on one core).

    ``start`` returns the state ``{"id": <hex>, "box": [xtl, ytl, xbr, ybr]}``, JSON-able,
    which the client sends back with the next frame. The OpenCV tracker objects stay in
    this instance, in an LRU of ``capacity`` (256) entries keyed by id. When ``step`` gets
    an id it does not hold (another replica served ``start``, the replica restarted, or the
    entry was evicted), it starts a new tracker on the *current* frame from ``state["box"]``
    and returns that box unchanged: the object is not followed across that one frame (a
    documented limitation; sticky routing avoids it). When the tracker loses the object,
    the previous box is returned and the state gets ``"lost": true``.
    """

    def __init__(
        self,
        options: Mapping[str, Any] | None = None,
        labels: list[str] | None = None,
        device: str = "cpu",
        weights: str | None = None,
    ) -> None:
        options = dict(options or {})
        self.labels: list[str] = list(labels or [])
        self.capacity = option_int(options, "capacity", 256, minimum=1)
        self._trackers: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, image: Image, points: list[float]) -> TrackResult:
        box = _box(points, image)
        key = uuid.uuid4().hex
        self._remember(key, self._new_tracker(image, box))
        return TrackResult(points=[float(v) for v in box], state={"id": key, "box": list(box)})

    def step(self, image: Image, state: dict[str, Any]) -> TrackResult:
        key = state.get("id") if isinstance(state, dict) else None
        previous = _box(state.get("box") if isinstance(state, dict) else None, image)
        if not isinstance(key, str) or not key:
            key = uuid.uuid4().hex
        with self._lock:
            tracker = self._trackers.pop(key, None)
        if tracker is None:
            self._remember(key, self._new_tracker(image, previous))
            return TrackResult(
                points=[float(v) for v in previous], state={"id": key, "box": list(previous)}
            )
        try:
            cv2.setRNGSeed(RNG_SEED)
            ok, (x, y, w, h) = tracker.update(_bgr(image))
        except cv2.error as exc:
            raise ModelError(f"the tracker cannot follow onto this frame: {exc.err}") from None
        self._remember(key, tracker)
        if not ok:
            return TrackResult(
                points=[float(v) for v in previous],
                state={"id": key, "box": list(previous), "lost": True},
            )
        box = [int(x), int(y), int(x + w), int(y + h)]
        return TrackResult(points=[float(v) for v in box], state={"id": key, "box": box})

    def _new_tracker(self, image: Image, box: list[int]) -> Any:
        tracker = cv2.TrackerMIL.create()
        cv2.setRNGSeed(RNG_SEED)
        tracker.init(_bgr(image), (box[0], box[1], box[2] - box[0], box[3] - box[1]))
        return tracker

    def _remember(self, key: str, tracker: Any) -> None:
        with self._lock:
            self._trackers[key] = tracker
            self._trackers.move_to_end(key)
            while len(self._trackers) > self.capacity:
                self._trackers.popitem(last=False)


def _box(points: Any, image: Image) -> list[int]:
    """``[xtl, ytl, xbr, ybr]`` as ints clipped to the frame; ModelError unless it is a
    rectangle of at least 2x2 px inside the frame."""
    if not isinstance(points, list | tuple) or len(points) < 4:
        raise ModelError(
            f"a tracked shape must be a rectangle [xtl, ytl, xbr, ybr], got {points!r}"
        )
    try:
        x0, y0, x1, y1 = (float(v) for v in points[:4])
    except (TypeError, ValueError):
        raise ModelError(f"a tracked shape must be numbers, got {points[:4]!r}") from None
    height, width = image.shape[:2]
    box = [
        max(0, min(width, round(min(x0, x1)))),
        max(0, min(height, round(min(y0, y1)))),
        max(0, min(width, round(max(x0, x1)))),
        max(0, min(height, round(max(y0, y1)))),
    ]
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise ModelError(
            f"the tracked rectangle {list(points[:4])} is outside the frame or too small"
        )
    return box
