"""LabelMe 3.0: ``<subset>/<stem>.xml`` per image (+ the image next to it with images).

Each object has ``name`` (the label), ``occluded`` (``yes``/``no``), ``attributes``
(``name=value`` pairs separated by commas) and a ``polygon`` of ``pt`` points; a rectangle
is a 4-point polygon with ``type`` ``bounding_box``. Kept: rectangles, polygons, occluded,
attributes; dropped: other shapes, tags, rotation, z_order, groups.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from defusedxml import ElementTree as SafeET

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Dataset, Item, Parsed, Shape


def _name(item: Item, ext: str = ".jpg") -> str:
    base = item.name.rpartition("/")[2]
    return base if "." in base else base + ext


def _object(n: int, s: Shape) -> str:
    if s.type == "rectangle":
        x1, y1, x2, y2 = s.points
        pts = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        kind = "<type>bounding_box</type>"
    else:
        pts = list(zip(s.points[0::2], s.points[1::2], strict=True))
        kind = ""
    attrs = ", ".join(f"{k}={v}" for k, v in s.attributes.items())
    points = "".join(f"<pt><x>{x:.2f}</x><y>{y:.2f}</y></pt>" for x, y in pts)
    return (
        f"<object><name>{escape(s.label)}</name><deleted>0</deleted><verified>0</verified>"
        f"<occluded>{'yes' if s.occluded else 'no'}</occluded><date></date><id>{n}</id>"
        f"<parts><hasparts></hasparts><ispartof></ispartof></parts>{kind}"
        f"<polygon>{points}<username></username></polygon>"
        f"<attributes>{escape(attrs)}</attributes></object>"
    )


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    for subset in ds.meta.subsets:
        for item in ds.items(subset):
            objects = "".join(
                _object(n, s)
                for n, s in enumerate(x for x in item.shapes if x.type in ("rectangle", "polygon"))
            )
            xml = (
                f"<annotation><filename>{escape(_name(item))}</filename><folder>{escape(subset)}"
                "</folder><source><sourceImage></sourceImage><sourceAnnotation>cvat-ray"
                "</sourceAnnotation></source><imagesize>"
                f"<nrows>{item.height}</nrows><ncols>{item.width}</ncols></imagesize>"
                f"{objects}</annotation>\n"
            )
            stem = _name(item).rpartition(".")[0]
            out.write(f"{subset}/{stem}.xml", xml.encode(), compress=True)
        if save_images:
            for item, data, ext in ds.images(subset):
                out.write(f"{subset}/{_name(item, ext)}", data)


def _text(el: object, path: str) -> str:
    found = el.find(path)  # type: ignore[attr-defined]
    return (found.text or "").strip() if found is not None else ""


def _parse(archive: Archive, name: str) -> Item:
    try:
        with archive.open(name) as stream:
            root = SafeET.parse(stream, forbid_dtd=True).getroot()
    except Exception as exc:
        kind = type(exc).__name__
        if kind in ("DTDForbidden", "EntitiesForbidden", "ExternalReferenceForbidden"):
            raise InvalidInput(f"{name}: DTDs and entity declarations are not allowed.") from exc
        raise InvalidInput(f"{name}: not a valid LabelMe annotation ({exc}).") from exc
    item = Item(-1, _text(root, "filename") or name.rpartition("/")[2].rpartition(".")[0])
    for obj in root.findall("object"):
        if _text(obj, "deleted") == "1":
            continue
        try:
            pts = [(float(_text(p, "x")), float(_text(p, "y"))) for p in obj.findall("polygon/pt")]
        except ValueError:
            raise InvalidInput(f"{name}: a point is not a number.") from None
        attrs: dict[str, str] = {}
        for pair in _text(obj, "attributes").split(","):
            key, eq, value = pair.partition("=")
            if eq and key.strip():
                attrs[key.strip()] = value.strip()
        occluded = _text(obj, "occluded") == "yes"
        label = _text(obj, "name")
        if _text(obj, "type") == "bounding_box" and len(pts) == 4:
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            shape = Shape("rectangle", label, [min(xs), min(ys), max(xs), max(ys)], attrs, occluded)
        elif len(pts) >= 3:
            shape = Shape("polygon", label, [v for p in pts for v in p], attrs, occluded)
        else:
            continue
        item.shapes.append(shape)
    return item


def read(archive: Archive, fmt: str = "") -> Parsed:
    if not archive.is_zip:
        raise InvalidInput("LabelMe 3.0 is imported from a ZIP archive.")
    parsed = Parsed(items=[_parse(archive, n) for n in archive.names(".xml")])
    if not parsed.items:
        raise InvalidInput("The archive has no LabelMe XML files.")
    return parsed
