"""Open Images V6 1.0: in ``annotations/``, ``class-descriptions.csv`` (``name,name`` rows,
no header), ``bbox_labels_600_hierarchy.json`` (a made-up root over the labels, skeletons
with their points), ``<subset>-images-with-rotation.csv`` (every image),
``<subset>-annotations-human-imagelabels.csv`` (tags), ``<subset>-annotations-bbox.csv``
(boxes, coordinates relative to the image; ``IsOccluded`` from occluded, ``IsTruncated``,
``IsGroupOf``, ``IsDepiction``, ``IsInside`` from the attributes ``truncated``,
``is_group_of``, ``is_depiction``, ``is_inside``, -1 without one),
``<subset>-annotations-object-segmentation.csv`` with ``masks/<subset>/<image>_<label>_<box
id>.png`` (0/1 per pixel over the whole image), and ``images.meta`` (``name height width``);
images in ``images/<subset>/``. Item ids are the images' paths without extension.

Kept (as CVAT): tags, rectangles, polygons and masks (rotated rectangles as masks), the
attributes above, ``score`` (``Confidence``), ``box_id`` and ``predicted_iou`` attributes
of masks. Dropped: other attributes, other shapes, z_order, groups.

Import: a label not listed in the class descriptions fails the import. Attributes come back
where the files set them (a flag that is 1, a non-empty ``PredictedIoU``) and the label has
them (left out otherwise); masks are resized to the size ``images.meta`` gives.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
import shlex
import tempfile
import unicodedata
from collections.abc import Iterator

import numpy as np
from PIL import Image

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats import masks
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.camvid import image_name
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape, Tag
from cvat_ray.storage.formats.segmentation_mask import area, decode_png, png

IMAGE_FIELDS = (
    "ImageID", "Subset", "OriginalURL", "OriginalLandingURL", "License", "AuthorProfileURL",
    "Author", "Title", "OriginalSize", "OriginalMD5", "Thumbnail300KURL", "Rotation",
)  # fmt: skip
LABEL_FIELDS = ("ImageID", "Source", "LabelName", "Confidence")
BOX_FIELDS = (
    "ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
    "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside",
)  # fmt: skip
MASK_FIELDS = (
    "MaskPath", "ImageID", "LabelName", "BoxID", "BoxXMin", "BoxXMax", "BoxYMin", "BoxYMax",
    "PredictedIoU", "Clicks",
)  # fmt: skip
# box flag column -> attribute (occluded is the shape's own flag)
FLAGS = {
    "IsTruncated": "truncated",
    "IsGroupOf": "is_group_of",
    "IsDepiction": "is_depiction",
    "IsInside": "is_inside",
}
_BAD_COMPONENT = re.compile(r"|\.\.?|.*[/\\\0].*")


def file_name(text: str) -> str:
    """datumaro's ``make_file_name``: ASCII, lower case, word characters and hyphens."""
    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    s = re.sub(r"[^\w\s-]", "", s).strip().lower()
    return re.sub(r"[-\s]+", "-", s)


class _Table:
    """A CSV file being written row by row into a spooled temporary file (memory up to a
    few MB, then disk), copied into the archive once complete."""

    def __init__(self, fields: tuple[str, ...], header: bool = True) -> None:
        self.file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by close())
            max_size=1 << 23, mode="w+", newline="", encoding="utf-8"
        )
        self.writer = csv.DictWriter(self.file, fields, lineterminator="\r\n")
        self.rows = 0
        if header:
            self.writer.writeheader()

    def add(self, row: dict[str, object]) -> None:
        self.writer.writerow(row)
        self.rows += 1

    def copy_to(self, out: ZipOut, name: str) -> None:
        self.file.seek(0)
        with out.open(name) as stream:
            while chunk := self.file.read(1 << 20):
                stream.write(chunk.encode())

    def close(self) -> None:
        self.file.close()


def _score(v: float) -> str:
    return "1" if v == 1.0 else str(v)


def _flag(value: str | None) -> int:
    if value is None:
        return -1
    v = value.strip().lower()
    return 1 if v in ("true", "1", "yes") else 0


def _is_mask(s: Shape) -> bool:
    return s.type in ("polygon", "mask") or (s.type == "rectangle" and bool(s.rotation % 360))


def _hierarchy(ds: Dataset) -> dict[str, object]:
    names = {lb.name for lb in ds.meta.labels} | {
        sub.name for lb in ds.meta.labels for sub in lb.sublabels
    }
    root = next(f"/m/{i}" for i in range(len(names) + 1) if f"/m/{i}" not in names)
    parents = [
        {"LabelName": lb.name, "Subcategory": [{"LabelName": sub.name} for sub in lb.sublabels]}
        for lb in ds.meta.labels
        if lb.sublabels
    ]
    return {"LabelName": root, "Subcategory": parents}


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    classes = _Table(("LabelName", "DisplayName"), header=False)  # V5's layout: no header
    for lb in ds.meta.labels:
        classes.add({"LabelName": lb.name, "DisplayName": lb.name})
    for sub in (sub for lb in ds.meta.labels for sub in lb.sublabels):
        classes.add({"LabelName": sub.name, "DisplayName": sub.name})
    classes.copy_to(out, "annotations/class-descriptions.csv")
    classes.close()
    hierarchy = json.dumps(_hierarchy(ds), indent=4, ensure_ascii=False) + "\n"
    out.write("annotations/bbox_labels_600_hierarchy.json", hierarchy.encode(), compress=True)
    sizes: dict[str, tuple[int, int]] = {}
    for subset in ds.meta.subsets:
        if _BAD_COMPONENT.fullmatch(subset):
            raise InvalidInput(f"Subset '{subset}' cannot be an Open Images folder name.")
        tables = {
            "-images-with-rotation.csv": _Table(IMAGE_FIELDS),
            "-annotations-human-imagelabels.csv": _Table(LABEL_FIELDS),
            "-annotations-bbox.csv": _Table(BOX_FIELDS),
            "-annotations-object-segmentation.csv": _Table(MASK_FIELDS),
        }
        images, tags, boxes, segments = tables.values()
        try:
            for item in ds.items(subset):
                _write_item(item, subset, out, images, tags, boxes, segments, sizes)
            for suffix, table in tables.items():
                # every image is listed; the annotation files only when they have rows
                if table is images or table.rows:
                    table.copy_to(out, f"annotations/{subset}{suffix}")
        finally:
            for table in tables.values():
                table.close()
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(f"images/{subset}/{image_name(item, ext)}", data)
    if sizes:
        lines = ["# <image name> <height> <width>", ""]
        lines += [f"{shlex.quote(name)} {h} {w}" for name, (h, w) in sizes.items()]
        out.write("annotations/images.meta", ("\n".join(lines) + "\n").encode(), compress=True)


def _write_item(
    item: Item,
    subset: str,
    out: ZipOut,
    images: _Table,
    tags: _Table,
    boxes: _Table,
    segments: _Table,
    sizes: dict[str, tuple[int, int]],
) -> None:
    image_id = item.stem
    images.add({"ImageID": image_id, "Subset": subset})
    for t in item.tags:
        tags.add({"ImageID": image_id, "LabelName": t.label, "Confidence": "1"})
    w, h = max(item.width, 1), max(item.height, 1)
    used = {s.attributes.get("box_id") for s in item.shapes if _is_mask(s)}
    next_id = 0
    for s in item.shapes:
        if s.type == "rectangle" and not _is_mask(s):
            x1, y1, x2, y2 = s.points
            row: dict[str, object] = {
                "ImageID": image_id, "LabelName": s.label, "Confidence": _score(s.score),
                "XMin": x1 / w, "YMin": y1 / h, "XMax": x2 / w, "YMax": y2 / h,
                "IsOccluded": int(s.occluded),
            }  # fmt: skip
            row.update({col: _flag(s.attributes.get(a)) for col, a in FLAGS.items()})
            boxes.add(row)
            sizes[image_id] = (h, w)
        elif _is_mask(s):
            box_id = s.attributes.get("box_id", "")
            if _BAD_COMPONENT.fullmatch(box_id):
                while format(next_id, "08x") in used:
                    next_id += 1
                box_id = format(next_id, "08x")
                next_id += 1
            mask = f"{file_name(image_id)}_{file_name(s.label)}_{box_id}.png"
            segments.add(
                {
                    "MaskPath": mask, "ImageID": image_id, "LabelName": s.label,
                    "BoxID": box_id, "PredictedIoU": s.attributes.get("predicted_iou", ""),
                }
            )  # fmt: skip
            out.write(f"masks/{subset}/{mask}", png(area(s, w, h).astype(np.uint8)))
            sizes[image_id] = (h, w)


def _rows(archive: Archive, name: str, need: tuple[str, ...]) -> Iterator[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(archive.text(name)))
    missing = [f for f in need if f not in (reader.fieldnames or ())]
    if missing:
        raise InvalidInput(f"{name}: no column {', '.join(missing)}.")
    for row in reader:
        yield {k: (v or "") for k, v in row.items() if k is not None}


def _float(name: str, row: dict[str, str], key: str) -> float:
    try:
        return float(row[key])
    except ValueError:
        raise InvalidInput(f"{name}: {key} {row[key]!r} is not a number.") from None


def _classes(archive: Archive, folder: str) -> set[str]:
    found = [
        n
        for n in archive.names(".csv")
        if posixpath.dirname(n) == folder
        and n.endswith(("class-descriptions.csv", "class-descriptions-boxable.csv"))
    ]
    if not found:
        raise InvalidInput("The archive has no annotations/class-descriptions.csv.")
    rows = list(csv.reader(io.StringIO(archive.text(found[0]))))
    if posixpath.basename(found[0]).startswith("oidv") and rows:
        rows = rows[1:]  # V6's own file has a header
    return {r[0] for r in rows if r}


def _meta(archive: Archive, folder: str) -> dict[str, tuple[int, int]]:
    name = posixpath.join(folder, "images.meta")
    if name not in archive.names("images.meta"):
        return {}
    out: dict[str, tuple[int, int]] = {}
    for n, line in enumerate(archive.text(name).splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            image_id, height, width = shlex.split(line)
            out[image_id] = (int(height), int(width))
        except ValueError:
            raise InvalidInput(f"{name}:{n}: expected 'name height width'.") from None
    return out


def _mask(archive: Archive, name: str, size: tuple[int, int] | None) -> list[float] | None:
    grey = decode_png(archive, name).convert("L")
    if size is not None and grey.size != (size[1], size[0]):
        grey = grey.resize((size[1], size[0]), Image.Resampling.NEAREST)
    bitmap = (np.asarray(grey) > 0).astype(np.uint8)
    return masks.bitmap_to_cvat(bitmap)


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("Open Images V6 1.0 is imported from a ZIP archive.")
    desc = [n for n in archive.names(".csv") if "class-descriptions" in posixpath.basename(n)]
    if not desc:
        raise InvalidInput("The archive has no annotations/class-descriptions.csv.")
    folder = posixpath.dirname(desc[0])
    root = posixpath.dirname(folder) if posixpath.basename(folder) == "annotations" else folder
    classes = _classes(archive, folder)
    sizes = _meta(archive, folder)
    parsed = Parsed(normalized=True, soft_attributes=frozenset({*FLAGS.values(), "predicted_iou"}))
    items: dict[str, Item] = {}

    def item(image_id: str, subset: str = "") -> Item:
        if image_id not in items:
            items[image_id] = Item(-1, image_id, subset=subset or "default")
            parsed.items.append(items[image_id])
        return items[image_id]

    def label(name: str, value: str) -> str:
        if value not in classes:
            raise InvalidInput(f"{name}: label '{value}' is not in the class descriptions.")
        return value

    csvs = [n for n in archive.names(".csv") if posixpath.dirname(n) == folder]
    for name in csvs:
        base = posixpath.basename(name)
        if base.endswith("images-with-rotation.csv") or base == "image_ids_and_rotation.csv":
            for row in _rows(archive, name, ("ImageID",)):
                item(row["ImageID"], row.get("Subset", ""))
    for name in csvs:
        base = posixpath.basename(name)
        subset = base.partition("-annotations-")[0]
        if base.endswith("-annotations-human-imagelabels.csv"):
            for row in _rows(archive, name, ("ImageID", "LabelName")):
                item(row["ImageID"], subset).tags.append(Tag(label(name, row["LabelName"])))
        elif base.endswith("-annotations-bbox.csv"):
            need = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
            for row in _rows(archive, name, need):
                points = [_float(name, row, k) for k in ("XMin", "YMin", "XMax", "YMax")]
                attrs = {a: "true" for col, a in FLAGS.items() if row.get(col) == "1"}
                score = _float(name, row, "Confidence") if row.get("Confidence") else 1.0
                shape = Shape(
                    "rectangle", label(name, row["LabelName"]), points, attrs,
                    occluded=row.get("IsOccluded") == "1", score=score,
                )  # fmt: skip
                item(row["ImageID"], subset).shapes.append(shape)
    for name in csvs:
        base = posixpath.basename(name)
        if not base.endswith("-annotations-object-segmentation.csv"):
            continue
        subset = base.partition("-annotations-")[0]
        for row in _rows(archive, name, ("MaskPath", "ImageID", "LabelName")):
            mask_path = row["MaskPath"]
            if _BAD_COMPONENT.fullmatch(mask_path):
                raise InvalidInput(f"{name}: MaskPath {mask_path!r} is not a file name.")
            owner = item(row["ImageID"], subset)
            member = posixpath.join(root, "masks", owner.subset, mask_path)
            bitmap = _mask(archive, member, sizes.get(owner.name))
            if bitmap is None:
                continue
            attrs = {"predicted_iou": row["PredictedIoU"]} if row.get("PredictedIoU") else {}
            owner.shapes.append(Shape("mask", label(name, row["LabelName"]), bitmap, attrs))
    return parsed
