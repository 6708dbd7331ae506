"""ImageNet 1.0: one folder per label holding the images tagged with it
(``<label>/<image>``); untagged images go to ``no_label/``. Without ``save_images`` each
entry is an empty file of the image's name (the layout still says which image has which
tag). Kept: tags; dropped: everything else. Import: each file's folder is a tag of the frame
its name matches (``no_label`` adds none).
"""

from __future__ import annotations

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Tag

NO_LABEL = "no_label"


def _name(item: Item, ext: str = ".jpg") -> str:
    base = item.name.rpartition("/")[2]
    return base if "." in base else base + ext


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    tags: dict[tuple[str, int], list[str]] = {}
    for subset in ds.meta.subsets:
        for item in ds.items(subset):
            labels = list(dict.fromkeys(t.label for t in item.tags)) or [NO_LABEL]
            tags[(item.subset, item.frame)] = labels
            if not save_images:
                for label in labels:
                    out.write(f"{label}/{_name(item)}", b"")
        if save_images:
            for item, data, ext in ds.images(subset):
                for label in tags.get((item.subset, item.frame), [NO_LABEL]):
                    out.write(f"{label}/{_name(item, ext)}", data)


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("ImageNet 1.0 is imported from a ZIP archive.")
    items: dict[str, Item] = {}
    for name in archive.names():
        folder, _, base = name.rpartition("/")
        if not folder or not base:
            continue
        label = folder.rpartition("/")[2]
        item = items.setdefault(base, Item(-1, base))
        if label != NO_LABEL:
            item.tags.append(Tag(label))
    return Parsed(items=list(items.values()))
