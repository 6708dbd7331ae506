"""VGGFace2 1.0 (as CVAT writes it through datumaro's ``vgg_face2`` format): ``labels.txt``,
``bb_landmark/loose_landmark_<subset>.csv`` (``NAME_ID,P1X,P1Y,...,P5X,P5Y``),
``bb_landmark/loose_bb_<subset>.csv`` (``NAME_ID,X,Y,W,H``, only when there are boxes) and,
with ``save_images``, ``<subset>/<label>/<image>``.

``NAME_ID`` is ``<label>/<item>``: the item is the image's name without its extension, the
label that of the annotation the row is about, ``no_label`` for an image without any (a name
whose first folder already is the label is not prefixed again). Per image, as datumaro
writes it: the first 5-point ``points`` shape is a landmarks row (a ``points`` shape of
another size gives a row without coordinates), the first rectangle a box row, each tag a
landmarks row without coordinates, and an image with none of these a ``no_label/<item>``
row. ``labels.txt`` has a label per line (a skeleton's sublabels as ``<sublabel>
<skeleton>``). The image is stored once per label its tags and shapes use, in that label's
folder, or in ``no_label/``. Kept: the first 5-point landmarks and the first rectangle of
an image (tracks' shapes per frame), tags; dropped: further landmarks and boxes (datumaro
refuses to export them; here the first is kept), every other shape, attributes, occluded,
z_order, rotation, groups.

Import reads the same files: the first folder of ``NAME_ID`` is the label (none for
``no_label``) and is dropped from the item's name (as CVAT renames a task's items); a
landmarks row with its ten coordinates is a ``points`` shape, one without them a tag, a box
row with its four values a rectangle. A landmarks or box row under ``no_label`` fails the
import (CVAT's shapes need a label). Unlike datumaro, an image may have both landmarks and a
tag (CVAT's own export of such an image is otherwise not importable). ``labels.txt`` (also
read as ``labels_list.txt``) gives the labels a project without labels takes.
"""

from __future__ import annotations

import csv
import io
import math

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, LabelDef, Parsed, Shape, Tag

ANNOTATION_DIR = "bb_landmark"
BBOXES_PREFIX = "loose_bb_"
LANDMARKS_PREFIX = "loose_landmark_"
LABELS_FILE = "labels.txt"
LABELS_FILES = (LABELS_FILE, "labels_list.txt")
NO_LABEL = "no_label"
LANDMARK_COLUMNS = ["NAME_ID"] + [f"P{i}{axis}" for i in range(1, 6) for axis in "XY"]
BOX_COLUMNS = ["NAME_ID", "X", "Y", "W", "H"]


def _name_id(item_id: str, label: str) -> str:
    parts = item_id.split("/")
    if len(parts) > 1 and parts[0] == label:
        return item_id
    return f"{label}/{item_id}"


def _num(value: float) -> str:
    return str(float(value))


def _csv(columns: list[str], rows: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _folders(item: Item, known: set[str]) -> list[str]:
    """The folders the item's image goes to (below the subset's)."""
    labels = [t.label for t in item.tags] + [s.label for s in item.shapes]
    used = [lb for lb in dict.fromkeys(labels) if lb in known]
    parts = item.stem.split("/")
    folders = []
    for label in used or [NO_LABEL]:
        folders.append("" if len(parts) > 1 and parts[0] == label else label)
    return folders


def _rows(item: Item, known: set[str]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    item_id = item.stem
    landmarks: list[dict[str, str]] = []
    boxes: list[dict[str, str]] = []
    points = [s for s in item.shapes if s.type == "points" and s.label in known]
    if points:
        row = {"NAME_ID": _name_id(item_id, points[0].label)}
        coords = points[0].points
        if len(coords) == 10:
            row.update(zip(LANDMARK_COLUMNS[1:], (_num(v) for v in coords), strict=True))
        landmarks.append(row)
    rects = [s for s in item.shapes if s.type == "rectangle" and s.label in known]
    if rects:
        x1, y1, x2, y2 = (float(v) for v in rects[0].points[:4])
        boxes.append({
            "NAME_ID": _name_id(item_id, rects[0].label),
            "X": _num(x1), "Y": _num(y1), "W": _num(x2 - x1), "H": _num(y2 - y1),
        })  # fmt: skip
    tags = [t for t in item.tags if t.label in known]
    for tag in tags:
        landmarks.append({"NAME_ID": _name_id(item_id, tag.label)})
    if not points and not rects and not tags:
        landmarks.append({"NAME_ID": _name_id(item_id, NO_LABEL)})
    return landmarks, boxes


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    lines: list[str] = []
    for label in ds.meta.labels:
        lines.append(label.name)
        lines.extend(f"{sub.name} {label.name}" for sub in label.sublabels)
    out.write(LABELS_FILE, "".join(line + "\n" for line in lines).encode(), compress=True)
    known = {label.name for label in ds.meta.labels}
    for subset in ds.meta.subsets:
        landmarks: list[dict[str, str]] = []
        boxes: list[dict[str, str]] = []
        folders: dict[int, tuple[str, list[str]]] = {}
        for item in ds.items(subset):
            marks, rects = _rows(item, known)
            landmarks.extend(marks)
            boxes.extend(rects)
            folders[item.frame] = (item.stem, _folders(item, known))
        out.write(
            f"{ANNOTATION_DIR}/{LANDMARKS_PREFIX}{subset}.csv",
            _csv(LANDMARK_COLUMNS, landmarks),
            compress=True,
        )
        if boxes:
            out.write(
                f"{ANNOTATION_DIR}/{BBOXES_PREFIX}{subset}.csv",
                _csv(BOX_COLUMNS, boxes),
                compress=True,
            )
        if save_images:
            for item, data, ext in ds.images(subset):
                if item.frame not in folders:
                    continue
                stem, dirs = folders[item.frame]
                for folder in dirs:
                    head = f"{subset}/{folder}/" if folder else f"{subset}/"
                    out.write(f"{head}{stem}{ext}", data)


# ---------------------------------------------------------------------------------- import


class _Reader:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.items: dict[tuple[str, str], Item] = {}
        # image members by their path without the extension
        self.images: dict[str, str] = {}
        for name in archive.names():
            base = name.rpartition("/")[2]
            if "." in base and not name.lower().endswith((".csv", ".txt")):
                self.images.setdefault(name.rpartition(".")[0], name)

    def _table(self, name: str, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
        text = self.archive.text(name)
        try:
            reader = csv.DictReader(io.StringIO(text))
            header = reader.fieldnames or []
            if "NAME_ID" not in header:
                raise InvalidInput(
                    f"{name}: expected a header row {','.join(columns)} (no NAME_ID column)."
                )
            rows = []
            for row in reader:
                if None in row:
                    raise InvalidInput(
                        f"{name}:{reader.line_num}: more values than the header's "
                        f"{len(header)} columns."
                    )
                clean = {k: (v or "").strip() for k, v in row.items() if isinstance(k, str)}
                rows.append((reader.line_num, clean))
        except csv.Error as exc:
            raise InvalidInput(f"{name}: not a readable CSV file ({exc}).") from None
        return rows

    def _item(self, root: str, subset: str, name_id: str, where: str) -> tuple[Item, str | None]:
        name_id = name_id.replace("\\", "/").strip("/")
        if not name_id:
            raise InvalidInput(f"{where}: NAME_ID is empty.")
        label: str | None = None
        name = name_id
        if "/" in name_id:
            head, _, name = name_id.partition("/")
            label = None if head == NO_LABEL else head
        item = self.items.get((subset, name))
        if item is None:
            item = Item(-1, name, subset=subset)
            item.image = self.images.get(f"{root}{subset}/{name_id}", "")
            self.items[(subset, name)] = item
        return item, label

    @staticmethod
    def _floats(row: dict[str, str], columns: list[str], where: str) -> list[float] | None:
        values = [row.get(c, "") for c in columns]
        if any(v == "" for v in values):
            return None
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            raise InvalidInput(f"{where}: {', '.join(columns)} must be numbers.") from None
        if not all(math.isfinite(v) for v in numbers):
            raise InvalidInput(f"{where}: {', '.join(columns)} must be finite numbers.")
        return numbers

    def landmarks(self, root: str, subset: str, name: str) -> None:
        for line, row in self._table(name, LANDMARK_COLUMNS):
            where = f"{name}:{line}"
            item, label = self._item(root, subset, row.get("NAME_ID", ""), where)
            coords = self._floats(row, LANDMARK_COLUMNS[1:], where)
            if coords is not None:
                if label is None:
                    raise InvalidInput(
                        f"{where}: landmarks of {row['NAME_ID']!r} have no label "
                        f"(its folder is {NO_LABEL})."
                    )
                item.shapes.append(Shape("points", label, coords))
            elif label is not None and all(t.label != label for t in item.tags):
                item.tags.append(Tag(label))

    def boxes(self, root: str, subset: str, name: str) -> None:
        for line, row in self._table(name, BOX_COLUMNS):
            where = f"{name}:{line}"
            item, label = self._item(root, subset, row.get("NAME_ID", ""), where)
            values = self._floats(row, BOX_COLUMNS[1:], where)
            if values is None:
                continue
            if label is None:
                raise InvalidInput(
                    f"{where}: the box of {row['NAME_ID']!r} has no label "
                    f"(its folder is {NO_LABEL})."
                )
            x, y, w, h = values
            item.shapes.append(Shape("rectangle", label, [x, y, x + w, y + h]))


def _labels(archive: Archive, root: str) -> list[LabelDef]:
    for file in LABELS_FILES:
        if f"{root}{file}" in archive.names(file):
            labels: list[LabelDef] = []
            for line in archive.text(f"{root}{file}").splitlines():
                words = line.split()
                if len(words) == 1 and words[0] not in {lb.name for lb in labels}:
                    labels.append(LabelDef(words[0]))
            return labels
    return []


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("VGGFace2 1.0 is imported from a ZIP archive.")
    found: list[tuple[str, str, str, str]] = []  # (root, subset, kind, member)
    for name in archive.names(".csv"):
        head, _, base = name.rpartition("/")
        folder = head.rpartition("/")[2]
        if folder != ANNOTATION_DIR:
            continue
        root = head[: -len(ANNOTATION_DIR)]
        stem = base[: -len(".csv")]
        for prefix in (LANDMARKS_PREFIX, BBOXES_PREFIX):
            if stem.startswith(prefix) and len(stem) > len(prefix):
                found.append((root, stem[len(prefix) :], prefix, name))
    if not found:
        raise InvalidInput(
            f"The archive has no {ANNOTATION_DIR}/{LANDMARKS_PREFIX}<subset>.csv or "
            f"{ANNOTATION_DIR}/{BBOXES_PREFIX}<subset>.csv."
        )
    reader = _Reader(archive)
    # landmarks first (they make the tags), then the boxes, as datumaro reads them
    for root, subset, kind, name in sorted(found, key=lambda f: f[2] != LANDMARKS_PREFIX):
        if kind == LANDMARKS_PREFIX:
            reader.landmarks(root, subset, name)
        else:
            reader.boxes(root, subset, name)
    return Parsed(items=list(reader.items.values()), labels=_labels(archive, found[0][0]))
