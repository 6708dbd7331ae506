"""Deterministic synthetic frames whose ground truth is known exactly.

Solid axis-aligned rectangles in the colours of :data:`COLOURS` on a grey-ish background
with mild noise. :class:`cvat_ray.actors.functions.builtin.colour.ColourDetector` finds every one of
them with its exact box, so tests and benchmarks can check auto-annotation end to end
without downloading a model or a data set.

Guarantees of :func:`make_scene`, which the colour detector relies on:

- a rectangle covers pixels ``x0..x1-1`` x ``y0..y1-1`` and its truth box is
  ``(x0, y0, x1, y1)``;
- rectangles do not overlap, are at least :data:`GAP` px apart and at least
  :data:`BORDER` px from the frame's edges;
- every channel of a pixel is within :data:`NOISE` of its nominal value.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

Box = tuple[int, int, int, int]
Truth = list[tuple[str, Box]]

# Far apart in RGB (squared distance >= 0.3 in 0..1 units) and far from any grey.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 40),
}
NOISE = 6  # maximum deviation per channel, in 0..255 units
GAP = 16  # minimum distance between two rectangles, in pixels
BORDER = 4  # minimum distance between a rectangle and the frame's edge


def make_scene(
    width: int = 640,
    height: int = 480,
    objects: int | tuple[int, int] = (1, 6),
    seed: int = 0,
    sizes: tuple[int, int] = (24, 160),
) -> tuple[np.ndarray, Truth]:
    """One RGB ``(height, width, 3)`` uint8 frame and its truth ``[(colour, box), ...]``.

    ``objects`` is a count or an inclusive ``(low, high)`` range; ``sizes`` is the inclusive
    range of each side's length. The same arguments give the same frame. Fewer objects than
    asked are placed when the frame is too crowded to fit them apart.
    """
    rng = np.random.default_rng(seed)
    low, high = (objects, objects) if isinstance(objects, int) else objects
    count = int(rng.integers(low, high + 1))
    image = _background(rng, width, height)
    names = list(COLOURS)
    placed: list[Box] = []
    truth: Truth = []
    for _ in range(count):
        box = _place(rng, width, height, sizes, placed)
        if box is None:
            continue
        name = names[int(rng.integers(len(names)))]
        x0, y0, x1, y1 = box
        patch = np.array(COLOURS[name], dtype=np.int16)
        noise = rng.integers(-NOISE, NOISE + 1, (y1 - y0, x1 - x0, 3), dtype=np.int16)
        image[y0:y1, x0:x1] = np.clip(patch + noise, 0, 255).astype(np.uint8)
        placed.append(box)
        truth.append((name, box))
    return image, truth


def random_scenes(
    n: int,
    seed: int = 0,
    width: int = 640,
    height: int = 480,
    objects: int | tuple[int, int] = (1, 6),
) -> Iterator[tuple[np.ndarray, Truth]]:
    """``n`` scenes from :func:`make_scene`, scene ``i`` seeded with ``seed * 1_000_003 + i``."""
    for i in range(n):
        yield make_scene(width, height, objects, seed=seed * 1_000_003 + i)


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A grey with a slight tint and a gentle horizontal gradient, plus noise."""
    level = int(rng.integers(100, 151))
    tint = rng.integers(-10, 11, 3)
    ramp = np.linspace(-12, 12, width, dtype=np.float32)[None, :, None]
    base = np.float32(level) + tint.astype(np.float32)[None, None, :] + ramp
    noise = rng.integers(-NOISE, NOISE + 1, (height, width, 3)).astype(np.float32)
    image: np.ndarray = np.clip(np.rint(base + noise), 0, 255).astype(np.uint8)
    return image


def _place(
    rng: np.random.Generator,
    width: int,
    height: int,
    sizes: tuple[int, int],
    placed: list[Box],
    tries: int = 50,
) -> Box | None:
    """A random box that keeps :data:`GAP` from every placed box, or None."""
    for _ in range(tries):
        w = int(rng.integers(sizes[0], sizes[1] + 1))
        h = int(rng.integers(sizes[0], sizes[1] + 1))
        if w + 2 * BORDER > width or h + 2 * BORDER > height:
            continue
        x0 = int(rng.integers(BORDER, width - BORDER - w + 1))
        y0 = int(rng.integers(BORDER, height - BORDER - h + 1))
        box = (x0, y0, x0 + w, y0 + h)
        if all(_apart(box, other) for other in placed):
            return box
    return None


def _apart(a: Box, b: Box) -> bool:
    return a[2] + GAP <= b[0] or b[2] + GAP <= a[0] or a[3] + GAP <= b[1] or b[3] + GAP <= a[1]
