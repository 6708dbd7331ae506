"""Market-1501 1.0 (person re-identification): images named
``<person>_c<camera>s<sequence>_<frame>_<box>.jpg`` in ``bounding_box_<subset>/`` (or
``query/``), and ``images_<subset>.txt`` listing them.

As in CVAT, an image's identity is the attributes of its one ``market-1501`` tag:
``person_id``, ``camera_id`` (from 0; the name's camera counts from 1), ``track_id`` (the
sequence, 1 when absent), ``frame_id`` (0), ``bbox_id`` (0) and ``query`` (a checkbox: the
image goes to ``query/``). An image whose name already has that form keeps it; one without a
``person_id`` keeps its own name. Kept: that tag; dropped: everything else. Without
``save_images`` only the lists are written.

Import: every listed or stored image whose name has that form becomes a ``market-1501`` tag
with those attributes on the frame of that name (the part after the box number, when there
is one, is the frame's name); attributes the task's label lacks are left out.
"""

from __future__ import annotations

import re

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Tag

LABEL = "market-1501"
ATTRIBUTES = ("person_id", "camera_id", "track_id", "frame_id", "bbox_id", "query")
PATTERN = re.compile(r"^(-?\d+)_c(\d+)s(\d+)_(\d+)_(\d+)(.*)")
QUERY_DIR = "query"
BOX_DIR = "bounding_box_"
LIST_PREFIX = "images_"
_IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def _ext(item: Item) -> str:
    base = item.name.rpartition("/")[2]
    return "." + base.rpartition(".")[2] if "." in base else ".jpg"


def _number(attrs: dict[str, str], name: str, default: int, item: Item) -> int:
    value = attrs.get(name, "").strip()
    if not value:
        return default
    try:
        return int(float(value))
    except ValueError:
        raise InvalidInput(
            f"'{item.name}': the {LABEL} tag's {name} {value!r} is not a number."
        ) from None


def _path(item: Item, subset: str) -> str:
    market = [t for t in item.tags if t.label == LABEL]
    attrs = market[0].attributes if len(market) == 1 else {}
    query = attrs.get("query", "").strip().lower() in ("true", "1", "yes")
    folder = QUERY_DIR if query else BOX_DIR + subset
    name = item.stem
    pid = attrs.get("person_id", "").strip()
    if pid and not PATTERN.fullmatch(name):
        cid = _number(attrs, "camera_id", 0, item) + 1
        tid = _number(attrs, "track_id", 1, item)
        fid = _number(attrs, "frame_id", 0, item)
        bid = _number(attrs, "bbox_id", 0, item)
        head = name.rpartition("/")[0]
        name = (head + "/" if head else "") + f"{pid}_c{cid}s{tid}_{fid:06d}_{bid:02d}"
    return f"{folder}/{name}{_ext(item)}"


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    for subset in ds.meta.subsets:
        paths: dict[int, str] = {}
        for item in ds.items(subset):
            paths[item.frame] = _path(item, subset)
        listing = "".join(p + "\n" for p in paths.values())
        out.write(f"{LIST_PREFIX}{subset}.txt", listing.encode(), compress=True)
        if save_images:
            for item, data, _ in ds.images(subset):
                if item.frame in paths:
                    out.write(paths[item.frame], data)


def _item(path: str) -> Item | None:
    folder, _, rest = path.partition("/")
    if not rest:
        return None
    stem = rest.rpartition(".")[0] or rest
    head, _, base = stem.rpartition("/")
    found = PATTERN.search(base)
    if found is None:
        return None
    pid, cam, seq, frame, box, custom = found.groups()
    attrs = {
        "person_id": pid,
        "camera_id": str(int(cam) - 1),
        "track_id": str(int(seq)),
        "frame_id": str(int(frame)),
        "bbox_id": str(int(box)),
        "query": "true" if folder == QUERY_DIR else "false",
    }
    name = (head + "/" if head else "") + (custom or base)
    return Item(-1, name, tags=[Tag(LABEL, attrs)])


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("Market-1501 1.0 is imported from a ZIP archive.")
    paths: dict[str, None] = {}
    for name in archive.names():
        top, _, rest = name.partition("/")
        if not rest and top.startswith(LIST_PREFIX) and top.endswith(".txt"):
            for line in archive.text(name).splitlines():
                if line.strip():
                    paths[line.strip().replace("\\", "/")] = None
        elif (top == QUERY_DIR or top.startswith(BOX_DIR)) and name.lower().endswith(_IMAGE_EXTS):
            paths[name] = None
    if not paths:
        raise InvalidInput(
            f"The archive has no {LIST_PREFIX}<subset>.txt and no images in "
            f"{BOX_DIR}<subset>/ or {QUERY_DIR}/."
        )
    items: dict[str, Item] = {}
    for path in paths:
        item = _item(path)
        if item is not None:
            items.setdefault(item.name, item)  # listed and stored: one image
    return Parsed(items=list(items.values()), soft_attributes=frozenset(ATTRIBUTES))
