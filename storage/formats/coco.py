"""COCO 1.0 (instances): ``annotations/instances_<subset>.json`` (+ ``images/<subset>/``).

Export: rectangles as boxes (empty ``segmentation``), polygons as polygons, masks as
uncompressed RLE over the image (``iscrowd: 1``); tracks' shapes per frame. Points,
polylines, ellipses, cuboids, skeletons and tags are not COCO instances and are dropped
(COCO Keypoints carries skeletons). ``attributes`` keeps ``occluded``, ``rotation``,
``z_order``, ``track_id``/``keyframe`` and the label's attributes, as CVAT writes them.
The JSON is written object by object into the archive: images from the frames, then
annotations page by page.

Import: a JSON file or a ZIP of them, read incrementally: categories and images (ijson),
then the annotations a piece at a time as typed structs (:mod:`.jsonarray`). Polygons (one
shape per polygon of an instance), RLE masks (list or compressed) and boxes.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any, NamedTuple

import ijson
import msgspec

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats import jsonarray, masks
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, LabelDef, Parsed, Shape

_SPECIAL = ("occluded", "rotation", "z_order", "track_id", "keyframe")


_encode = msgspec.json.Encoder().encode


def _dumps(obj: Any) -> bytes:
    return _encode(obj)


def _bbox(points: list[float]) -> list[float]:
    xs, ys = points[0::2], points[1::2]
    x0, y0 = min(xs), min(ys)
    return [x0, y0, max(xs) - x0, max(ys) - y0]


def _polygon_area(p: list[float]) -> float:
    xs, ys = p[0::2], p[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def _annotation(s: Shape, item: Item, image_id: int, cat: int) -> dict[str, Any] | None:
    """The annotation of a shape, without its ``id`` (see :func:`_page`)."""
    attrs: dict[str, Any] = {"occluded": s.occluded}
    if s.type == "rectangle":
        x1, y1, x2, y2 = s.points
        segmentation: Any = []
        bbox = [x1, y1, x2 - x1, y2 - y1]
        area = bbox[2] * bbox[3]
        attrs["rotation"] = s.rotation
        crowd = 0
    elif s.type == "polygon":
        segmentation = [s.points]
        bbox = _bbox(s.points)
        area = _polygon_area(s.points)
        crowd = 0
    elif s.type == "mask":
        bitmap = masks.cvat_to_bitmap(s.points, item.width, item.height)
        segmentation = {"counts": masks.coco_counts(bitmap), "size": [item.height, item.width]}
        *_, left, top, right, bottom = s.points
        bbox = [left, top, right - left + 1, bottom - top + 1]
        area = float(bitmap.sum())
        crowd = 1
    else:
        return None
    if s.z_order:
        attrs["z_order"] = s.z_order
    if s.track_id is not None:
        attrs["track_id"] = s.track_id
        attrs["keyframe"] = s.keyframe
    attrs.update(s.attributes)
    out = {
        "image_id": image_id,
        "category_id": cat,
        "segmentation": segmentation,
        "area": area,
        "bbox": bbox,
        "iscrowd": crowd,
        "attributes": attrs,
    }
    if s.score != 1.0:
        out["score"] = s.score
    return out


def _page(categories: dict[str, int]) -> Callable[[list[Item], int], tuple[int, bytes]]:
    """A page of items to (how many annotations, their JSON with a ``%d`` for each id).

    Annotation ids run through the file, and pages may be made in other processes (each
    not knowing how many came before): the writer fills the ids in with one ``%``
    formatting of the page."""

    def convert(page: list[Item], first: int) -> tuple[int, bytes]:
        out: list[bytes] = []
        for n, item in enumerate(page, first + 1):
            for s in item.shapes:
                cat = categories.get(s.label)
                if cat is None:
                    continue
                ann = _annotation(s, item, n, cat)
                if ann is not None:
                    body = _encode(ann)
                    if b"%" in body:
                        body = body.replace(b"%", b"%%")
                    out.append(b'{"id":%d,' + body[1:])
        return len(out), b",".join(out)

    return convert


def _write_subset(ds: Dataset, out: ZipOut, subset: str, categories: dict[str, int]) -> None:
    with out.open(f"annotations/instances_{subset}.json") as f:
        f.write(b'{"licenses":[{"name":"","id":0,"url":""}],"info":{"contributor":"",')
        f.write(b'"date_created":"","description":"","url":"","version":"","year":""},')
        f.write(b'"categories":')
        f.write(_dumps([{"id": i, "name": n, "supercategory": ""} for n, i in categories.items()]))
        f.write(b',"images":[')
        for n, item in enumerate(ds.frames(subset)):
            image = {
                "id": n + 1,
                "width": item.width,
                "height": item.height,
                "file_name": _file_name(item),
                "license": 0,
                "flickr_url": "",
                "coco_url": "",
                "date_captured": 0,
            }
            f.write((b"," if n else b"") + _dumps(image))
        f.write(b'],"annotations":[')
        ann_id = 0
        pages = ds.map_pages(subset, _page(categories), tuple[int, bytes])
        with contextlib.closing(pages):
            for count, text in pages:
                if count:
                    ids = tuple(range(ann_id + 1, ann_id + 1 + count))
                    f.write((b"," if ann_id else b"") + text % ids)
                    ann_id += count
        f.write(b"]}")


def _file_name(item: Item) -> str:
    return item.name if "." in item.name.rpartition("/")[2] else item.name + ".jpg"


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    categories = {label.name: i + 1 for i, label in enumerate(ds.meta.labels)}
    for subset in ds.meta.subsets:
        _write_subset(ds, out, subset, categories)
        if save_images:
            for item, data, ext in ds.images(subset):
                name = item.name if "." in item.name.rpartition("/")[2] else item.name + ext
                out.write(f"images/{subset}/{name}", data)


# ---------------------------------------------------------------------------------- import


def _items(stream: Any, prefix: str) -> Iterator[Any]:
    return ijson.items(stream, prefix, use_float=True)  # type: ignore[no-any-return]


class _Rle(msgspec.Struct, gc=False):
    counts: list[int] | str
    size: list[int]


class _Annotation(msgspec.Struct, gc=False):
    """An element of ``annotations``, as the import reads it."""

    image_id: int
    category_id: int
    id: int = 0
    segmentation: list[list[float]] | _Rle | None = None
    bbox: list[float] | None = None
    # kept as text: most annotations repeat a few combinations, each parsed once (_Specials)
    attributes: msgspec.Raw = msgspec.Raw(b"")
    score: float = 1.0


class _Specials(NamedTuple):
    """An annotation's ``attributes``: the label's attribute values, and CVAT's flags."""

    values: dict[str, str]
    occluded: bool
    z_order: int
    rotation: float


_NONE = _Specials({}, False, 0, 0.0)
_decode_json = msgspec.json.Decoder().decode


def _specials(raw: msgspec.Raw, seen: dict[bytes, _Specials], where: str) -> _Specials:
    """The parsed ``attributes`` of an annotation, the same object for each text (readers
    downstream only read an attributes dict; sharing it lets them convert it once too)."""
    if not raw:
        return _NONE
    text = bytes(raw)
    found = seen.get(text)
    if found is not None:
        return found
    parsed = _decode_json(text)
    if parsed is None:
        return _NONE
    if not isinstance(parsed, dict):
        raise InvalidInput(f"{where}: 'attributes' is not an object.")
    values: dict[str, str] = {}
    occluded, z_order, rotation = False, 0, 0.0
    try:
        for key, value in parsed.items():
            if key == "occluded":
                occluded = bool(value)
            elif key == "z_order":
                z_order = int(value or 0)
            elif key == "rotation":
                rotation = float(value or 0)
            elif key not in _SPECIAL:
                values[key] = _text(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{where}: a CVAT attribute has a wrong value ({exc}).") from exc
    found = _Specials(values, occluded, z_order, rotation)
    if len(seen) < 10_000:
        seen[text] = found
    return found


def _bad(name: str, exc: Exception) -> InvalidInput:
    return InvalidInput(f"{name}: not a valid COCO file ({type(exc).__name__}: {exc}).")


def _header(archive: Archive, name: str) -> tuple[dict[int, str], dict[int, Item]]:
    """The file's categories and images (small next to its annotations). Each is read as
    one array, which ends the scan of the file there: files put them before the
    annotations, so the annotations are read once, by :func:`_stream`."""
    try:
        with archive.open(name) as f:
            listed = next(_items(f, "categories"), None) or []
            categories = {int(c["id"]): str(c["name"]) for c in listed}
        images: dict[int, Item] = {}
        with archive.open(name) as f:
            for im in next(_items(f, "images"), None) or []:
                images[int(im["id"])] = Item(
                    -1, str(im["file_name"]), int(im.get("width") or 0), int(im.get("height") or 0)
                )
    except (ijson.JSONError, ValueError, KeyError, TypeError) as exc:
        raise _bad(name, exc) from exc
    return categories, images


def _subset(name: str) -> str:
    """``annotations/instances_train.json`` holds the subset ``train``."""
    return PurePosixPath(name).stem.partition("_")[2] or "default"


def _stream(
    archive: Archive, names: list[str], parsed: Parsed, share: tuple[int, int] | None = None
) -> Iterator[Item]:
    """The annotations read a piece at a time (:mod:`.jsonarray`), consecutive ones of one
    image as one item (the sink matches each item to its frame, and takes several items of
    one frame), then an empty item for each listed image without annotations (a project
    import makes tasks of them). The categories go to ``parsed.labels``. ``share``:
    ``(k, n)``, the annotations of share ``k`` of ``n`` only (no empty items)."""
    for name in names:
        categories, images = _header(archive, name)
        subset = _subset(name)
        known = {lb.name for lb in parsed.labels}
        parsed.labels.extend(LabelDef(c) for c in categories.values() if c not in known)
        annotated: set[int] = set()
        current: Item | None = None
        current_id = -1
        seen: dict[bytes, _Specials] = {}
        try:
            opener = functools.partial(archive.open, name)
            for ann in jsonarray.items(opener, "annotations", _Annotation, share):
                if ann.image_id != current_id:
                    image = images.get(ann.image_id)
                    if image is None:
                        raise InvalidInput(
                            f"{name}: annotation {ann.id} names an image that is not listed."
                        )
                    if current is not None and current.shapes:
                        annotated.add(current_id)
                        yield current
                    current = Item(-1, image.name, image.width, image.height, subset)
                    current_id = ann.image_id
                label = categories.get(ann.category_id)
                if label is None:
                    raise InvalidInput(f"{name}: annotation {ann.id} has an unknown category.")
                _shapes_in(ann, label, current.shapes, name, seen)  # type: ignore[union-attr]
            if current is not None and current.shapes:
                annotated.add(current_id)
                yield current
        except InvalidInput:
            raise
        except (ijson.JSONError, ValueError, KeyError, TypeError) as exc:
            raise _bad(name, exc) from exc
        if share is not None:
            continue
        for image_id, image in images.items():
            if image_id not in annotated:
                yield Item(-1, image.name, image.width, image.height, subset)


def _shapes_in(
    ann: _Annotation, label: str, out: list[Shape], name: str, seen: dict[bytes, _Specials]
) -> None:
    """The annotation's shapes, added to ``out``."""
    attrs, occluded, z_order, rotation = _specials(ann.attributes, seen, name)
    seg = ann.segmentation
    if isinstance(seg, _Rle):
        h, w = (int(v) for v in seg.size)
        bitmap = masks.coco_to_bitmap(seg.counts, h, w)
        points = masks.bitmap_to_cvat(bitmap)
        if points is not None:
            out.append(Shape("mask", label, points, attrs, occluded, False, z_order, 0.0, 0,
                             "manual", ann.score))  # fmt: skip
    elif seg:
        group = ann.id if len(seg) > 1 else 0
        for polygon in seg:
            out.append(Shape("polygon", label, polygon, attrs, occluded, False, z_order, 0.0,
                             group, "manual", ann.score))  # fmt: skip
    else:
        if ann.bbox is None or len(ann.bbox) != 4:
            raise InvalidInput(f"{name}: annotation {ann.id} has no segmentation and no bbox.")
        x, y, bw, bh = ann.bbox
        out.append(Shape("rectangle", label, [x, y, x + bw, y + bh], attrs, occluded, False,
                         z_order, rotation, 0, "manual", ann.score))  # fmt: skip


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def read(archive: Archive, fmt: str = "") -> Parsed:
    names = archive.names(".json")
    if archive.is_zip:
        names = [n for n in names if "annotations/" in n or n.count("/") == 0] or names
    if not names:
        raise InvalidInput("The upload holds no COCO JSON file.")
    parsed = Parsed()
    parsed.more = _stream(archive, names, parsed)
    parsed.divide = lambda k, n: _stream(archive, names, Parsed(), (k, n))
    return parsed
