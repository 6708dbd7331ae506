"""YOLO 1.1 (Darknet): ``obj.names``, ``obj.data``, ``<subset>.txt`` and one
``obj_<subset>_data/<image stem>.txt`` per image with ``class cx cy w h`` lines (relative to
the image size). Only rectangles are kept (rotation, attributes, tags and other shapes are
dropped); the default subset is written as ``train``, as CVAT does.

Import: ``obj.names`` gives the labels; each ``obj_*_data/*.txt`` is matched to a frame by
its stem, and coordinates are scaled by that frame's size.
"""

from __future__ import annotations

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape


def _subset_name(subset: str) -> str:
    return "train" if subset == "default" else subset


def _image_name(item: Item, ext: str = ".jpg") -> str:
    base = item.name.rpartition("/")[2]
    return base if "." in base else base + ext


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    names = [label.name for label in ds.meta.labels]
    index = {n: i for i, n in enumerate(names)}
    subsets = [_subset_name(s) for s in ds.meta.subsets]
    out.write("obj.names", ("\n".join(names) + "\n").encode(), compress=True)
    lines = [f"classes = {len(names)}"]
    lines += [f"{s} = data/{s}.txt" for s in subsets]
    lines += ["names = data/obj.names", "backup = backup/", ""]
    out.write("obj.data", "\n".join(lines).encode(), compress=True)
    for subset in ds.meta.subsets:
        folder = f"obj_{_subset_name(subset)}_data"
        listing: list[str] = []
        for item in ds.items(subset):
            listing.append(f"data/{folder}/{_image_name(item)}")
            rows = []
            for s in item.shapes:
                if s.type != "rectangle" or s.label not in index or not item.width:
                    continue
                x1, y1, x2, y2 = s.points
                cx, cy = (x1 + x2) / 2 / item.width, (y1 + y2) / 2 / item.height
                w, h = (x2 - x1) / item.width, (y2 - y1) / item.height
                rows.append(f"{index[s.label]} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
            stem = _image_name(item).rpartition(".")[0]
            out.write(f"{folder}/{stem}.txt", "".join(r + "\n" for r in rows).encode(), True)
        out.write(f"{_subset_name(subset)}.txt", "".join(x + "\n" for x in listing).encode(), True)
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(f"{folder}/{_image_name(item, ext)}", data)


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("YOLO 1.1 is imported from a ZIP archive.")
    names_file = [n for n in archive.names("obj.names") if n.rpartition("/")[2] == "obj.names"]
    if not names_file:
        raise InvalidInput("The archive has no obj.names.")
    labels = [line.strip() for line in archive.text(names_file[0]).splitlines() if line.strip()]
    parsed = Parsed(normalized=True)
    for name in archive.names(".txt"):
        folder, _, base = name.rpartition("/")
        if not folder.rpartition("/")[2].startswith("obj_") or not folder.endswith("_data"):
            continue
        item = Item(-1, base[: -len(".txt")])
        for n, line in enumerate(archive.text(name).splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                cls = int(parts[0])
                cx, cy, w, h = (float(v) for v in parts[1:5])
            except (ValueError, IndexError):
                raise InvalidInput(f"{name}:{n}: expected 'class cx cy w h'.") from None
            if not 0 <= cls < len(labels):
                raise InvalidInput(f"{name}:{n}: class {cls} is not in obj.names.")
            item.shapes.append(
                Shape("rectangle", labels[cls], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            )
        parsed.items.append(item)
    return parsed
