"""Cityscapes 1.0: ``label_colors.txt`` (``r g b label``: ``background`` first, then the
labels sorted by name; a label's line number from 0 is its class id), and per image with
shapes ``gtFine/<subset>/<stem>_gtFine_color.png`` (each pixel its label's colour),
``_gtFine_labelIds.png`` (8-bit class ids) and ``_gtFine_instanceIds.png`` (16-bit:
``class id * 1000 + instance`` per shape, just the class id for a shape whose ``is_crowd``
attribute is true); images as ``imgsFine/leftImg8bit/<subset>/<stem>_leftImg8bit.<ext>``.
A ``<stem>`` with folders (``<city>/<name>``) keeps them.

Kept (as CVAT): polygons, masks and rectangles (rotated ones as their corners), painted in
z_order. Dropped: other attributes, tags, other shapes.

Import: each value of ``*_gtFine_instanceIds.png`` becomes one mask of its class's label
(class 0, background, is skipped; a value below 1000 sets ``is_crowd`` where the label has
that attribute); ``label_colors.txt`` is required.
"""

from __future__ import annotations

import io
import posixpath

import numpy as np
from PIL import Image

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.camvid import TYPES, image_name
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape
from cvat_ray.storage.formats.segmentation_mask import (
    decode_png,
    indexed_colours,
    label_colors_txt,
    paint_instances,
    parse_label_colors,
    png,
    region_masks,
)

INSTANCES = "_gtFine_instanceIds.png"
IMAGES = "_leftImg8bit"


def _crowd(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1")


def _instance_id(cls: int, s: Shape, n: int) -> int:
    if _crowd(s.attributes.get("is_crowd")):
        return cls
    return cls * 1000 + (n - 1) % 999 + 1


def png16(array: np.ndarray) -> bytes:
    """A 16-bit greyscale PNG of non-negative values below 65536."""
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    pairs = indexed_colours(ds)
    index = {name: i for i, (name, _) in enumerate(pairs) if i}
    palette = np.array([rgb for _, rgb in pairs], np.uint8)
    out.write("label_colors.txt", label_colors_txt(pairs), compress=True)
    for subset in ds.meta.subsets:
        for item in ds.items(subset):
            regions, shapes = paint_instances(item, index, TYPES)
            if not shapes:
                continue
            classes = np.array([0] + [index[s.label] for s in shapes], np.int64)
            ids = np.array(
                [0] + [_instance_id(index[s.label], s, n) for n, s in enumerate(shapes, 1)]
            )
            if int(ids.max()) > 65535:
                raise InvalidInput(
                    f"{item.name}: label '{shapes[int(ids.argmax()) - 1].label}' has class id "
                    f"{int(ids.max()) // 1000}; Cityscapes' 16-bit instance ids hold class ids "
                    "up to 65."
                )
            base = f"gtFine/{subset}/{item.stem}_gtFine"
            out.write(f"{base}_color.png", png(palette[classes[regions]]))
            out.write(f"{base}_labelIds.png", png(classes[regions].astype(np.uint8)))
            out.write(base[: -len("_gtFine")] + INSTANCES, png16(ids[regions]))
        if save_images:
            for item, data, ext in ds.images(subset):
                name = image_name(item, ext)
                stem, dot, suffix = name.rpartition(".")
                out.write(f"imgsFine/leftImg8bit/{subset}/{stem}_leftImg8bit{dot}{suffix}", data)


def _instances(archive: Archive, name: str) -> np.ndarray:
    return np.asarray(decode_png(archive, name)).astype(np.int64)


def _images(archive: Archive) -> dict[str, str]:
    """``<subset>/<stem>`` → its ``leftImg8bit/<subset>/<stem>_leftImg8bit.<ext>`` member."""
    out: dict[str, str] = {}
    for name in archive.names():
        parts = name.split("/")
        stem, dot, _ = parts[-1].rpartition(".")
        if "leftImg8bit" not in parts[:-2] or not dot or not stem.endswith(IMAGES):
            continue
        at = len(parts) - 1 - parts[::-1].index("leftImg8bit")
        if at + 2 < len(parts):
            key = "/".join([*parts[at + 1 : -1], stem[: -len(IMAGES)]])
            out.setdefault(key, name)
    return out


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("Cityscapes 1.0 is imported from a ZIP archive.")
    found = [n for n in archive.names(".txt") if posixpath.basename(n) == "label_colors.txt"]
    if not found:
        raise InvalidInput("The archive has no label_colors.txt (r g b label per line).")
    pairs = parse_label_colors(archive, found[0])
    parsed = Parsed(soft_attributes=frozenset({"is_crowd"}))
    images = _images(archive)
    for name in archive.names(INSTANCES):
        parts = name.split("/")
        if "gtFine" not in parts[:-1]:
            continue
        # gtFine/<subset>/<stem>_gtFine_instanceIds.png: the stem may hold a city folder
        at = parts.index("gtFine")
        stem = "/".join(parts[at + 2 :])[: -len(INSTANCES)]
        if not stem:
            continue
        subset = parts[at + 1]
        base = name[: -len(INSTANCES)] + "_gtFine"
        archive.claim(f"{base}_color.png", f"{base}_labelIds.png")
        ids = _instances(archive, name)
        if ids.ndim != 2:
            raise InvalidInput(f"{name}: an instance mask has one channel.")
        classes = np.where(ids < 1000, ids, ids // 1000)
        if int(classes.max(initial=0)) >= len(pairs):
            raise InvalidInput(f"{name}: class id {int(classes.max())} is not in label_colors.txt.")
        labels = {
            int(v): pairs[int(v) if v < 1000 else int(v) // 1000][0]
            for v in np.unique(ids).tolist()
            if v != 0 and (v if v < 1000 else v // 1000) != 0
        }
        crowd = [v for v in labels if v < 1000]
        item = Item(-1, stem, subset=subset, shapes=region_masks(ids, labels, crowd))
        item.image = images.pop(f"{subset}/{stem}", "")
        parsed.items.append(item)
    for key, member in images.items():  # an image without annotations
        subset, _, stem = key.partition("/")
        parsed.items.append(Item(-1, stem, subset=subset, image=member))
    if not parsed.items and not archive.names("_leftImg8bit.png", "_leftImg8bit.jpg"):
        raise InvalidInput("The archive has no gtFine/<subset>/*_gtFine_instanceIds.png.")
    return parsed
