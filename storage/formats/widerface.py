"""WiderFace 1.0 (as CVAT writes it through datumaro): ``labels.txt`` (the label names),
``wider_face_split/wider_face_<subset>_bbx_gt.txt`` and, with ``save_images``,
``WIDER_<subset>/images/<folder>/<image>``.

The folder is ``<index>--<label>`` for an image's first tag (the label's index in
``labels.txt``), ``no_label`` for an untagged one. The annotation file has, per image, its
``<folder>/<image>`` line, then (when it has boxes) their count and one line per box:
``x y w h blur expression illumination occluded pose invalid [label]``: the six attributes
from the same-named label attributes (``-`` when absent; ``occluded`` is the box's flag,
``True``/``False``), the label's name unless it is ``face``. Kept: rectangles (tracks' per
frame), the first tag, those attributes; dropped: everything else.

Import reads the same files: a box line of 4 or 10 values is a ``face``, 5 or 11 end with
the label; the folder gives the tag. Attributes the task's label lacks are left out.
"""

from __future__ import annotations

import re

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, LabelDef, Parsed, Shape, Tag

SPLIT_DIR = "wider_face_split"
LABELS_FILE = "labels.txt"
NO_LABEL = "no_label"
DEFAULT_LABEL = "face"
BOX_ATTRIBUTES = ("blur", "expression", "illumination", "occluded", "pose", "invalid")
_SUBSET = re.compile(r"wider_face_(\S+?)_(?:bbx_gt|filelist)")


def _ext(item: Item) -> str:
    base = item.name.rpartition("/")[2]
    return "." + base.rpartition(".")[2] if "." in base else ".jpg"


def _value(label: LabelDef | None, name: str, value: str) -> str:
    """An attribute as CVAT hands it to datumaro: numbers as floats, checkboxes as bools."""
    spec = next((a for a in label.attributes if a.name == name), None) if label else None
    if spec is not None and spec.input_type == "number":
        try:
            return str(float(value))
        except ValueError:
            return value
    if spec is not None and spec.input_type == "checkbox":
        return str(value.strip().lower() == "true")
    return value


def _box(s: Shape, label: LabelDef | None) -> str:
    x1, y1, x2, y2 = (float(v) for v in s.points[:4])
    cols = []
    for name in BOX_ATTRIBUTES:
        if name == "occluded":
            cols.append(str(s.occluded))
        else:
            value = s.attributes.get(name)
            cols.append("-" if value is None else _value(label, name, value))
    tail = "" if s.label == DEFAULT_LABEL else s.label
    return f"{x1} {y1} {x2 - x1} {y2 - y1} {' '.join(cols)} {tail}"


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    labels = {label.name: label for label in ds.meta.labels}
    index = {name: i for i, name in enumerate(labels)}
    out.write(LABELS_FILE, "\n".join(labels).encode(), compress=True)
    for subset in ds.meta.subsets:
        paths: dict[int, str] = {}
        text: list[str] = []
        for item in ds.items(subset):
            tag = next((t.label for t in item.tags if t.label in index), None)
            folder = f"{index[tag]}--{tag}" if tag is not None else NO_LABEL
            paths[item.frame] = f"{folder}/{item.stem}{_ext(item)}"
            text.append(paths[item.frame])
            boxes = [s for s in item.shapes if s.type == "rectangle" and s.label in labels]
            if boxes:
                text.append(str(len(boxes)))
                text.extend(_box(s, labels[s.label]) for s in boxes)
        body = "".join(line + "\n" for line in text).encode()
        out.write(f"{SPLIT_DIR}/wider_face_{subset}_bbx_gt.txt", body, compress=True)
        if save_images:
            for item, data, _ in ds.images(subset):
                if item.frame in paths:
                    out.write(f"WIDER_{subset}/images/{paths[item.frame]}", data)


def _shape(tokens: list[str], where: str) -> Shape:
    try:
        x, y, w, h = (float(v) for v in tokens[:4])
    except ValueError:
        raise InvalidInput(f"{where}: expected 'x y w h' numbers first.") from None
    label = tokens[-1] if len(tokens) in (5, 11) else DEFAULT_LABEL
    attrs: dict[str, str] = {}
    occluded = False
    if len(tokens) >= 10:
        for name, value in zip(BOX_ATTRIBUTES, tokens[4:10], strict=True):
            if value == "-":
                continue
            if name == "occluded":
                occluded = value.lower() in ("true", "1", "2")
            else:
                attrs[name] = "true" if value == "True" else "false" if value == "False" else value
    return Shape("rectangle", label, [x, y, x + w, y + h], attrs, occluded=occluded)


def _read_split(text: str, name: str, known: set[str] | None, parsed: Parsed) -> None:
    base = name.rpartition("/")[2].rpartition(".")[0]
    found = _SUBSET.fullmatch(base)
    subset = found.group(1) if found else base
    lines = text.splitlines()
    for i, line in enumerate(lines):
        path = line.strip().replace("\\", "/")
        if "/" not in path or "." not in path:  # not an image line (as datumaro tells them)
            continue
        folder, _, rest = path.partition("/")
        item = Item(-1, rest.rpartition(".")[0] or rest, subset=subset)
        label = folder.partition("--")[2] if "--" in folder else folder
        if label != NO_LABEL and (known is None or label in known):
            item.tags.append(Tag(label))
        try:
            count = int(lines[i + 1])
        except (ValueError, IndexError):
            count = 0
        for n in range(i + 2, min(i + 2 + count, len(lines))):
            tokens = lines[n].split()
            if len(tokens) < 4:
                raise InvalidInput(f"{name}:{n + 1}: expected a box line 'x y w h ...'.")
            item.shapes.append(_shape(tokens, f"{name}:{n + 1}"))
        parsed.items.append(item)


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("WiderFace 1.0 is imported from a ZIP archive.")
    splits = [n for n in archive.names(".txt") if n.rpartition("/")[0].endswith(SPLIT_DIR)]
    if not splits:
        raise InvalidInput(f"The archive has no {SPLIT_DIR}/wider_face_<subset>_bbx_gt.txt.")
    known: set[str] | None = None
    tops = [n for n in archive.names(LABELS_FILE) if n.rpartition("/")[2] == LABELS_FILE]
    if tops:
        known = {line.strip() for line in archive.text(tops[0]).splitlines() if line.strip()}
    parsed = Parsed(soft_attributes=frozenset(a for a in BOX_ATTRIBUTES if a != "occluded"))
    for name in splits:
        _read_split(archive.text(name), name, known, parsed)
    return parsed
