"""Ultralytics YOLO Classification 1.0: one folder per subset (the default subset as
``train``), in it one folder per label with the images tagged with it
(``<subset>/<label>/<image>``; untagged images in ``no_label/``) and ``labels.json``, CVAT's
addition: ``{<item id>: {"labels": [<label>, ...], "path": "<label>/<image>"}}`` (the item id
is the image's name without its extension). Without ``save_images`` only the
``labels.json`` files are written. Kept: tags; dropped: everything else.

Import: a subset's ``labels.json`` when it has one, else each image's folder, gives the tags
of the frame its name matches (``no_label`` adds none).
"""

from __future__ import annotations

import msgspec

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Tag

NO_LABEL = "no_label"
LABELS_FILE = "labels.json"


class _Entry(msgspec.Struct):
    labels: list[str]
    path: str = ""


def _subset(subset: str) -> str:
    return "train" if subset == "default" else subset


def _base(item: Item) -> str:
    return item.stem.rpartition("/")[2]


def _ext(item: Item) -> str:
    base = item.name.rpartition("/")[2]
    return "." + base.rpartition(".")[2] if "." in base else ".jpg"


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    for subset in ds.meta.subsets:
        part = _subset(subset)
        entries: dict[str, _Entry] = {}
        paths: dict[int, list[str]] = {}
        used: set[str] = set()
        for item in ds.items(subset):
            labels = list(dict.fromkeys(t.label for t in item.tags))
            files = []
            for label in labels or [NO_LABEL]:
                name, n = _base(item), 0
                while f"{label}/{name}" in used:  # two images of one name under a label
                    name, n = f"{_base(item)}.{n}", n + 1
                used.add(f"{label}/{name}")
                files.append(f"{label}/{name}")
            paths[item.frame] = files
            entries[item.stem] = _Entry(labels, files[-1] + _ext(item))
        out.write(f"{part}/{LABELS_FILE}", msgspec.json.encode(entries), compress=True)
        if save_images:
            for item, data, ext in ds.images(subset):
                for path in paths.get(item.frame, []):
                    out.write(f"{part}/{path}{ext}", data)


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("Ultralytics YOLO Classification 1.0 is imported from a ZIP archive.")
    names = archive.names()
    listed = {
        n.partition("/")[0] for n in names if n.count("/") == 1 and n.endswith("/" + LABELS_FILE)
    }
    items: dict[tuple[str, str], Item] = {}
    for subset in sorted(listed):
        where = f"{subset}/{LABELS_FILE}"
        try:
            entries = msgspec.json.decode(archive.read(where), type=dict[str, _Entry])
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"{where}: not a valid labels file ({exc}).") from exc
        for item_id, entry in entries.items():
            item = items.setdefault((subset, item_id), Item(-1, item_id, subset=subset))
            item.tags.extend(
                Tag(label) for label in dict.fromkeys(entry.labels) if label != NO_LABEL
            )
    for name in names:
        subset, _, rest = name.partition("/")
        label, _, base = rest.partition("/")
        if subset in listed or not base or "/" in base:
            continue
        stem = base.rpartition(".")[0] or base
        item = items.setdefault((subset, stem), Item(-1, stem, subset=subset))
        if label != NO_LABEL and all(t.label != label for t in item.tags):
            item.tags.append(Tag(label))
    return Parsed(items=list(items.values()))
