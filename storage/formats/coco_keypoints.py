"""COCO Keypoints 1.0: ``annotations/person_keypoints_<subset>.json`` (+ ``images/<subset>/``).

Skeleton labels are the categories (``keypoints``: the sublabels' names, ``skeleton``: []);
each skeleton shape (tracks' skeletons per frame included) is an annotation with
``keypoints`` ``[x, y, v, ...]`` in the category's order (``v`` 2 visible, 1 occluded, 0
outside or missing), ``num_keypoints`` and the points' ``bbox``. Everything that is not a
skeleton is dropped. Import turns each annotation back into a skeleton of points.
"""

from __future__ import annotations

from typing import Any

import ijson
import msgspec

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape

_encode = msgspec.json.Encoder().encode


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    skeletons = [label for label in ds.meta.labels if label.sublabels]
    cats = {
        label.name: (i + 1, [s.name for s in label.sublabels]) for i, label in enumerate(skeletons)
    }
    for subset in ds.meta.subsets:
        with out.open(f"annotations/person_keypoints_{subset}.json") as f:
            f.write(b'{"licenses":[{"name":"","id":0,"url":""}],"info":{},"categories":')
            f.write(_encode([{"id": i, "name": n, "supercategory": "", "keypoints": k, "skeleton": []}
                             for n, (i, k) in cats.items()]))  # fmt: skip
            f.write(b',"images":[')
            for n, item in enumerate(ds.frames(subset)):
                image = {"id": n + 1, "width": item.width, "height": item.height,
                         "file_name": _file_name(item), "license": 0}  # fmt: skip
                f.write((b"," if n else b"") + _encode(image))
            f.write(b'],"annotations":[')
            ann_id = 0
            for n, item in enumerate(ds.items(subset)):
                for s in item.shapes:
                    if s.type != "skeleton" or s.label not in cats:
                        continue
                    cat, names = cats[s.label]
                    by_name = {e.label: e for e in s.elements}
                    kps: list[float] = []
                    xs: list[float] = []
                    ys: list[float] = []
                    for name in names:
                        e = by_name.get(name)
                        if e is None or e.outside or len(e.points) < 2:
                            kps += [0, 0, 0]
                            continue
                        x, y = e.points[0], e.points[1]
                        kps += [x, y, 1 if e.occluded else 2]
                        xs.append(x)
                        ys.append(y)
                    bbox = (
                        [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
                        if xs
                        else [0, 0, 0, 0]
                    )
                    ann_id += 1
                    ann = {"id": ann_id, "image_id": n + 1, "category_id": cat, "segmentation": [],
                           "area": bbox[2] * bbox[3], "bbox": bbox, "iscrowd": 0,
                           "keypoints": kps, "num_keypoints": len(xs),
                           "attributes": {"occluded": s.occluded, **s.attributes}}  # fmt: skip
                    f.write((b"," if ann_id > 1 else b"") + _encode(ann))
            f.write(b"]}")
        if save_images:
            for item, data, ext in ds.images(subset):
                name = item.name if "." in item.name.rpartition("/")[2] else item.name + ext
                out.write(f"images/{subset}/{name}", data)


def _file_name(item: Item) -> str:
    return item.name if "." in item.name.rpartition("/")[2] else item.name + ".jpg"


def _read_file(archive: Archive, name: str, parsed: Parsed) -> None:
    with archive.open(name) as f:
        cats = {int(c["id"]): (str(c["name"]), [str(k) for k in c.get("keypoints", [])])
                for c in ijson.items(f, "categories.item", use_float=True)}  # fmt: skip
    images: dict[int, Item] = {}
    with archive.open(name) as f:
        for im in ijson.items(f, "images.item", use_float=True):
            images[int(im["id"])] = Item(-1, str(im["file_name"]), int(im.get("width") or 0),
                                         int(im.get("height") or 0))  # fmt: skip
    with archive.open(name) as f:
        for ann in ijson.items(f, "annotations.item", use_float=True):
            _annotation(ann, cats, images, name)
    parsed.items.extend(images.values())


def _annotation(
    ann: dict[str, Any], cats: dict[int, tuple[str, list[str]]], images: dict[int, Item], where: str
) -> None:
    item = images.get(int(ann["image_id"]))
    cat = cats.get(int(ann["category_id"]))
    if item is None or cat is None:
        raise InvalidInput(
            f"{where}: annotation {ann.get('id')} names an unknown image or category."
        )
    label, names = cat
    kps = [float(v) for v in ann.get("keypoints") or []]
    if len(kps) != 3 * len(names):
        raise InvalidInput(
            f"{where}: annotation {ann.get('id')} has {len(kps) // 3} keypoints, its category {len(names)}."
        )
    raw = dict(ann.get("attributes") or {})
    occluded = bool(raw.pop("occluded", False))
    attrs = {
        k: ("true" if v is True else "false" if v is False else str(v)) for k, v in raw.items()
    }
    shape = Shape("skeleton", label, [], attrs, occluded=occluded)
    for k, name in enumerate(names):
        x, y, v = kps[3 * k : 3 * k + 3]
        shape.elements.append(Shape("points", name, [x, y], outside=v == 0, occluded=v == 1))
    item.shapes.append(shape)


def read(archive: Archive, fmt: str = "") -> Parsed:
    names = [n for n in archive.names(".json") if not archive.is_zip or "annotations/" in n]
    if not names:
        raise InvalidInput("The upload holds no COCO keypoints JSON file.")
    parsed = Parsed()
    try:
        for name in names:
            _read_file(archive, name, parsed)
    except InvalidInput:
        raise
    except (ijson.JSONError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(
            f"Not a valid COCO keypoints file ({type(exc).__name__}: {exc})."
        ) from exc
    return parsed
