"""PASCAL VOC 1.1: ``Annotations/<stem>.xml`` per image with its boxes (``bndbox``),
``ImageSets/Main/<subset>.txt`` (the image stems), ``ImageSets/Main/<label>_<subset>.txt``
(``stem 1`` / ``stem -1``: the image's tags), ``labelmap.txt`` and ``JPEGImages/`` with
images. Kept: rectangles (``occluded``, ``truncated``/``difficult`` when the label has such
attributes, other attributes under ``<attributes>``), and tags; dropped: other shapes
(polygons and masks go to Segmentation mask), rotation, z_order, groups.

Import reads ``Annotations/*.xml`` (defusedxml, no DTDs or entities) and the
``<label>_<subset>.txt`` tag lists.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape, Tag

_FLAGS = ("truncated", "difficult")


def _name(item: Item, ext: str = ".jpg") -> str:
    base = item.name.rpartition("/")[2]
    return base if "." in base else base + ext


def _stem(item: Item) -> str:
    return _name(item).rpartition(".")[0]


def _box(s: Shape) -> str:
    x1, y1, x2, y2 = s.points
    flags = "".join(
        f"<{k}>{1 if s.attributes.get(k, '').lower() in ('true', '1') else 0}</{k}>" for k in _FLAGS
    )
    extra = "".join(
        f"<attribute><name>{escape(k)}</name><value>{escape(v)}</value></attribute>"
        for k, v in s.attributes.items()
        if k not in _FLAGS
    )
    return (
        f"<object><name>{escape(s.label)}</name><pose>Unspecified</pose>{flags}"
        f"<occluded>{int(s.occluded)}</occluded>"
        f"<bndbox><xmin>{x1:.2f}</xmin><ymin>{y1:.2f}</ymin><xmax>{x2:.2f}</xmax>"
        f"<ymax>{y2:.2f}</ymax></bndbox><attributes>{extra}</attributes></object>"
    )


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    labels = [label.name for label in ds.meta.labels]
    lines = ["# label:color_rgb:parts:actions", "background:0,0,0::"]
    lines += [f"{label.name}:{_rgb(label.color)}::" for label in ds.meta.labels]
    out.write("labelmap.txt", ("\n".join(lines) + "\n").encode(), compress=True)
    for subset in ds.meta.subsets:
        stems: list[str] = []
        tagged: dict[str, list[str]] = {name: [] for name in labels}
        for item in ds.items(subset):
            stem = _stem(item)
            stems.append(stem)
            has = {t.label for t in item.tags}
            for name in labels:
                tagged[name].append(f"{stem} {1 if name in has else -1}")
            objects = "".join(_box(s) for s in item.shapes if s.type == "rectangle")
            xml = (
                f"<annotation><folder></folder><filename>{escape(_name(item))}</filename>"
                "<source><database>Unknown</database><annotation>Unknown</annotation>"
                "<image>Unknown</image></source>"
                f"<size><width>{item.width}</width><height>{item.height}</height>"
                f"<depth></depth></size><segmented>0</segmented>{objects}</annotation>\n"
            )
            out.write(f"Annotations/{stem}.xml", xml.encode(), compress=True)
        out.write(f"ImageSets/Main/{subset}.txt", "".join(s + "\n" for s in stems).encode(), True)
        for name, rows in tagged.items():
            if any(r.endswith(" 1") for r in rows):
                body = "".join(r + "\n" for r in rows).encode()
                out.write(f"ImageSets/Main/{name}_{subset}.txt", body, True)
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(f"JPEGImages/{_name(item, ext)}", data)


def _rgb(color: str) -> str:
    c = color.lstrip("#")
    if len(c) != 6:
        return "0,0,0"
    return ",".join(str(int(c[i : i + 2], 16)) for i in (0, 2, 4))


def _text(el: object, path: str, default: str = "") -> str:
    found = el.find(path)  # type: ignore[attr-defined]
    return (found.text or default).strip() if found is not None and found.text else default


def _parse(archive: Archive, name: str) -> Item:
    try:
        with archive.open(name) as stream:
            root = SafeET.parse(stream, forbid_dtd=True).getroot()
    except Exception as exc:
        kind = type(exc).__name__
        if kind in ("DTDForbidden", "EntitiesForbidden", "ExternalReferenceForbidden"):
            raise InvalidInput(f"{name}: DTDs and entity declarations are not allowed.") from exc
        raise InvalidInput(f"{name}: not a valid VOC annotation ({exc}).") from exc
    filename = _text(root, "filename") or name.rpartition("/")[2].rpartition(".")[0]
    item = Item(-1, filename)
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        if box is None:
            continue
        try:
            points = [float(_text(box, k)) for k in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise InvalidInput(f"{name}: a bndbox value is not a number.") from None
        attrs = {k: "true" for k in _FLAGS if _text(obj, k) == "1"}
        for a in obj.findall("attributes/attribute"):
            attrs[_text(a, "name")] = _text(a, "value")
        item.shapes.append(
            Shape(
                "rectangle",
                _text(obj, "name"),
                points,
                attrs,
                occluded=_text(obj, "occluded") == "1",
            )
        )
    return item


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("PASCAL VOC 1.1 is imported from a ZIP archive.")
    parsed = Parsed()
    # the masks VOC's segmentation folders hold are read by Segmentation mask, never images
    archive.claim(*(n for n in archive.names(".png") if "/Segmentation" in f"/{n}"))
    by_stem: dict[str, Item] = {}
    for name in archive.names(".xml"):
        if "Annotations/" not in name:
            continue
        item = _parse(archive, name)
        parsed.items.append(item)
        by_stem[item.name.rpartition(".")[0] or item.name] = item
    for name in archive.names(".txt"):
        folder, _, base = name.rpartition("/")
        if not folder.endswith("ImageSets/Main") or "_" not in base:
            continue
        label = base[: -len(".txt")].rpartition("_")[0]
        for line in archive.text(name).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == "1":
                found = by_stem.get(parts[0])
                if found is None:
                    found = by_stem[parts[0]] = Item(-1, parts[0])
                    parsed.items.append(found)
                found.tags.append(Tag(label))
    if not parsed.items:
        raise InvalidInput("The archive has no Annotations/*.xml.")
    return parsed
