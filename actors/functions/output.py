"""Model results as CVAT's function output (plain JSON-able dicts), the form that crosses
from model code to the API and the database (``cvat_ray.storage.functions.mapping``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cvat_ray.actors.functions.base import Detection, InteractorResult


def rle_encode(mask: np.ndarray) -> list[int]:
    """CVAT's mask RLE over a 2-D 0/1 array, row by row: run lengths starting with zeros."""
    flat = (np.asarray(mask).reshape(-1) > 0).astype(np.int8)
    if flat.size == 0:
        return [0]
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs.insert(0, 0)
    return [int(r) for r in runs]


def rle_decode(rle: list[int], width: int, height: int) -> np.ndarray:
    flat = np.zeros(width * height, dtype=np.uint8)
    pos, value = 0, 0
    for run in rle:
        if value:
            flat[pos : pos + run] = 1
        pos += run
        value ^= 1
    return flat.reshape(height, width)


def mask_to_polygon(mask: np.ndarray, offset: tuple[float, float] = (0.0, 0.0)) -> list[float]:
    """The outline of the largest blob of a 0/1 mask as a flat polygon (at least 3 points),
    or [] when the mask is empty."""
    import cv2

    contours, _ = cv2.findContours(
        (np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return []
    contour = max(contours, key=cv2.contourArea)
    contour = cv2.approxPolyDP(contour, 1.0, True)
    if len(contour) < 3:
        return []
    dx, dy = offset
    points: list[float] = []
    for x, y in contour.reshape(-1, 2).tolist():
        points.extend((float(x) + dx, float(y) + dy))
    return points


def detection_dict(det: Detection, *, conv_mask_to_poly: bool = False) -> dict[str, Any]:
    """CVAT's ``{label, type, points, confidence, attributes, mask?}``. A mask becomes a
    polygon when ``conv_mask_to_poly`` (CVAT's option) is set."""
    out: dict[str, Any] = {
        "label": det.label,
        "type": det.type,
        "points": [float(p) for p in det.points],
        "confidence": float(det.confidence),
        "attributes": [{"name": k, "value": v} for k, v in det.attributes.items()],
    }
    if det.type == "mask" and det.mask is not None:
        if conv_mask_to_poly and len(det.points) >= 4:
            xtl, ytl, xbr, ybr = (round(v) for v in det.points[-4:])
            box = rle_decode(det.mask, xbr - xtl + 1, ybr - ytl + 1)
            polygon = mask_to_polygon(box, (xtl, ytl))
            if polygon:
                out.update(type="polygon", points=polygon)
                return out
        out["mask"] = [int(v) for v in det.mask]
    return out


def interactor_dict(result: InteractorResult) -> dict[str, Any]:
    """CVAT's interactor answer: ``points`` as ``[[x, y], ...]``; ``mask`` as CVAT's RLE of
    the object's box followed by the box (xtl, ytl, xbr, ybr), or null."""
    pts = result.points
    out: dict[str, Any] = {
        "points": [[float(pts[i]), float(pts[i + 1])] for i in range(0, len(pts) - 1, 2)],
        "mask": None,
    }
    if result.mask is not None and result.mask.any():
        ys, xs = np.nonzero(result.mask)
        x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
        out["mask"] = [*rle_encode(result.mask[y0 : y1 + 1, x0 : x1 + 1]), x0, y0, x1, y1]
    return out
