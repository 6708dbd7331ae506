"""CamVid 1.0: ``label_colors.txt`` (``r g b label``, the labels sorted by name),
``<subset>.txt`` (``/<subset>/<image> <subset>annot/<stem>.png`` per image, the mask left
empty for an image without shapes), ``<subset>annot/<stem>.png`` (each pixel the colour of
its label, black for none) and ``<subset>/`` with images.

Kept (as CVAT): polygons, masks and rectangles (rotated ones as their corners), painted in
z_order into one class mask per image. Dropped: instances (touching shapes of one label
merge), attributes, tags, other shapes.

Import: each label colour of a mask becomes one mask of that label (black is background);
``label_colors.txt`` is required (a colour not in it fails the import), a one-channel mask
(greyscale) holds label indices (in the file's order, background first).
"""

from __future__ import annotations

import posixpath

import numpy as np

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed
from cvat_ray.storage.formats.segmentation_mask import (
    decode_png,
    indexed_colours,
    label_colors_txt,
    paint_instances,
    parse_label_colors,
    png,
    region_masks,
    rgb_key,
)

TYPES = ("polygon", "mask", "rectangle")


def image_name(item: Item, ext: str = ".jpg") -> str:
    """The item's path with an extension (its own, or ``ext`` for a video frame)."""
    base = item.name.rpartition("/")[2]
    return item.name if "." in base else item.name + ext


def class_map(item: Item, index: dict[str, int]) -> np.ndarray:
    """The item's painted shapes as a map of label indices (0: none)."""
    regions, shapes = paint_instances(item, index, TYPES)
    lookup = np.array([0] + [index[s.label] for s in shapes], np.int32)
    out: np.ndarray = lookup[regions]
    return out


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    pairs = indexed_colours(ds)
    index = {name: i for i, (name, _) in enumerate(pairs) if i}
    palette = np.array([rgb for _, rgb in pairs], np.uint8)
    out.write("label_colors.txt", label_colors_txt(pairs[1:]), compress=True)
    for subset in ds.meta.subsets:
        lines = []
        for item in ds.items(subset):
            classes = class_map(item, index)
            mask = ""
            if classes.any():
                mask = f"{subset}annot/{item.stem}.png"
                out.write(mask, png(palette[classes]))
            lines.append(f"/{subset}/{image_name(item)} {mask}\n")
        if lines:
            out.write(f"{subset}.txt", "".join(lines).encode(), compress=True)
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(f"{subset}/{image_name(item, ext)}", data)


def _split(line: str) -> tuple[str, str]:
    if '"' in line:
        parts = line.split('"')
        if len(parts) != 5:
            raise InvalidInput(f"Unbalanced quotes in the list line {line!r}.")
        return parts[1], parts[3]
    fields = line.split()
    return fields[0], (fields[1] if len(fields) > 1 else "")


def read_mask(
    archive: Archive, name: str, pairs: list[tuple[str, tuple[int, int, int]]]
) -> np.ndarray:
    """A class mask as label indices into ``pairs``: a colour (or palette) mask by colour, a
    greyscale mask as it is."""
    im = decode_png(archive, name)
    if im.mode in ("L", "I", "I;16"):
        indices = np.asarray(im).astype(np.int64)
        if int(indices.max(initial=0)) >= len(pairs):
            raise InvalidInput(f"{name}: label index {int(indices.max())} is not listed.")
        return indices
    rgb = np.asarray(im.convert("RGB"))
    keys = rgb_key(rgb)
    by_key = {(r << 16) | (g << 8) | b: i for i, (_, (r, g, b)) in enumerate(pairs)}
    unknown = set(np.unique(keys).tolist()) - set(by_key)
    if unknown:
        v = unknown.pop()
        raise InvalidInput(
            f"{name}: colour {(v >> 16, (v >> 8) & 255, v & 255)} is not in label_colors.txt."
        )
    out = np.zeros(keys.shape, np.int64)
    for key, i in by_key.items():
        out[keys == key] = i
    return out


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("CamVid 1.0 is imported from a ZIP archive.")
    found = [n for n in archive.names(".txt") if posixpath.basename(n) == "label_colors.txt"]
    if not found:
        raise InvalidInput("The archive has no label_colors.txt (r g b label per line).")
    pairs = parse_label_colors(archive, found[0])
    root = posixpath.dirname(found[0])
    labels = {i: name for i, (name, _) in enumerate(pairs) if i}
    lists = [
        n
        for n in archive.names(".txt")
        if posixpath.dirname(n) == root and posixpath.basename(n) != "label_colors.txt"
    ]
    if not lists:
        raise InvalidInput("The archive has no <subset>.txt list next to label_colors.txt.")
    parsed = Parsed()
    for listing in lists:
        subset = posixpath.basename(listing)[: -len(".txt")] or "default"
        for line in archive.text(listing).splitlines():
            if not line.strip():
                continue
            image, mask = _split(line.strip())
            parts = image.lstrip("/").split("/")
            item = Item(-1, "/".join(parts[1:]) or parts[0], subset=subset)
            item.image = posixpath.normpath(posixpath.join(root, image.lstrip("/")))
            if mask:
                member = posixpath.normpath(posixpath.join(root, mask.lstrip("/")))
                item.shapes = region_masks(read_mask(archive, member, pairs), labels)
            parsed.items.append(item)
    return parsed
