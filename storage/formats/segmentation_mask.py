"""Segmentation mask 1.1 (PASCAL VOC segmentation): ``labelmap.txt`` (``label:r,g,b::``,
``background`` first), ``SegmentationClass/<stem>.png`` (each pixel the colour of its
label), ``SegmentationObject/<stem>.png`` (each instance its own VOC palette colour),
``ImageSets/Segmentation/<subset>.txt`` and ``JPEGImages/`` with images.

Kept: polygons, masks, rectangles and ellipses, painted in z_order (a later shape covers an
earlier one); labels with distinct colours (a label without a colour, or with one another
label already has, gets a free one). Dropped: attributes, tags, points, polylines, cuboids,
skeletons; overlapping shapes lose what is covered.

Import: each instance of ``SegmentationObject`` (or, without it, each colour of
``SegmentationClass``) becomes a mask of the label its pixels have in ``SegmentationClass``.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Collection

import numpy as np
from PIL import Image, ImageDraw

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats import masks
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape

PAINTED = ("polygon", "mask", "rectangle", "ellipse")


def voc_palette(index: int) -> tuple[int, int, int]:
    """The PASCAL VOC colour of class or instance ``index``."""
    r = g = b = 0
    c = index
    for shift in range(7, -1, -1):
        r |= ((c >> 0) & 1) << shift
        g |= ((c >> 1) & 1) << shift
        b |= ((c >> 2) & 1) << shift
        c >>= 3
    return r, g, b


def label_colours(ds: Dataset) -> dict[str, tuple[int, int, int]]:
    used = {(0, 0, 0)}
    out: dict[str, tuple[int, int, int]] = {}
    spare = 1
    for label in ds.meta.labels:
        c = label.color.lstrip("#")
        rgb = tuple(int(c[i : i + 2], 16) for i in (0, 2, 4)) if len(c) == 6 else None
        if rgb is None or rgb in used:
            while voc_palette(spare) in used:
                spare += 1
            rgb = voc_palette(spare)
        used.add(rgb)  # type: ignore[arg-type]
        out[label.name] = rgb  # type: ignore[assignment]
    return out


def indexed_colours(ds: Dataset) -> list[tuple[str, tuple[int, int, int]]]:
    """``background`` (black) then the labels sorted by name, each with its colour: the
    class indices of CamVid, Cityscapes and KITTI masks, as CVAT's colour map gives them."""
    colours = label_colours(ds)
    colours.pop("background", None)
    return [("background", (0, 0, 0)), *sorted(colours.items())]


def label_colors_txt(pairs: list[tuple[str, tuple[int, int, int]]]) -> bytes:
    """datumaro's ``label_colors.txt``: ``r g b name`` lines."""
    return "".join(f"{r} {g} {b} {name}\n" for name, (r, g, b) in pairs).encode()


def parse_label_colors(archive: Archive, name: str) -> list[tuple[str, tuple[int, int, int]]]:
    """``label_colors.txt`` (``r g b name`` lines, or bare names), with the black label (or
    one added as ``background``) moved first: the class indices of the masks."""
    out: list[tuple[str, tuple[int, int, int]]] = []
    bare: list[str] = []
    for n, line in enumerate(archive.text(name).splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=3)
        if len(parts) == 4:
            try:
                r, g, b = (int(v) for v in parts[:3])
            except ValueError:
                raise InvalidInput(f"{name}:{n}: expected 'r g b label'.") from None
            if not all(0 <= v < 256 for v in (r, g, b)):
                raise InvalidInput(f"{name}:{n}: a colour value is not within 0..255.")
            label = parts[3]
            out.append((label, (r, g, b)))
        elif len(parts) == 1:
            label = parts[0]
            bare.append(label)
        else:
            raise InvalidInput(f"{name}:{n}: expected 'r g b label'.")
        if sum(1 for x, _ in out if x == label) + bare.count(label) > 1:
            raise InvalidInput(f"{name}:{n}: label '{label}' is defined twice.")
    if bare:
        # names only: colours by the VOC palette, as datumaro generates them
        out += [(label, voc_palette(len(out) + i + 1)) for i, label in enumerate(bare)]
    black = [i for i, (_, rgb) in enumerate(out) if rgb == (0, 0, 0)]
    if black:
        out.insert(0, out.pop(black[0]))
    else:
        out.insert(0, ("background", (0, 0, 0)))
    return out


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def rotated_corners(s: Shape) -> list[tuple[float, float]]:
    """A rotated rectangle's four corners (rotated about its centre, clockwise in degrees)."""
    x1, y1, x2, y2 = s.points
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    a = math.radians(s.rotation)
    cos, sin = math.cos(a), math.sin(a)
    return [
        (cx + (x - cx) * cos - (y - cy) * sin, cy + (x - cx) * sin + (y - cy) * cos)
        for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
    ]


def area(s: Shape, width: int, height: int) -> np.ndarray:
    """The pixels (a height x width bool array) a polygon, mask, rectangle or ellipse covers."""
    if s.type == "mask":
        return masks.cvat_to_bitmap(s.points, width, height).astype(bool)
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    p = s.points
    if s.type == "rectangle" and s.rotation % 360:
        draw.polygon(rotated_corners(s), fill=1)
    elif s.type == "rectangle":
        draw.rectangle([p[0], p[1], p[2], p[3]], fill=1)
    elif s.type == "ellipse":
        rx, ry = abs(p[2] - p[0]), abs(p[1] - p[3])
        draw.ellipse([p[0] - rx, p[1] - ry, p[0] + rx, p[1] + ry], fill=1)
    else:
        draw.polygon(list(zip(p[0::2], p[1::2], strict=True)), fill=1)
    return np.asarray(canvas, dtype=bool)


def paint_instances(
    item: Item, labels: Collection[str], types: Collection[str] = PAINTED
) -> tuple[np.ndarray, list[Shape]]:
    """The item's shapes of ``types`` with a label in ``labels``, painted in z_order (a later
    shape covers an earlier one): an int32 map of 1-based indices into the returned shapes
    (0 where none is)."""
    w, h = max(item.width, 1), max(item.height, 1)
    index = np.zeros((h, w), np.int32)
    shapes = sorted(
        (s for s in item.shapes if s.type in types and s.label in labels),
        key=lambda s: s.z_order,
    )
    for n, s in enumerate(shapes, 1):
        index[area(s, w, h)] = n
    return index, shapes


def _paint(item: Item, colours: dict[str, tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    index, shapes = paint_instances(item, colours)
    cls = np.zeros((*index.shape, 3), np.uint8)
    obj = np.zeros((*index.shape, 3), np.uint8)
    for n, s in enumerate(shapes, 1):
        where = index == n
        cls[where] = colours[s.label]
        obj[where] = voc_palette(n)
    return cls, obj


def region_masks(
    regions: np.ndarray, label_of: dict[int, str], crowd: Collection[int] = ()
) -> list[Shape]:
    """One mask shape per non-zero value of ``regions`` (an int map) with a label in
    ``label_of``; those of the ``crowd`` values with ``is_crowd`` set."""
    out: list[Shape] = []
    for v in np.unique(regions).tolist():
        if v == 0 or v not in label_of:
            continue
        points = masks.bitmap_to_cvat((regions == v).astype(np.uint8))
        if points is not None:
            attrs = {"is_crowd": "true"} if v in crowd else {}
            out.append(Shape("mask", label_of[v], points, attrs))
    return out


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    colours = label_colours(ds)
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    lines += [f"{name}:{','.join(map(str, rgb))}::" for name, rgb in colours.items()]
    out.write("labelmap.txt", ("\n".join(lines) + "\n").encode(), compress=True)
    for subset in ds.meta.subsets:
        stems = []
        for item in ds.items(subset):
            stem = item.name.rpartition("/")[2].rpartition(".")[0] or item.name
            stems.append(stem)
            cls, obj = _paint(item, colours)
            out.write(f"SegmentationClass/{stem}.png", png(cls))
            out.write(f"SegmentationObject/{stem}.png", png(obj))
        out.write(
            f"ImageSets/Segmentation/{subset}.txt", "".join(s + "\n" for s in stems).encode(), True
        )
        if save_images:
            for item, data, ext in ds.images(subset):
                base = item.name.rpartition("/")[2]
                out.write(f"JPEGImages/{base if '.' in base else base + ext}", data)


def _labelmap(archive: Archive) -> dict[tuple[int, int, int], str]:
    found = [n for n in archive.names(".txt") if n.rpartition("/")[2] == "labelmap.txt"]
    if not found:
        raise InvalidInput("The archive has no labelmap.txt.")
    out: dict[tuple[int, int, int], str] = {}
    for n, line in enumerate(archive.text(found[0]).splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        try:
            rgb = tuple(int(v) for v in rest.partition(":")[0].split(","))
        except ValueError:
            raise InvalidInput(f"labelmap.txt:{n}: expected 'label:r,g,b::'.") from None
        if len(rgb) != 3:
            raise InvalidInput(f"labelmap.txt:{n}: expected 'label:r,g,b::'.")
        if name != "background":
            out[rgb] = name
    return out


def decode_png(archive: Archive, name: str) -> Image.Image:
    """A mask image from the archive, decoded (Pillow's decompression-bomb limit refuses a
    huge one); InvalidInput when it is not a readable image."""
    data = archive.read(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            im.load()
            return im
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidInput(f"{name}: the mask image is too large ({exc}).") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(f"{name}: not a readable PNG ({exc}).") from exc


def read_rgb(archive: Archive, name: str) -> np.ndarray:
    return np.asarray(decode_png(archive, name).convert("RGB"))


def rgb_key(rgb: np.ndarray) -> np.ndarray:
    key: np.ndarray = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8)
    key |= rgb[..., 2]
    return key


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("Segmentation mask 1.1 is imported from a ZIP archive.")
    colours = _labelmap(archive)
    by_key = {(r << 16) | (g << 8) | b: name for (r, g, b), name in colours.items()}
    objects = {n.rpartition("/")[2]: n for n in archive.names(".png") if "SegmentationObject/" in n}
    archive.claim(*objects.values())
    parsed = Parsed()
    for name in archive.names(".png"):
        if "SegmentationClass/" not in name:
            continue
        base = name.rpartition("/")[2]
        item = Item(-1, base.rpartition(".")[0])
        cls = rgb_key(read_rgb(archive, name))
        unknown = set(np.unique(cls).tolist()) - set(by_key) - {0}
        if unknown:
            v = unknown.pop()
            raise InvalidInput(
                f"{name}: colour {(v >> 16, (v >> 8) & 255, v & 255)} is not in labelmap.txt."
            )
        if base in objects:
            inst = rgb_key(read_rgb(archive, objects[base]))
            regions = [inst == v for v in np.unique(inst).tolist() if v != 0]
        else:
            regions = [cls == v for v in np.unique(cls).tolist() if v != 0]
        for region in regions:
            values, counts = np.unique(cls[region], return_counts=True)
            keep = values != 0
            if not keep.any():
                continue
            label = by_key[int(values[keep][np.argmax(counts[keep])])]
            points = masks.bitmap_to_cvat(region.astype(np.uint8))
            if points is not None:
                item.shapes.append(Shape("mask", label, points))
        parsed.items.append(item)
    return parsed
