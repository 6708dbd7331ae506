"""KITTI 1.0, detection and segmentation, per subset folder:

- ``<subset>/label_2/<stem>.txt``: a line per rectangle, ``type truncated occluded alpha
  x1 y1 x2 y2 h w l x y z rotation_y score`` (``truncated`` from a same-named attribute,
  ``occluded`` 1/0, the 3D fields ``-1``, ``score`` the shape's);
- ``<subset>/semantic_rgb/<stem>.png`` (each pixel its label's colour),
  ``<subset>/semantic/<stem>.png`` (16-bit class ids) and ``<subset>/instance/<stem>.png``
  (16-bit ``class id << 8 | instance``) from polygons and masks;
- ``label_colors.txt`` (``r g b label``: ``background`` first, then the labels sorted by
  name: the class ids) and ``<subset>/image_2/`` with images.

Kept (as CVAT): rectangles as boxes, polygons and masks (rotated rectangles as polygons) as
segmentation, painted in z_order. Dropped: other attributes, tags, other shapes.

Import: ``label_2`` lines (15 or 16 fields) become rectangles (``truncated`` when not 0, where
the label has that attribute; occluded; score); each value of an ``instance`` mask becomes a
mask of its class's label (class 0, background, is skipped; instance 0 sets ``is_crowd``
where the label has it; ``label_colors.txt`` is required with masks).
"""

from __future__ import annotations

import posixpath

import msgspec
import numpy as np

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.camvid import image_name
from cvat_ray.storage.formats.cityscapes import png16
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
from cvat_ray.storage.media.formats import kind_of


def _rotated(s: Shape) -> bool:
    return s.type == "rectangle" and bool(s.rotation % 360)


def _flag(value: str | None) -> float:
    v = (value or "").strip().lower()
    if v in ("true", "yes"):
        return 1.0
    try:
        return float(v)
    except ValueError:
        return 0.0


def _num(v: float) -> str:
    return str(float(v))


def _line(s: Shape) -> str:
    x1, y1, x2, y2 = s.points
    fields = [s.label, _num(_flag(s.attributes.get("truncated"))), str(int(s.occluded)), "-1"]
    fields += [_num(x1), _num(y1), _num(x2), _num(y2), *["-1"] * 7, _num(s.score)]
    return " ".join(fields) + "\n"


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    pairs = indexed_colours(ds)
    index = {name: i for i, (name, _) in enumerate(pairs) if i}
    palette = np.array([rgb for _, rgb in pairs], np.uint8)
    out.write("label_colors.txt", label_colors_txt(pairs), compress=True)
    for subset in ds.meta.subsets:
        for item in ds.items(subset):
            boxes = [s for s in item.shapes if s.type == "rectangle" and not _rotated(s)]
            if boxes:
                body = "".join(_line(s) for s in boxes).encode()
                out.write(f"{subset}/label_2/{item.stem}.txt", body, compress=True)
            segments = msgspec.structs.replace(
                item,
                shapes=[s for s in item.shapes if s.type in ("polygon", "mask") or _rotated(s)],
            )
            regions, shapes = paint_instances(segments, index)
            if not shapes:
                continue
            classes = np.array([0] + [index[s.label] for s in shapes], np.int64)
            ids = np.array(
                [0] + [(index[s.label] << 8) | ((n - 1) % 255 + 1) for n, s in enumerate(shapes, 1)]
            )
            if int(ids.max()) > 65535:
                raise InvalidInput(
                    f"{item.name}: label '{shapes[int(ids.argmax()) - 1].label}' has class id "
                    f"{int(ids.max()) >> 8}; KITTI's 16-bit instance ids hold class ids up to 255."
                )
            out.write(f"{subset}/semantic_rgb/{item.stem}.png", png(palette[classes[regions]]))
            out.write(f"{subset}/semantic/{item.stem}.png", png16(classes[regions]))
            out.write(f"{subset}/instance/{item.stem}.png", png16(ids[regions]))
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(f"{subset}/image_2/{image_name(item, ext)}", data)


def _place(name: str, folder: str) -> tuple[str, str]:
    """``(<dir>, <stem>)`` of ``<dir>/<folder>/<stem>.<ext>`` (``<dir>`` ends with the subset)."""
    parts = name.split("/")
    at = len(parts) - 1 - parts[::-1].index(folder)
    return "/".join(parts[:at]), "/".join(parts[at + 1 :]).rpartition(".")[0]


def _item(place: tuple[str, str], images: dict[tuple[str, str], str]) -> Item:
    folder, stem = place
    item = Item(-1, stem, subset=posixpath.basename(folder) or "default")
    item.image = images.get(place, "")
    return item


def _boxes(archive: Archive, name: str, item: Item) -> Item:
    for n, line in enumerate(archive.text(name).splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) not in (15, 16):
            raise InvalidInput(f"{name}:{n}: expected 15 or 16 fields, got {len(fields)}.")
        try:
            truncated = float(fields[1])
            occluded = int(float(fields[2]))
            points = [float(v) for v in fields[4:8]]
            score = float(fields[15]) if len(fields) == 16 else 1.0
        except ValueError:
            raise InvalidInput(f"{name}:{n}: a field is not a number.") from None
        attrs = {"truncated": "true"} if truncated else {}
        item.shapes.append(
            Shape("rectangle", fields[0], points, attrs, occluded=occluded != 0, score=score)
        )
    return item


def _instances(archive: Archive, name: str) -> np.ndarray:
    ids = np.asarray(decode_png(archive, name)).astype(np.int64)
    if ids.ndim != 2:
        raise InvalidInput(f"{name}: an instance mask has one channel.")
    return ids


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("KITTI 1.0 is imported from a ZIP archive.")
    parsed = Parsed(soft_attributes=frozenset({"truncated", "is_crowd"}))
    images = {
        _place(n, "image_2"): n
        for n in archive.names()
        if "/image_2/" in f"/{n}" and kind_of(n) == "image"
    }
    archive.claim(
        *(n for n in archive.names(".png") if {"semantic", "semantic_rgb"} & set(n.split("/")))
    )
    by_place: dict[tuple[str, str], Item] = {}
    for name in archive.names(".txt"):
        if "/label_2/" in f"/{name}":
            place = _place(name, "label_2")
            item = _boxes(archive, name, _item(place, images))
            by_place[place] = item
            parsed.items.append(item)
    instance = [n for n in archive.names(".png") if "/instance/" in f"/{n}"]
    if instance:
        found = [n for n in archive.names(".txt") if posixpath.basename(n) == "label_colors.txt"]
        if not found:
            raise InvalidInput("The archive has instance masks but no label_colors.txt.")
        pairs = parse_label_colors(archive, found[0])
        for name in instance:
            ids = _instances(archive, name)
            if int(ids.max(initial=0)) >> 8 >= len(pairs):
                raise InvalidInput(
                    f"{name}: class id {int(ids.max()) >> 8} is not in label_colors.txt."
                )
            labels = {int(v): pairs[int(v) >> 8][0] for v in np.unique(ids).tolist() if v >> 8}
            place = _place(name, "instance")
            if place not in by_place:
                by_place[place] = _item(place, images)
                parsed.items.append(by_place[place])
            item = by_place[place]
            item.shapes += region_masks(ids, labels, [v for v in labels if not v & 255])
    for place in sorted(images.keys() - by_place.keys()):  # an image without annotations
        parsed.items.append(_item(place, images))
    if not parsed.items:
        raise InvalidInput("The archive has no <subset>/label_2/*.txt or <subset>/instance/*.png.")
    return parsed
