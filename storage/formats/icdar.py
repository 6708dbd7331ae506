"""ICDAR Recognition, Localization and Segmentation 1.0 (ICDAR 13/15, as CVAT writes them
through datumaro's ``icdar_*`` formats). One module serves the three; ``fmt`` says which.

Every subset is a folder ``<subset>/`` with the images (``save_images``) in
``<subset>/images/<image>`` (an item's own extension; ``.png`` for a video frame).

- **Recognition**: ``<subset>/gt.txt`` (datumaro's name; the brief's ``gt_<subset>.txt`` is
  read too), a line ``<image>, "<text>"`` per text of an image, ``<image>, `` for an image
  without one. As CVAT (``LabelToCaption``), every tag or shape with a ``text`` attribute
  gives a text, whatever its label. datumaro puts several texts of an image on one line
  (``"a""b"``, which reads back as one text); here each gets its own line, which datumaro
  reads as separate captions. Import: a tag of label ``icdar`` with the ``text`` attribute
  per text (the whole quoted text; datumaro would split it at spaces).
- **Localization**: ``<subset>/gt_<image stem>.txt`` per image (an image in a folder:
  ``<subset>/<folder>/gt_<stem>.txt``), a line per rectangle ``x1 y1 x2 y2 "text"`` and per
  polygon ``x1,y1,...,xn,yn,"text"`` (the text when the shape has a ``text`` attribute), of
  any label. A rotated rectangle is written as the polygon of its corners (CVAT drops the
  rotation). Import: rectangles (4 numbers) and polygons (6 or more) of label ``icdar``, with
  ``text`` when the line has one; the numbers may be separated by spaces or commas, the
  text quoted or not (ICDAR 15: ``x1,y1,...,x4,y4,transcription``).
- **Segmentation**: ``<subset>/<image stem>_GT.txt`` per image and, when it has objects,
  ``<subset>/<image stem>_GT.bmp``: white background, each object painted in its colour (in
  z_order: a later one covers an earlier one). A line per object ``R G B cx cy x1 y1 x2 y2
  "text"`` (a ``#`` before it when the text is one space, as datumaro writes): the ``color``
  attribute when it is a free ``r g b`` (else a fresh VOC palette colour), the ``center``
  attribute (``- -`` without one), the object's pixel box (inclusive), ``text``. Objects are
  polygons, masks, rectangles and ellipses of any label, ordered by their ``index``
  attribute. Objects sharing a group are written on consecutive lines, a blank line between
  the other objects (ICDAR's characters of one word); CVAT instead merges a group into one
  mask (``merge_instance_segments``). Import: each listed colour found in the mask becomes a
  mask of label ``icdar`` with ``index`` (its line among the objects, from 0), ``color``,
  ``text`` (when not empty), ``center`` (unless ``- -``) and, for a block of several lines,
  a shared group; ``index``, ``color`` and ``center`` are left out where the label lacks
  them. A ``.png`` mask is read as well. A colour in the mask no line lists fails the import.

Kept otherwise: nothing (attributes other than these, occluded, z_order, tracks' identity).
Import of any of the three: a ZIP holding the subset folders (or the files at its top, as
subset ``default``; an outer ``word_recognition/``, ``text_localization/`` or
``text_segmentation/`` folder, as CVAT's site shows, is allowed).
"""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats import masks
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape, Tag
from cvat_ray.storage.formats.segmentation_mask import (
    area,
    decode_png,
    rgb_key,
    rotated_corners,
    voc_palette,
)

RECOGNITION = "ICDAR Recognition 1.0"
LOCALIZATION = "ICDAR Localization 1.0"
SEGMENTATION = "ICDAR Segmentation 1.0"
LABEL = "icdar"
IMAGES_DIR = "images"
DEFAULT_EXT = ".png"
MASK_EXTS = (".bmp", ".png")
WHITE = (255, 255, 255)
PAINTED = ("polygon", "mask", "rectangle", "ellipse")
TASK_DIRS = ("word_recognition", "text_localization", "text_segmentation")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TOKEN = re.compile(r"[^\s,]+")


def _task(fmt: str) -> str:
    for name in (RECOGNITION, LOCALIZATION, SEGMENTATION):
        if fmt == name:
            return name
    raise InvalidInput(f"Unknown ICDAR format {fmt!r}.")


def _ext(item: Item, ext: str = DEFAULT_EXT) -> str:
    base = item.name.rpartition("/")[2]
    return "." + base.rpartition(".")[2] if "." in base else ext


def _image_path(subset: str, item: Item, ext: str = DEFAULT_EXT) -> str:
    return f"{subset}/{IMAGES_DIR}/{item.stem}{_ext(item, ext)}"


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ")


def _num(v: float) -> str:
    return str(float(v))


# ---------------------------------------------------------------------- export


def _texts(item: Item) -> list[str]:
    """An image's texts: every tag's and shape's ``text`` attribute (CVAT's LabelToCaption)."""
    out = [t.attributes["text"] for t in item.tags if "text" in t.attributes]
    out += [s.attributes["text"] for s in item.shapes if "text" in s.attributes]
    return out


def _write_recognition(ds: Dataset, out: ZipOut, subset: str) -> None:
    lines: list[str] = []
    for item in ds.items(subset):
        image = f"{item.stem}{_ext(item)}"
        texts = _texts(item)
        if not texts:
            lines.append(f"{image}, \n")
        lines += [f'{image}, "{_one_line(text)}"\n' for text in texts]
    if lines:
        out.write(f"{subset}/gt.txt", "".join(lines).encode(), compress=True)


def _localization_line(s: Shape) -> str | None:
    text = s.attributes.get("text")
    quoted = "" if text is None else f'"{_one_line(text)}"'
    if s.type == "rectangle" and not s.rotation % 360:
        return " ".join([*(_num(v) for v in s.points[:4]), *([quoted] if quoted else [])])
    if s.type == "rectangle":
        points = [v for corner in rotated_corners(s) for v in corner]
    elif s.type == "polygon":
        points = list(s.points)
    else:
        return None
    return ",".join([*(_num(v) for v in points), *([quoted] if quoted else [])])


def _write_localization(ds: Dataset, out: ZipOut, subset: str) -> None:
    for item in ds.items(subset):
        lines = [line for s in item.shapes if (line := _localization_line(s)) is not None]
        head, _, base = item.stem.rpartition("/")
        name = f"{subset}/{head + '/' if head else ''}gt_{base}.txt"
        out.write(name, "".join(line + "\n" for line in lines).encode(), compress=True)


def _colour(value: str) -> tuple[int, int, int] | None:
    parts = value.split()
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    r, g, b = (int(p) for p in parts)
    return (r, g, b) if max(r, g, b) < 256 else None


def _index(s: Shape, default: int) -> int:
    try:
        return int(float(s.attributes.get("index", "")))
    except ValueError:
        return default


def _center(s: Shape) -> str:
    parts = s.attributes.get("center", "").split()
    return " ".join(parts) if len(parts) == 2 and '"' not in "".join(parts) else "- -"


def _segmentation(item: Item) -> tuple[str, bytes | None]:
    """An image's ``_GT.txt`` text and ``_GT.bmp`` (None without objects)."""
    w, h = max(item.width, 1), max(item.height, 1)
    found = [s for s in item.shapes if s.type in PAINTED]
    objects: list[tuple[Shape, np.ndarray]] = []
    ranked = sorted(enumerate(found), key=lambda pair: _index(pair[1], pair[0]))
    for _, s in ranked:
        region = area(s, w, h)
        if region.any():
            objects.append((s, region))
    if not objects:
        return "", None
    used = {WHITE}
    colours: list[tuple[int, int, int]] = []
    spare = 1
    for s, _ in objects:
        rgb = _colour(s.attributes.get("color", ""))
        if rgb is None or rgb in used:
            while voc_palette(spare) in used:
                spare += 1
            rgb = voc_palette(spare)
        used.add(rgb)
        colours.append(rgb)
    lines: list[str] = []
    for n, (s, region) in enumerate(objects):
        prev = objects[n - 1][0] if n else None
        if prev is not None and not (s.group and s.group == prev.group):
            lines.append("")
        ys, xs = np.nonzero(region)
        text = _one_line(s.attributes.get("text", ""))
        r, g, b = colours[n]
        box = f"{int(xs.min())} {int(ys.min())} {int(xs.max())} {int(ys.max())}"
        mark = "#" if text == " " else ""
        lines.append(f'{mark}{r} {g} {b} {_center(s)} {box} "{text}"')
    regions = np.zeros((h, w), np.int32)
    order = sorted(range(len(objects)), key=lambda n: objects[n][0].z_order)
    for n in order:
        regions[objects[n][1]] = n + 1
    palette = np.array([WHITE, *colours], np.uint8)
    buf = io.BytesIO()
    Image.fromarray(palette[regions]).save(buf, format="BMP")
    return "".join(line + "\n" for line in lines), buf.getvalue()


def _write_segmentation(ds: Dataset, out: ZipOut, subset: str) -> None:
    for item in ds.items(subset):
        text, bmp = _segmentation(item)
        if bmp is not None:
            out.write(f"{subset}/{item.stem}_GT.bmp", bmp)
        out.write(f"{subset}/{item.stem}_GT.txt", text.encode(), compress=True)


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    task = _task(fmt)
    for subset in ds.meta.subsets:
        if task == RECOGNITION:
            _write_recognition(ds, out, subset)
        elif task == LOCALIZATION:
            _write_localization(ds, out, subset)
        else:
            _write_segmentation(ds, out, subset)
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(_image_path(subset, item, ext), data)


# ---------------------------------------------------------------------- import


class _Layout:
    """The archive's annotation files by subset folder, and its images by folder and stem."""

    def __init__(self, archive: Archive) -> None:
        self.images: dict[tuple[str, str], str] = {}
        # (member, folder holding the subset's files, subset, path inside that folder)
        self.files: list[tuple[str, str, str, str]] = []
        for name in archive.names():
            parts = name.split("/")
            if IMAGES_DIR in parts[:-1]:
                i = parts.index(IMAGES_DIR)
                root, rel = "/".join(parts[:i]), "/".join(parts[i + 1 :])
                stem = rel.rpartition(".")[0] or rel
                self.images.setdefault((root, rel), name)
                self.images.setdefault((root, stem), name)
                continue
            if not name.lower().endswith(".txt"):
                continue
            prefix = parts[:1] if len(parts) > 2 and parts[0] in TASK_DIRS else []
            rest = parts[len(prefix) :]
            if len(rest) >= 2:
                subset, root, rel = rest[0], "/".join([*prefix, rest[0]]), "/".join(rest[1:])
            else:
                subset, root, rel = "default", "/".join(prefix), rest[0]
            self.files.append((name, root, subset, rel))

    def image(self, root: str, rel: str) -> str:
        return self.images.get((root, rel), "")


def _join(root: str, rel: str) -> str:
    return f"{root}/{rel}" if root else rel


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return text[1:-1]
    return text


def _read_recognition(archive: Archive, layout: _Layout) -> Parsed:
    files = [f for f in layout.files if f[3].rpartition("/")[2].lower() != "vocabulary.txt"]
    if not files:
        raise InvalidInput("The archive has no <subset>/gt.txt (lines '<image>, \"<text>\"').")
    items: dict[tuple[str, str], Item] = {}
    for member, root, subset, _ in files:
        for n, raw in enumerate(archive.text(member).splitlines(), 1):
            line = raw.strip()
            if not line:
                continue
            image, sep, rest = line.partition(", ")
            if not sep:
                image, sep, rest = line.partition(",")
            image = image.strip().replace("\\", "/")
            if not sep or not image:
                raise InvalidInput(f"{member}:{n}: expected '<image>, \"<text>\"'.")
            item = items.get((subset, image))
            if item is None:
                item = Item(-1, image, subset=subset)
                item.image = layout.image(root, image)
                items[(subset, image)] = item
            if rest.strip():
                item.tags.append(Tag(LABEL, {"text": _unquote(rest)}))
    return Parsed(items=list(items.values()))


def _split_text(line: str) -> tuple[str, str | None]:
    """The numbers part of a line and its quoted text (None without quotes)."""
    quote = line.find('"')
    if quote < 0:
        return line, None
    return line[:quote], _unquote(line[quote:])


def _localization_shape(line: str, where: str) -> Shape:
    head, text = _split_text(line)
    tokens = list(_TOKEN.finditer(head))
    count = 0
    while count < len(tokens) and _NUMBER.fullmatch(tokens[count].group()):
        count += 1
    if count < len(tokens):
        if text is not None:
            raise InvalidInput(f"{where}: {tokens[count].group()!r} is not a coordinate.")
        text = head[tokens[count].start() :].strip()
    elif text is None and count in (5, 9):
        # ICDAR's unquoted text that is a number
        count -= 1
        text = tokens[count].group()
    values = [float(t.group()) for t in tokens[:count]]
    attrs = {} if text is None else {"text": text}
    if count == 4:
        return Shape("rectangle", LABEL, values, attrs)
    if count >= 6 and count % 2 == 0:
        return Shape("polygon", LABEL, values, attrs)
    raise InvalidInput(
        f"{where}: expected 'x1 y1 x2 y2 \"text\"' (a box) or 'x1,y1,...,xn,yn,\"text\"' "
        f"(a polygon), got {count} coordinates."
    )


def _read_localization(archive: Archive, layout: _Layout) -> Parsed:
    if not layout.files:
        raise InvalidInput("The archive has no <subset>/gt_<image>.txt annotation files.")
    parsed = Parsed()
    for member, root, subset, rel in layout.files:
        head, _, base = rel.rpartition("/")
        stem = base[: -len(".txt")]
        stem = stem[3:] if stem.startswith("gt_") else stem
        name = _join(head, stem)
        item = Item(-1, name, subset=subset, image=layout.image(root, name))
        for n, raw in enumerate(archive.text(member).splitlines(), 1):
            if raw.strip():
                item.shapes.append(_localization_shape(raw.strip(), f"{member}:{n}"))
        parsed.items.append(item)
    return parsed


class _Entry:
    def __init__(self, colour: tuple[int, int, int], center: str, text: str, block: int) -> None:
        self.colour = colour
        self.center = center
        self.text = text
        self.block = block


def _segmentation_entry(line: str, block: int, where: str) -> _Entry:
    if line.startswith("#"):
        line = line[1:]
    head, text = _split_text(line)
    tokens = head.split()
    if text is None and len(tokens) == 10:
        text = tokens.pop()
    if text is None or len(tokens) != 9:
        raise InvalidInput(f"{where}: expected 'R G B cx cy x1 y1 x2 y2 \"text\"'.")
    try:
        r, g, b = (int(v) for v in tokens[:3])
    except ValueError:
        raise InvalidInput(f"{where}: the colour {' '.join(tokens[:3])!r} is not R G B.") from None
    if not all(0 <= v < 256 for v in (r, g, b)):
        raise InvalidInput(f"{where}: a colour value is not within 0..255.")
    return _Entry((r, g, b), f"{tokens[3]} {tokens[4]}", text, block)


def _segmentation_item(
    archive: Archive, member: str, entries: list[_Entry], mask: str | None, item: Item
) -> None:
    if not entries:
        return
    if mask is None:
        raise InvalidInput(f"{member} lists {len(entries)} objects but the mask is missing.")
    rgb = np.asarray(decode_png(archive, mask).convert("RGB"))
    keys = rgb_key(rgb)
    by_key: dict[int, int] = {}
    for i, e in enumerate(entries):
        r, g, b = e.colour
        key = (r << 16) | (g << 8) | b
        if key in by_key or e.colour == WHITE:
            raise InvalidInput(f"{member}: the colour {e.colour} is listed twice (or is white).")
        by_key[key] = i
    white = (255 << 16) | (255 << 8) | 255
    for v in np.unique(keys).tolist():
        if v != white and v not in by_key:
            colour = (v >> 16, (v >> 8) & 255, v & 255)
            raise InvalidInput(f"{mask}: the colour {colour} is not listed in {member}.")
    sizes: dict[int, int] = {}
    for e in entries:
        sizes[e.block] = sizes.get(e.block, 0) + 1
    groups = {block: n for n, block in enumerate((b for b in sizes if sizes[b] > 1), 1)}
    for key, i in by_key.items():
        points = masks.bitmap_to_cvat((keys == key).astype(np.uint8))
        if points is None:
            continue
        e = entries[i]
        attrs = {"index": str(i), "color": " ".join(map(str, e.colour))}
        if e.text:
            attrs["text"] = e.text
        if e.center != "- -":
            attrs["center"] = e.center
        item.shapes.append(Shape("mask", LABEL, points, attrs, group=groups.get(e.block, 0)))


def _read_segmentation(archive: Archive, layout: _Layout) -> Parsed:
    mask_members = {
        n.lower(): n
        for n in archive.names(*MASK_EXTS)
        if n.rpartition(".")[0].endswith("_GT") and IMAGES_DIR not in n.split("/")[:-1]
    }
    archive.claim(*mask_members.values())
    if not layout.files:
        raise InvalidInput("The archive has no <subset>/<image>_GT.txt annotation files.")
    parsed = Parsed(soft_attributes=frozenset({"index", "color", "center"}))
    for member, root, subset, rel in layout.files:
        stem = rel[: -len(".txt")]
        name = stem[:-3] if stem.endswith("_GT") else stem
        item = Item(-1, name, subset=subset, image=layout.image(root, name))
        entries: list[_Entry] = []
        block = 0
        for n, raw in enumerate(archive.text(member).splitlines(), 1):
            if not raw.strip():
                block += 1
                continue
            entries.append(_segmentation_entry(raw.strip(), block, f"{member}:{n}"))
        base = _join(root, f"{name}_GT")
        mask = next(
            (mask_members[k] for ext in MASK_EXTS if (k := (base + ext).lower()) in mask_members),
            None,
        )
        _segmentation_item(archive, member, entries, mask, item)
        parsed.items.append(item)
    return parsed


def read(archive: Archive, fmt: str = "") -> Parsed:
    task = _task(fmt or LOCALIZATION)
    if not archive.is_zip:
        raise InvalidInput(f"{task} is imported from a ZIP archive.")
    layout = _Layout(archive)
    if task == RECOGNITION:
        return _read_recognition(archive, layout)
    if task == LOCALIZATION:
        return _read_localization(archive, layout)
    return _read_segmentation(archive, layout)
