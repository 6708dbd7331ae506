"""MOTS PNG 1.0 (multi-object tracking and segmentation, datumaro's ``mots_png``):
``<subset>/instances/<image stem>.png`` per image with tracked objects, a 16-bit greyscale
PNG in which each pixel is ``class_id * 1000 + instance_id`` (0: background),
``<subset>/instances/labels.txt`` (a label per line; class id = line number, from 1: datumaro
writes the task's labels, without ``background``) and ``<subset>/images/<image>`` with images.

Export (as CVAT: its exporter keeps tracks only, turns rotated boxes into polygons, then
polygons and boxes into masks, and datumaro's converter paints them by ``z_order``): the
visible shapes of tracks that are polygons, masks or rectangles (rotated ones as their
corners), painted in z_order (a later shape covers an earlier one) with the track as the
instance. CVAT numbers a task's tracks from 0; here a track's instance id is its order of
first appearance in the export (from 0; ids repeat after 1000, the most one class can have),
so a project export's tracks stay apart. A class id that does not fit 16 bits (more than 65
labels) fails the export. Dropped: plain shapes (not tracks), other shape types, attributes,
tags, occluded; the instance masks of a group are not merged into one (CVAT's
``merge_instance_segments``); covered pixels of overlapping objects. An image without
tracked objects has no PNG; ``labels.txt`` is written for every subset.

Import (datumaro's reader, CVAT's track building): ``instances/`` at the archive's root
(subset ``default``) or in a subset folder; each value of a PNG (masks in subfolders too: the
item is the path under ``instances/`` without ``.png``) becomes a mask of label
``labels.txt[class_id - 1]`` with the instance id as its track id; the import's sink makes a
track per instance id and label (a keyframe per image, ending on the next frame after each
run of frames; CVAT's importer does the same) and ``conv_mask_to_poly`` turns the masks into
polygons first (CVAT keeps only the polygons; here masks stay masks when it is off). Without
``labels.txt`` the MOTS benchmark's classes are used: 1 ``car``, 2 ``pedestrian`` (datumaro
indexes its defaults ``background, car, pedestrian, ignored`` off by one; not followed). The
ignore region, class 10 where fewer than 10 labels are listed (pixel values 10000 to 10999), is
not an object and is left out (datumaro gives it the ``ignored`` label when listed). Images in
``<subset>/images/`` are matched to masks by path without extension; an image without a mask
is an item without annotations (a project import with images makes a frame of it; datumaro
reads items from the masks only).
"""

from __future__ import annotations

import posixpath

import msgspec
import numpy as np

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats import masks
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.camvid import image_name
from cvat_ray.storage.formats.cityscapes import png16
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape
from cvat_ray.storage.formats.segmentation_mask import decode_png, paint_instances
from cvat_ray.storage.media.formats import kind_of

MAX_INSTANCES = 1000
TYPES = ("polygon", "mask", "rectangle")
INSTANCES = "instances"
IMAGES = "images"
LABELS = "labels.txt"
# the MOTS benchmark's classes (1 car, 2 pedestrian), for an archive without labels.txt
DEFAULT_LABELS = ("car", "pedestrian")
IGNORE_CLASS = 10
# one-channel PNG modes (8-bit greyscale holds only background)
_MODES = ("I", "I;16", "I;16B", "I;16L", "L")


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    names = [label.name for label in ds.meta.labels]
    classes = {name: n for n, name in enumerate(names, 1)}
    instance_of: dict[int, int] = {}
    for subset in ds.meta.subsets:
        for item in ds.items(subset):
            tracked = [s for s in item.shapes if s.track_id is not None]
            if not tracked:
                continue
            regions, shapes = paint_instances(
                msgspec.structs.replace(item, shapes=tracked), classes, TYPES
            )
            if not shapes:
                continue
            values = [0]
            for s in shapes:
                assert s.track_id is not None
                instance = instance_of.setdefault(s.track_id, len(instance_of) % MAX_INSTANCES)
                value = classes[s.label] * MAX_INSTANCES + instance
                if value > 0xFFFF:
                    raise InvalidInput(
                        f"MOTS PNG: label '{s.label}' is class {classes[s.label]}; a 16-bit "
                        f"mask holds classes up to {0xFFFF // MAX_INSTANCES - 1} (fewer labels)."
                    )
                values.append(value)
            lookup = np.array(values, np.int64)
            out.write(f"{subset}/{INSTANCES}/{item.stem}.png", png16(lookup[regions]))
        out.write(f"{subset}/{INSTANCES}/{LABELS}", "\n".join(names).encode(), compress=True)
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(f"{subset}/{IMAGES}/{image_name(item, ext)}", data)


def _roots(archive: Archive) -> list[str]:
    """The folders holding ``instances/`` (``""``: the archive's root), as datumaro finds
    them: the root, else its subfolders."""
    found: dict[str, None] = {}
    for name in archive.names():
        parts = name.split("/")
        if len(parts) >= 2 and parts[0] == INSTANCES:
            found[""] = None
        elif len(parts) >= 3 and parts[1] == INSTANCES:
            found[parts[0]] = None
    if "" in found:
        return [""]
    return list(found)


def _labels(archive: Archive, prefix: str) -> list[str]:
    member = f"{prefix}{INSTANCES}/{LABELS}"
    if member not in archive.names(LABELS):
        return list(DEFAULT_LABELS)
    out: list[str] = []
    for n, line in enumerate(archive.text(member).splitlines(), 1):
        label = line.strip()
        if not label:
            continue
        if label in out:
            raise InvalidInput(f"{member}:{n}: label '{label}' is listed twice.")
        out.append(label)
    return out


def _instances(archive: Archive, member: str) -> np.ndarray:
    im = decode_png(archive, member)
    if im.mode not in _MODES:
        raise InvalidInput(
            f"{member}: a MOTS instance mask is a one-channel 16-bit PNG, not mode {im.mode}."
        )
    values: np.ndarray = np.asarray(im).astype(np.int64)
    if values.ndim != 2 or int(values.min(initial=0)) < 0 or int(values.max(initial=0)) > 0xFFFF:
        raise InvalidInput(f"{member}: a MOTS instance mask holds 16-bit values.")
    return values


def _shapes(values: np.ndarray, labels: list[str], member: str, listed: bool) -> list[Shape]:
    out: list[Shape] = []
    for v in np.unique(values).tolist():
        cls, instance = divmod(int(v), MAX_INSTANCES)
        if cls == 0 or (cls == IGNORE_CLASS and len(labels) < IGNORE_CLASS):
            continue  # background, the ignore region
        if cls > len(labels):
            where = LABELS if listed else f"the default classes ({', '.join(labels)})"
            raise InvalidInput(
                f"{member}: class id {cls} (pixel value {v}) is not in {where}: "
                f"{len(labels)} labels are listed."
            )
        points = masks.bitmap_to_cvat((values == v).astype(np.uint8))
        if points is not None:
            out.append(Shape("mask", labels[cls - 1], points, track_id=instance))
    return out


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("MOTS PNG 1.0 is imported from a ZIP archive.")
    roots = _roots(archive)
    if not roots:
        raise InvalidInput(
            "The archive has no instances/ folder (MOTS PNG: <subset>/instances/<image>.png "
            "and <subset>/instances/labels.txt)."
        )
    parsed = Parsed()
    for root in roots:
        prefix = f"{root}/" if root else ""
        subset = root or "default"
        listed = f"{prefix}{INSTANCES}/{LABELS}" in archive.names(LABELS)
        labels = _labels(archive, prefix)
        images: dict[str, str] = {}
        for name in archive.names():
            rel = name[len(prefix) :]
            if name.startswith(f"{prefix}{IMAGES}/") and kind_of(name) == "image":
                rel = rel[len(IMAGES) + 1 :]
                images.setdefault(posixpath.splitext(rel)[0], rel)
        for member in archive.names(".png"):
            if not member.startswith(f"{prefix}{INSTANCES}/"):
                continue
            item_id = member[len(prefix) + len(INSTANCES) + 1 : -len(".png")]
            if not item_id:
                continue
            image = images.pop(item_id, "")
            item = Item(-1, image or item_id, subset=subset)
            if image:
                item.image = f"{prefix}{IMAGES}/{image}"
            item.shapes = _shapes(_instances(archive, member), labels, member, listed)
            parsed.items.append(item)
        for image in images.values():  # an image without a mask
            parsed.items.append(Item(-1, image, subset=subset, image=f"{prefix}{IMAGES}/{image}"))
    return parsed
