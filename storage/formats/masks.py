"""Mask encodings: CVAT's (run lengths over the mask's box, row by row, starting with a run
of zeros, then ``left, top, right, bottom``) and COCO's (run lengths over the whole image,
column by column; as a list, or pycocotools' compressed string)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cvat_ray.cluster.errors import InvalidInput


def runs(flat: np.ndarray) -> list[int]:
    """Run lengths of a 0/1 vector, starting with the zeros (possibly an empty run)."""
    flat = flat.astype(np.uint8)
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    lengths: list[int] = [int(v) for v in np.diff(bounds)]
    return ([0] if flat[0] else []) + lengths


def unrun(counts: Sequence[int], size: int) -> np.ndarray:
    flat = np.zeros(size, dtype=np.uint8)
    pos = 0
    value = 0
    for c in counts:
        c = int(c)
        if c < 0 or pos + c > size:
            raise InvalidInput("A mask's run lengths do not fit its size.")
        if value:
            flat[pos : pos + c] = 1
        pos += c
        value ^= 1
    if pos != size:
        raise InvalidInput(f"A mask's run lengths cover {pos} pixels, not {size}.")
    return flat


def cvat_to_bitmap(points: Sequence[float], width: int, height: int) -> np.ndarray:
    """The whole image's 0/1 bitmap (height x width) of a CVAT mask."""
    *counts, left, top, right, bottom = (int(v) for v in points)
    w, h = right - left + 1, bottom - top + 1
    box = unrun(counts, w * h).reshape(h, w)
    full = np.zeros((height, width), dtype=np.uint8)
    y1, x1 = min(bottom + 1, height), min(right + 1, width)
    if top < height and left < width:
        full[top:y1, left:x1] = box[: y1 - top, : x1 - left]
    return full


def bitmap_to_cvat(bitmap: np.ndarray) -> list[float] | None:
    """CVAT's mask points of a bitmap (None when it is empty)."""
    ys, xs = np.nonzero(bitmap)
    if ys.size == 0:
        return None
    top, bottom, left, right = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    box = bitmap[top : bottom + 1, left : right + 1]
    return [float(c) for c in runs(box.ravel())] + [left, top, right, bottom]


def coco_counts(bitmap: np.ndarray) -> list[int]:
    """COCO's uncompressed run lengths (column by column)."""
    return runs(np.asfortranarray(bitmap).ravel(order="F"))


def decode_coco_string(text: str) -> list[int]:
    """pycocotools' compressed counts (6-bit groups, deltas after the second run)."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(text):
                raise InvalidInput("A compressed COCO mask ends in the middle of a count.")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_to_bitmap(counts: Sequence[int] | str, height: int, width: int) -> np.ndarray:
    values = decode_coco_string(counts) if isinstance(counts, str) else list(counts)
    flat = unrun(values, height * width)
    return flat.reshape((width, height)).T


def cvat_to_polygons(points: Sequence[float]) -> list[list[float]]:
    """The outer outlines of a CVAT mask's blobs as polygons (image coordinates), for
    CVAT's ``conv_mask_to_poly``; blobs too small to outline with 3 points are dropped."""
    import cv2

    *counts, left, top, right, bottom = (int(v) for v in points)
    w, h = right - left + 1, bottom - top + 1
    box = unrun(counts, w * h).reshape(h, w)
    contours, _ = cv2.findContours(box, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out: list[list[float]] = []
    for contour in contours:
        flat = contour.reshape(-1, 2)
        if len(flat) < 3:
            continue
        out.append([float(v) for x, y in flat.tolist() for v in (x + left, y + top)])
    return out


def encode_coco_string(counts: Sequence[int]) -> str:
    """pycocotools' compressed counts string of run lengths (see :func:`decode_coco_string`)."""
    out: list[str] = []
    for i, c in enumerate(counts):
        x = int(c) - int(counts[i - 2]) if i > 2 else int(c)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = x != -1 if ch & 0x10 else x != 0
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)
