"""Datumaro 1.0: ``annotations/<subset>.json`` (+ ``images/<subset>/`` with images).

One JSON per subset: ``categories.label.labels`` (name, parent, attributes), and ``items``
with ``id`` (the frame's name without extension), ``attr.frame``, ``image`` (path, size) and
``annotations``: ``label`` (tags), ``bbox``, ``polygon``, ``polyline``, ``points``,
``ellipse`` and ``mask`` (compressed RLE over the image), each with ``label_id``, ``group``,
``z_order`` and ``attributes`` (``occluded``, ``rotation``, ``track_id``/``keyframe``/
``outside`` for a track's shape, and the label's attributes). Skeletons are written as
``skeleton`` annotations with ``elements`` of points; cuboids are dropped. Items are written
one by one into the archive.

Import reads the same (ijson, item by item); a track's shapes come back as plain shapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ijson
import msgspec

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats import masks
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape, Tag

_SPECIAL = ("occluded", "rotation", "track_id", "keyframe", "outside", "source", "score")


_encode = msgspec.json.Encoder().encode


def _dumps(obj: Any) -> bytes:
    return _encode(obj)


def _categories(ds: Dataset) -> dict[str, Any]:
    labels = []
    for label in ds.meta.labels:
        labels.append(
            {"name": label.name, "parent": "", "attributes": [a.name for a in label.attributes]}
        )
        for sub in label.sublabels:
            labels.append(
                {
                    "name": sub.name,
                    "parent": label.name,
                    "attributes": [a.name for a in sub.attributes],
                }
            )
    return {"label": {"labels": labels, "attributes": ["occluded"]}}


def _common(
    attrs: dict[str, Any], group: int, z_order: int, label_id: int, ann_id: int
) -> dict[str, Any]:
    return {
        "id": ann_id,
        "attributes": attrs,
        "group": group,
        "label_id": label_id,
        "z_order": z_order,
    }


def _shape(
    s: Shape, item: Item, index: dict[tuple[str, str], int], ann_id: int
) -> dict[str, Any] | None:
    attrs: dict[str, Any] = {"occluded": s.occluded, **s.attributes}
    if s.track_id is not None:
        attrs.update(track_id=s.track_id, keyframe=s.keyframe, outside=s.outside)
    if s.rotation:
        attrs["rotation"] = s.rotation
    label_id = index.get(("", s.label), 0)
    out = _common(attrs, s.group, s.z_order, label_id, ann_id)
    p = s.points
    if s.type == "rectangle":
        out.update(type="bbox", bbox=[p[0], p[1], p[2] - p[0], p[3] - p[1]])
    elif s.type in ("polygon", "polyline", "points"):
        out.update(type=s.type, points=list(p))
    elif s.type == "ellipse":
        out.update(type="ellipse", points=list(p))
    elif s.type == "mask":
        bitmap = masks.cvat_to_bitmap(p, item.width, item.height)
        counts = masks.coco_counts(bitmap)
        out.update(
            type="mask",
            rle={"counts": masks.encode_coco_string(counts), "size": [item.height, item.width]},
        )
    elif s.type == "skeleton":
        out.update(
            type="skeleton",
            elements=[
                {
                    "label_id": index.get((s.label, e.label), 0),
                    "points": list(e.points),
                    "outside": e.outside,
                    "occluded": e.occluded,
                }
                for e in s.elements
            ],
        )
    else:
        return None
    return out


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    categories = _categories(ds)
    index: dict[tuple[str, str], int] = {
        (lb["parent"], lb["name"]): i for i, lb in enumerate(categories["label"]["labels"])
    }
    for subset in ds.meta.subsets:
        with out.open(f"annotations/{subset}.json") as f:
            f.write(b'{"info":{},"categories":' + _dumps(categories) + b',"items":[')
            ann_id = 0
            for n, item in enumerate(ds.items(subset)):
                anns = []
                for t in item.tags:
                    ann_id += 1
                    a = _common(dict(t.attributes), t.group, 0, index.get(("", t.label), 0), ann_id)
                    a["type"] = "label"
                    anns.append(a)
                for s in item.shapes:
                    ann_id += 1
                    converted = _shape(s, item, index, ann_id)
                    if converted is not None:
                        anns.append(converted)
                record = {
                    "id": item.stem,
                    "annotations": anns,
                    "attr": {"frame": item.frame},
                    "image": {"path": item.name, "size": [item.height, item.width]},
                }
                f.write((b"," if n else b"") + _dumps(record))
            f.write(b"]}")
        if save_images:
            for item, data, ext in ds.images(subset):
                name = item.name if "." in item.name.rpartition("/")[2] else item.name + ext
                out.write(f"images/{subset}/{name}", data)


def _read_file(archive: Archive, name: str) -> Iterator[Item]:
    subset = name.rpartition("/")[2].rpartition(".")[0] or "default"
    with archive.open(name) as f:
        labels = [
            (str(lb.get("parent") or ""), str(lb["name"]))
            for lb in ijson.items(f, "categories.label.labels.item", use_float=True)
        ]
    with archive.open(name) as f:
        for record in ijson.items(f, "items.item", use_float=True):
            image = record.get("image") or {}
            size = image.get("size") or [0, 0]
            item = Item(
                -1, str(image.get("path") or record["id"]), int(size[1]), int(size[0]), subset
            )
            for ann in record.get("annotations", []):
                _annotation(ann, item, labels, name)
            yield item


def _label(labels: list[tuple[str, str]], label_id: Any, where: str) -> tuple[str, str]:
    try:
        return labels[int(label_id)]
    except (IndexError, TypeError, ValueError):
        raise InvalidInput(f"{where}: label_id {label_id!r} is not in the categories.") from None


def _annotation(ann: dict[str, Any], item: Item, labels: list[tuple[str, str]], where: str) -> None:
    kind = ann.get("type")
    _, label = _label(labels, ann.get("label_id"), where)
    raw = dict(ann.get("attributes") or {})
    special = {k: raw.pop(k) for k in _SPECIAL if k in raw}
    attrs = {k: _text(v) for k, v in raw.items()}
    group = int(ann.get("group") or 0)
    if kind == "label":
        item.tags.append(Tag(label, attrs, group))
        return
    z_order = int(ann.get("z_order") or 0)
    occluded = bool(special.get("occluded", False))
    rotation = float(special.get("rotation", 0) or 0)
    if kind == "bbox":
        x, y, w, h = (float(v) for v in ann["bbox"])
        points, shape_type = [x, y, x + w, y + h], "rectangle"
    elif kind in ("polygon", "polyline", "points", "ellipse"):
        points, shape_type = [float(v) for v in ann["points"]], str(kind)
    elif kind == "mask":
        rle = ann["rle"]
        h, w = (int(v) for v in rle["size"])
        found = masks.bitmap_to_cvat(masks.coco_to_bitmap(rle["counts"], h, w))
        if found is None:
            return
        points, shape_type = found, "mask"
    elif kind == "skeleton":
        shape = Shape("skeleton", label, [], attrs, occluded, False, z_order, 0.0, group)
        for e in ann.get("elements", []):
            _, sub = _label(labels, e.get("label_id"), where)
            shape.elements.append(
                Shape(
                    "points",
                    sub,
                    [float(v) for v in e["points"]],
                    outside=bool(e.get("outside")),
                    occluded=bool(e.get("occluded")),
                )
            )
        item.shapes.append(shape)
        return
    else:
        return  # captions, 3D cuboids, ...: not CVAT shapes
    item.shapes.append(
        Shape(shape_type, label, points, attrs, occluded, False, z_order, rotation, group)
    )


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def read(archive: Archive, fmt: str = "") -> Parsed:
    names = [n for n in archive.names(".json") if not archive.is_zip or "annotations/" in n]
    if not names:
        raise InvalidInput("The upload holds no Datumaro annotations/<subset>.json.")

    def stream() -> Iterator[Item]:
        try:
            for name in names:
                yield from _read_file(archive, name)
        except InvalidInput:
            raise
        except (ijson.JSONError, ValueError, KeyError, TypeError) as exc:
            raise InvalidInput(f"Not a valid Datumaro file ({type(exc).__name__}: {exc}).") from exc

    return Parsed(more=stream())
