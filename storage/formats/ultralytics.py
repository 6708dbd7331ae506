"""Ultralytics YOLO Detection (and Detection Track) / Segmentation / Oriented Bounding Boxes /
Pose 1.0.

Layout (as CVAT writes it): ``data.yaml`` (``names``: class index -> label, ``path: .``,
one ``<subset>: <subset>.txt`` per subset; the default subset is ``train``),
``<subset>.txt`` listing ``images/<subset>/<image>``, ``labels/<subset>/<stem>.txt`` per image
and ``images/<subset>/`` with images. Lines, relative to the image size:

- Detection: ``class cx cy w h`` from rectangles;
- Segmentation: ``class x1 y1 x2 y2 ...`` from polygons (and masks, outlined);
- Oriented Bounding Boxes: ``class x1 y1 ... x4 y4``, the corners of rectangles with their
  rotation.
- Pose: ``class cx cy w h x1 y1 v1 ...`` from skeletons: the box around the points, then one
  ``x y v`` per sublabel in the label's order (``v`` 2 visible, 1 occluded, 0 outside),
  padded with ``0.0 0.0 0`` up to ``kpt_shape: [<most points>, 3]`` in ``data.yaml``; only
  skeleton labels are in ``names``.

Everything else (attributes, tags, other shapes, occluded, z_order) is dropped. Import reads
the same lines back (an OBB's corners become a rotated rectangle; a pose line's points are
the skeleton's sublabels by position, ``kpt_shape`` ``[n, 2]`` meaning all visible).

Ultralytics YOLO Detection Track 1.0 (export only; CVAT has no importer for it) is Detection
with the track id as a sixth column, ``class cx cy w h track_id``; the Detection importer reads
such lines (as CVAT's does): the boxes of one id and label become a track (a keyframe per
frame, ending on the frame after each run of frames). Confirmed from CVAT (its
exporter is datumaro's Ultralytics Detection converter with ``write_track_id``): the same
layout and ``data.yaml``; the id is appended only to a track's boxes, a plain box keeps its
five columns (no ``-1``); a track's box is written on every frame where it is visible,
interpolated frames included, and on none from an ``outside`` key to the next key. Chosen
here: the id is the track's id in this server's API (as MOT 1.1 and Datumaro 1.0 write it);
CVAT writes the track's 0-based index among the exported tracks instead.
"""

from __future__ import annotations

import math

import yaml

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats import masks
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape


def _variant(fmt: str) -> str:
    if "Segmentation" in fmt:
        return "segmentation"
    if "Oriented" in fmt:
        return "obb"
    if "Pose" in fmt:
        return "pose"
    return "detection"


def _subset(subset: str) -> str:
    return "train" if subset == "default" else subset


def _image_name(item: Item, ext: str = ".jpg") -> str:
    base = item.name.rpartition("/")[2]
    return base if "." in base else base + ext


def _corners(points: list[float], rotation: float) -> list[tuple[float, float]]:
    x1, y1, x2, y2 = points
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    a = math.radians(rotation)
    cos, sin = math.cos(a), math.sin(a)
    out = []
    for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2)):
        dx, dy = x - cx, y - cy
        out.append((cx + dx * cos - dy * sin, cy + dx * sin + dy * cos))
    return out


def _pose_line(s: Shape, cls: int, w: int, h: int, order: list[str], slots: int) -> str:
    by_name = {e.label: e for e in s.elements}
    values = ["0.0 0.0 0"] * slots
    xs: list[float] = []
    ys: list[float] = []
    for k, name in enumerate(order):
        e = by_name.get(name)
        if e is None or len(e.points) < 2:
            continue
        x, y = e.points[0], e.points[1]
        values[k] = f"{x / w:.6f} {y / h:.6f} {0 if e.outside else 1 if e.occluded else 2}"
        if not e.outside:
            xs.append(x)
            ys.append(y)
    x1, y1, x2, y2 = (min(xs), min(ys), max(xs), max(ys)) if xs else (0.0, 0.0, 0.0, 0.0)
    box = f"{(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
    return f"{cls} {box} {' '.join(values)}"


def _lines(
    item: Item,
    variant: str,
    index: dict[str, int],
    points: dict[str, list[str]],
    track_ids: bool = False,
) -> list[str]:
    rows: list[str] = []
    w, h = item.width or 1, item.height or 1
    slots = max((len(p) for p in points.values()), default=0)
    for s in item.shapes:
        cls = index.get(s.label)
        if cls is None:
            continue
        if variant == "pose":
            if s.type == "skeleton":
                rows.append(_pose_line(s, cls, w, h, points[s.label], slots))
            continue
        if variant == "detection" and s.type == "rectangle":
            x1, y1, x2, y2 = s.points
            rows.append(f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                        f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}")  # fmt: skip
            if track_ids and s.track_id is not None:
                rows[-1] += f" {s.track_id}"
        elif variant == "obb" and s.type == "rectangle":
            corners = _corners(s.points, s.rotation)
            rows.append(f"{cls} " + " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in corners))
        elif variant == "segmentation" and s.type in ("polygon", "mask"):
            polygons = [s.points] if s.type == "polygon" else masks.cvat_to_polygons(s.points)
            for p in polygons:
                coords = " ".join(f"{v / (w if k % 2 == 0 else h):.6f}" for k, v in enumerate(p))
                rows.append(f"{cls} {coords}")
    return rows


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    variant = _variant(fmt)
    labels = ds.meta.labels
    if variant == "pose":
        labels = [label for label in labels if label.type == "skeleton" or label.sublabels]
    names = [label.name for label in labels]
    index = {n: i for i, n in enumerate(names)}
    points = {label.name: [sub.name for sub in label.sublabels] for label in labels}
    config: dict[str, object] = {"names": dict(enumerate(names)), "path": "."}
    for subset in ds.meta.subsets:
        config[_subset(subset)] = f"{_subset(subset)}.txt"
    if variant == "pose":
        config["kpt_shape"] = [max((len(p) for p in points.values()), default=0), 3]
    out.write("data.yaml", yaml.safe_dump(config, sort_keys=False).encode(), compress=True)
    for subset in ds.meta.subsets:
        part = _subset(subset)
        listing = []
        for item in ds.items(subset):
            listing.append(f"images/{part}/{_image_name(item)}")
            stem = _image_name(item).rpartition(".")[0]
            rows = _lines(item, variant, index, points, track_ids="Track" in fmt)
            body = "".join(r + "\n" for r in rows).encode()
            out.write(f"labels/{part}/{stem}.txt", body, compress=True)
        out.write(f"{part}.txt", "".join(x + "\n" for x in listing).encode(), compress=True)
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(f"images/{part}/{_image_name(item, ext)}", data)


def _config(archive: Archive) -> tuple[list[str], dict[str, object]]:
    """The class names and the whole of ``data.yaml``."""
    found = [n for n in archive.names(".yaml") if n.rpartition("/")[2] == "data.yaml"]
    if not found:
        raise InvalidInput("The archive has no data.yaml.")
    try:
        config = yaml.safe_load(archive.text(found[0]))
        names = config["names"]
        if isinstance(names, dict):
            return [str(names[k]) for k in sorted(names, key=int)], config
        return [str(n) for n in names], config
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"data.yaml is not valid: {exc}") from exc


def _kpt_shape(config: dict[str, object]) -> tuple[int, int]:
    shape = config.get("kpt_shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(v, int) for v in shape)
        or shape[0] < 0
        or shape[1] not in (2, 3)
    ):
        raise InvalidInput("data.yaml: kpt_shape must be [<points>, 2 or 3].")
    return shape[0], shape[1]


def _skeleton(label: str, values: list[float], kpt: tuple[int, int], where: str) -> Shape:
    count, dim = kpt
    if len(values) - 4 - count * dim not in (0, 1):  # an optional track id at the end
        raise InvalidInput(
            f"{where}: expected 'class cx cy w h' and {dim} values for each of {count} points."
        )
    shape = Shape("skeleton", label, [])
    for k in range(count):
        x, y = values[4 + k * dim], values[5 + k * dim]
        v = values[6 + k * dim] if dim == 3 else 2
        shape.elements.append(Shape("points", "", [x, y], outside=v == 0, occluded=v == 1))
    return shape


def _shape(variant: str, label: str, values: list[float], where: str) -> Shape:
    if variant == "detection":
        if len(values) not in (4, 5):
            raise InvalidInput(f"{where}: expected 'class cx cy w h' (and a track id).")
        cx, cy, w, h = values[:4]
        box = Shape("rectangle", label, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
        if len(values) == 5:  # a Detection Track line: the boxes of one id become a track
            track = values[4]
            if track < 0 or track != int(track):
                raise InvalidInput(f"{where}: the track id {track:g} is not a whole number >= 0.")
            box.track_id = int(track)
        return box
    if variant == "segmentation":
        if len(values) < 6 or len(values) % 2:
            raise InvalidInput(f"{where}: a polygon needs at least 3 points.")
        return Shape("polygon", label, values)
    if len(values) != 8:
        raise InvalidInput(f"{where}: expected 'class x1 y1 x2 y2 x3 y3 x4 y4'.")
    return Shape("rectangle", label, values)  # corners; made a rotated box once scaled


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput(f"{fmt or 'Ultralytics YOLO'} is imported from a ZIP archive.")
    variant = _variant(fmt)
    labels, config = _config(archive)
    kpt = _kpt_shape(config) if variant == "pose" else (0, 0)
    parsed = Parsed(normalized=True)
    for name in archive.names(".txt"):
        folder, _, base = name.rpartition("/")
        if not (folder == "labels" or folder.startswith("labels/") or "/labels/" in folder):
            continue
        item = Item(-1, base[: -len(".txt")])
        for n, line in enumerate(archive.text(name).splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                cls = int(parts[0])
                values = [float(v) for v in parts[1:]]
            except (ValueError, IndexError):
                raise InvalidInput(f"{name}:{n}: not a label line.") from None
            if not 0 <= cls < len(labels):
                raise InvalidInput(f"{name}:{n}: class {cls} is not in data.yaml.")
            where = f"{name}:{n}"
            if variant == "pose":
                item.shapes.append(_skeleton(labels[cls], values, kpt, where))
            else:
                item.shapes.append(_shape(variant, labels[cls], values, where))
        parsed.items.append(item)
    return parsed
