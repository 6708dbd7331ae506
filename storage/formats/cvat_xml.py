"""CVAT for images 1.1 / CVAT for video 1.1 (export) and CVAT 1.1 (import): CVAT's own XML.

Export: ``annotations.xml`` written element by element into the archive (and the frames
under ``images/`` with ``save_images``). *For images* lists each frame's tags and shapes,
tracks' shapes included (as CVAT does: the visible ones, without the track); *for video*
writes each track with its shape on every frame of its span (``keyframe`` marks the keys)
and each plain shape as a one-frame track, as CVAT does; tags are not written there.

Import: the XML (alone or in a ZIP) is read incrementally with defusedxml (a DTD, an entity
declaration or an external reference is refused: XXE and billion laughs), ``<image>``
elements by name (their ``id`` when no frame has that name), ``<track>`` elements by frame.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from defusedxml import ElementTree as SafeET

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.formats.archive import Archive, BinaryWriter, ZipOut
from cvat_ray.storage.formats.model import (
    AttrDef,
    Dataset,
    Item,
    LabelDef,
    Parsed,
    Shape,
    Tag,
    Track,
    TrackKey,
)

ANNOTATIONS = "annotations.xml"


# characters that make a value need escaping (most values are numbers and plain names)
_SPECIAL = re.compile(r'[&<>"\n\r\t]')


def _quote(value: str) -> str:
    """``quoteattr``, byte for byte, without its replacements where there is nothing to
    replace (an export quotes millions of values)."""
    return f'"{value}"' if _SPECIAL.search(value) is None else quoteattr(value)


def _text(value: str) -> str:
    """``escape`` of element text, skipped where there is nothing to escape."""
    return value if _SPECIAL.search(value) is None else escape(value)


def _num(v: float) -> str:
    return f"{v:.2f}"


def _bool(v: bool) -> str:
    return "1" if v else "0"


class _Xml:
    """Writes indented XML text to a binary stream in blocks (plain string building: an
    export writes millions of elements)."""

    def __init__(self, out: BinaryWriter) -> None:
        self.out = out
        self.buf: list[str] = []
        self.size = 0
        self.depth = 0

    def _w(self, text: str) -> None:
        self.buf.append(text)
        self.size += len(text)
        if self.size > 1 << 16:
            self.flush()

    def flush(self) -> None:
        self.out.write("".join(self.buf).encode())
        self.buf.clear()
        self.size = 0

    def declaration(self) -> None:
        self._w('<?xml version="1.0" encoding="utf-8"?>')

    @staticmethod
    def _attrs(attrs: dict[str, str] | None) -> str:
        return "".join(f" {k}={_quote(v)}" for k, v in attrs.items()) if attrs else ""

    def start(self, name: str, attrs: dict[str, str] | None = None) -> None:
        self._w(f"\n{'  ' * self.depth}<{name}{self._attrs(attrs)}>")
        self.depth += 1

    def end(self, name: str, inline: bool = False) -> None:
        self.depth -= 1
        self._w(f"</{name}>" if inline else f"\n{'  ' * self.depth}</{name}>")

    def leaf(self, name: str, value: str, attrs: dict[str, str] | None = None) -> None:
        self._w(f"\n{'  ' * self.depth}<{name}{self._attrs(attrs)}>{_text(value)}</{name}>")

    def close(self) -> None:
        self._w("\n")
        self.flush()


def _labels(x: _Xml, labels: list[LabelDef]) -> None:
    x.start("labels")
    for label in labels:
        _label(x, label, None)
        for sub in label.sublabels:
            _label(x, sub, label.name)
    x.end("labels")


def _label(x: _Xml, label: LabelDef, parent: str | None) -> None:
    x.start("label")
    x.leaf("name", label.name)
    x.leaf("color", label.color)
    x.leaf("type", label.type)
    if parent is not None:
        x.leaf("parent", parent)
    if label.svg:
        x.leaf("svg", label.svg)
    x.start("attributes")
    for a in label.attributes:
        x.start("attribute")
        x.leaf("name", a.name)
        x.leaf("mutable", "True" if a.mutable else "False")
        x.leaf("input_type", a.input_type)
        x.leaf("default_value", a.default_value)
        x.leaf("values", "\n".join(a.values))
        x.end("attribute")
    x.end("attributes")
    x.end("label")


def _meta(x: _Xml, ds: Dataset, kind: str) -> None:
    m = ds.meta
    x.start("meta")
    x.start(kind)
    if len(m.tasks) == 1:
        x.leaf("id", str(m.tasks[0][0]))
    x.leaf("name", m.name)
    x.leaf("size", str(m.size))
    x.leaf("mode", m.mode)
    x.leaf("created", m.created)
    x.leaf("updated", m.updated)
    if len(m.subsets) == 1:
        x.leaf("subset", m.subsets[0])
    _labels(x, m.labels)
    x.end(kind)
    x.leaf("dumped", datetime.now(UTC).isoformat())
    x.end("meta")


def _attrs(x: _Xml, attributes: dict[str, str]) -> None:
    for name, value in attributes.items():
        x.leaf("attribute", value, {"name": name})


def _geometry(shape_type: str, points: list[float], rotation: float) -> dict[str, str]:
    p = points
    if shape_type == "rectangle":
        out = {"xtl": _num(p[0]), "ytl": _num(p[1]), "xbr": _num(p[2]), "ybr": _num(p[3])}
    elif shape_type == "ellipse":
        out = {"cx": _num(p[0]), "cy": _num(p[1]), "rx": _num(p[2] - p[0]), "ry": _num(p[1] - p[3])}
    elif shape_type == "cuboid":
        keys = ("xtl1", "ytl1", "xbl1", "ybl1", "xtr1", "ytr1", "xbr1", "ybr1",
                "xtl2", "ytl2", "xbl2", "ybl2", "xtr2", "ytr2", "xbr2", "ybr2")  # fmt: skip
        out = {k: _num(v) for k, v in zip(keys, p, strict=True)}
    elif shape_type == "mask":
        *counts, left, top, right, bottom = p
        out = {
            "rle": ", ".join(str(int(c)) for c in counts),
            "left": str(int(left)),
            "top": str(int(top)),
            "width": str(int(right - left + 1)),
            "height": str(int(bottom - top + 1)),
        }
    elif shape_type == "skeleton":
        out = {}
    else:
        out = {
            "points": ";".join(f"{_num(a)},{_num(b)}" for a, b in zip(p[::2], p[1::2], strict=True))
        }
    if rotation and shape_type in ("rectangle", "ellipse"):
        out["rotation"] = _num(rotation)
    return out


_TAG_OF = {"rectangle": "box", "skeleton": "skeleton"}


def _element(shape_type: str) -> str:
    return _TAG_OF.get(shape_type, shape_type)


def _shape(x: _Xml, s: Shape) -> None:
    attrs = {"label": s.label, "source": s.source, "occluded": _bool(s.occluded)}
    attrs.update(_geometry(s.type, s.points, s.rotation))
    attrs["z_order"] = str(s.z_order)
    if s.group:
        attrs["group_id"] = str(s.group)
    name = _element(s.type)
    x.start(name, attrs)
    for e in s.elements:
        ea = {"label": e.label, "source": e.source, "outside": _bool(e.outside),
              "occluded": _bool(e.occluded)}  # fmt: skip
        ea.update(_geometry(e.type, e.points, 0))
        x.start(_element(e.type), ea)
        _attrs(x, e.attributes)
        x.end(_element(e.type), inline=not e.attributes)
    _attrs(x, s.attributes)
    x.end(name, inline=not (s.attributes or s.elements))


def _tag(x: _Xml, t: Tag) -> None:
    attrs = {"label": t.label, "source": t.source}
    if t.group:
        attrs["group_id"] = str(t.group)
    x.start("tag", attrs)
    _attrs(x, t.attributes)
    x.end("tag", inline=not t.attributes)


def _images_page(subsets: bool, page: list[Item], first: int) -> bytes:
    """The ``<image>`` elements of a page of items (inside ``<annotations>``)."""
    text = io.BytesIO()
    x = _Xml(text)
    x.depth = 1
    for item in page:
        attrs = {"id": str(item.frame), "name": item.name,
                 "width": str(item.width), "height": str(item.height)}  # fmt: skip
        if subsets:
            attrs["subset"] = item.subset
        x.start("image", attrs)
        for t in item.tags:
            _tag(x, t)
        for s in item.shapes:
            _shape(x, s)
        x.end("image", inline=not (item.tags or item.shapes))
    x.flush()
    return text.getvalue()


def _images(ds: Dataset, out: ZipOut) -> None:
    for item, data, ext in ds.images():
        name = item.name if "." in item.name.rpartition("/")[2] else item.name + ext
        out.write(f"images/{name}", data)


def write(ds: Dataset, out: ZipOut, fmt: str, save_images: bool) -> None:
    video = fmt.startswith("CVAT for video")
    kind = "project" if len(ds.meta.tasks) > 1 else "task"
    with out.open(ANNOTATIONS) as stream:
        x = _Xml(stream)
        x.declaration()
        x.start("annotations")
        x.leaf("version", "1.1")
        _meta(x, ds, kind)
        if video:
            _tracks(x, ds)
        else:
            x.flush()
            subsets = len(ds.meta.subsets) > 1
            pages = ds.map_pages(None, functools.partial(_images_page, subsets), bytes)
            with contextlib.closing(pages):
                for text in pages:
                    stream.write(text)
        x.end("annotations")
        x.close()
    if save_images:
        _images(ds, out)


def _track_shape(x: _Xml, k: TrackKey, source: str | None = None) -> None:
    attrs = {"frame": str(k.frame), "keyframe": _bool(k.keyframe),
             "outside": _bool(k.outside), "occluded": _bool(k.occluded)}  # fmt: skip
    attrs.update(_geometry(k.type, k.points, k.rotation))
    attrs["z_order"] = str(k.z_order)
    name = _element(k.type)
    x.start(name, attrs)
    _attrs(x, k.attributes)
    x.end(name, inline=not k.attributes)


def _tracks(x: _Xml, ds: Dataset) -> None:
    """Tracks with every frame of their span, then plain shapes as one-frame tracks."""
    next_id = 0
    last_frame = max(ds.meta.size - 1, 0)
    for _, track in ds.tracks():
        _write_track(x, next_id, track, last_frame)
        next_id += 1
    for item in ds.items():
        for s in item.shapes:
            if s.track_id is not None:
                continue
            keys = [TrackKey(item.frame, s.type, s.points, False, s.occluded, True, s.z_order,
                             s.rotation, s.attributes)]  # fmt: skip
            if item.frame < last_frame:
                keys.append(TrackKey(item.frame + 1, s.type, s.points, True, s.occluded, True,
                                     s.z_order, s.rotation, s.attributes))  # fmt: skip
            elements = [
                Track(e.label, [TrackKey(item.frame, e.type, e.points, e.outside, e.occluded)])
                for e in s.elements
            ]
            _write_track(
                x, next_id, Track(s.label, keys, {}, s.group, s.source, elements), last_frame
            )
            next_id += 1


def _write_track(x: _Xml, track_id: int, track: Track, last_frame: int) -> None:
    attrs = {"id": str(track_id), "label": track.label, "source": track.source}
    if track.group:
        attrs["group_id"] = str(track.group)
    x.start("track", attrs)
    if track.elements:
        # a skeleton track: one <skeleton> per frame of the element tracks' union
        per_element = [(e.label, e.keys) for e in track.elements]
        frames = sorted({k.frame for _, keys in per_element for k in keys})
        parent = {k.frame: k for k in track.keys} if track.keys else {}
        for frame in frames:
            p = parent.get(frame)
            sattrs = {"frame": str(frame), "keyframe": _bool(p.keyframe if p else True),
                      "outside": _bool(p.outside if p else False),
                      "occluded": "0", "z_order": str(p.z_order if p else 0)}  # fmt: skip
            x.start("skeleton", sattrs)
            for label, keys in per_element:
                for k in keys:
                    if k.frame == frame:
                        ea = {"label": label, "keyframe": _bool(k.keyframe),
                              "outside": _bool(k.outside), "occluded": _bool(k.occluded)}  # fmt: skip
                        ea.update(_geometry(k.type, k.points, 0))
                        x.start("points", ea)
                        x.end("points", inline=True)
            if p is not None:
                _attrs(x, p.attributes)
            x.end("skeleton")
    else:
        for k in track.keys:
            _track_shape(x, k)
    x.end("track")


# ---------------------------------------------------------------------------------- import


def _float(el: Any, key: str) -> float:
    try:
        return float(el.attrib[key])
    except KeyError:
        raise InvalidInput(f"<{el.tag}> has no '{key}'.") from None
    except ValueError:
        raise InvalidInput(f"<{el.tag}> {key}={el.attrib[key]!r} is not a number.") from None


def _points(el: Any) -> tuple[str, list[float], float]:
    tag = el.tag
    rotation = float(el.attrib.get("rotation", 0) or 0)
    if tag == "box":
        return "rectangle", [_float(el, k) for k in ("xtl", "ytl", "xbr", "ybr")], rotation
    if tag == "ellipse":
        cx, cy, rx, ry = (_float(el, k) for k in ("cx", "cy", "rx", "ry"))
        return "ellipse", [cx, cy, cx + rx, cy - ry], rotation
    if tag == "cuboid":
        keys = ("xtl1", "ytl1", "xbl1", "ybl1", "xtr1", "ytr1", "xbr1", "ybr1",
                "xtl2", "ytl2", "xbl2", "ybl2", "xtr2", "ytr2", "xbr2", "ybr2")  # fmt: skip
        return "cuboid", [_float(el, k) for k in keys], 0.0
    if tag == "mask":
        try:
            counts = [float(c) for c in el.attrib["rle"].split(",") if c.strip()]
        except (KeyError, ValueError):
            raise InvalidInput("<mask> needs an 'rle' of integers.") from None
        left, top, width, height = (_float(el, k) for k in ("left", "top", "width", "height"))
        return "mask", [*counts, left, top, left + width - 1, top + height - 1], 0.0
    if tag == "skeleton":
        return "skeleton", [], 0.0
    if tag in ("polygon", "polyline", "points"):
        pts: list[float] = []
        for pair in el.attrib.get("points", "").split(";"):
            if not pair.strip():
                continue
            try:
                a, b = pair.split(",")
                pts += [float(a), float(b)]
            except ValueError:
                raise InvalidInput(f"<{tag}> points {pair!r} are not 'x,y'.") from None
        return tag, pts, 0.0
    raise InvalidInput(f"Unknown shape element <{tag}>.")


SHAPE_TAGS = {"box", "polygon", "polyline", "points", "ellipse", "cuboid", "mask", "skeleton"}


def _attributes(el: Any) -> dict[str, str]:
    return {a.attrib.get("name", ""): (a.text or "") for a in el.findall("attribute")}


def _flag(el: Any, key: str) -> bool:
    return el.attrib.get(key, "0") in ("1", "true", "True")


def _int(el: Any, key: str, default: int = 0) -> int:
    try:
        return int(el.attrib.get(key, default) or default)
    except ValueError:
        raise InvalidInput(f"<{el.tag}> {key}={el.attrib[key]!r} is not an integer.") from None


def _read_shape(el: Any) -> Shape:
    kind, points, rotation = _points(el)
    shape = Shape(
        kind,
        el.attrib.get("label", ""),
        points,
        _attributes(el),
        occluded=_flag(el, "occluded"),
        outside=_flag(el, "outside"),
        z_order=_int(el, "z_order"),
        rotation=rotation,
        group=_int(el, "group_id"),
        source=el.attrib.get("source", "manual") or "manual",
    )
    if kind == "skeleton":
        for child in el:
            if child.tag in SHAPE_TAGS:
                shape.elements.append(_read_shape(child))
    return shape


def _key(el: Any) -> TrackKey:
    kind, points, rotation = _points(el)
    return TrackKey(
        _int(el, "frame"),
        kind,
        points,
        outside=_flag(el, "outside"),
        occluded=_flag(el, "occluded"),
        keyframe=el.attrib.get("keyframe", "1") in ("1", "true", "True"),
        z_order=_int(el, "z_order"),
        rotation=rotation,
        attributes=_attributes(el),
    )


def _read_track(el: Any) -> Track:
    track = Track(
        el.attrib.get("label", ""),
        [],
        group=_int(el, "group_id"),
        source=el.attrib.get("source", "manual") or "manual",
    )
    elements: dict[str, Track] = {}
    for child in el:
        if child.tag not in SHAPE_TAGS:
            continue
        key = _key(child)
        if child.tag == "skeleton":
            key.points = []
            for sub in child:
                if sub.tag in SHAPE_TAGS:
                    label = sub.attrib.get("label", "")
                    sub_key = _key(sub)
                    sub_key.frame = key.frame
                    elements.setdefault(label, Track(label, [])).keys.append(sub_key)
        track.keys.append(key)
    track.elements = list(elements.values())
    return track


def _iter_xml(stream: Any, parsed: Parsed) -> Iterator[Item]:
    """The ``<image>`` elements as items, one at a time; ``<track>`` elements are added to
    ``parsed.tracks``. Finished elements are dropped from the tree as it is read."""
    root = None
    try:
        events = SafeET.iterparse(stream, events=("start", "end"), forbid_dtd=True)
        for event, el in events:
            if event == "start":
                if root is None:
                    root = el
                continue
            if el.tag == "image":
                item = Item(
                    _int(el, "id", -1),
                    el.attrib.get("name", ""),
                    _int(el, "width"),
                    _int(el, "height"),
                    el.attrib.get("subset", "default") or "default",
                )
                for child in el:
                    if child.tag == "tag":
                        item.tags.append(
                            Tag(
                                child.attrib.get("label", ""),
                                _attributes(child),
                                _int(child, "group_id"),
                                child.attrib.get("source", "manual") or "manual",
                            )
                        )
                    elif child.tag in SHAPE_TAGS:
                        item.shapes.append(_read_shape(child))
                if root is not None:
                    root.clear()
                yield item
            elif el.tag == "label" and el.find("name") is not None:
                # the meta's label list (a project import checks or creates the labels)
                if not (el.findtext("parent") or ""):
                    parsed.labels.append(
                        LabelDef(
                            el.findtext("name") or "",
                            type=el.findtext("type") or "any",
                            color=el.findtext("color") or "",
                            attributes=[_attr_def(a) for a in el.iterfind("attributes/attribute")],
                        )
                    )
            elif el.tag == "track":
                parsed.tracks.append(_read_track(el))
                if root is not None:
                    root.clear()
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(f"The annotation file is not valid CVAT XML: {_reason(exc)}") from exc


def _attr_def(el: Any) -> AttrDef:
    values = el.findtext("values") or ""
    return AttrDef(
        el.findtext("name") or "",
        input_type=el.findtext("input_type") or "text",
        mutable=(el.findtext("mutable") or "").lower() == "true",
        default_value=el.findtext("default_value") or "",
        values=values.split("\n") if values else [],
    )


def parse_xml(stream: Any) -> Parsed:
    """A whole XML stream (for callers that hold it in memory)."""
    parsed = Parsed()
    parsed.items = list(_iter_xml(stream, parsed))
    return parsed


def _reason(exc: Exception) -> str:
    name = type(exc).__name__
    if name in ("DTDForbidden", "EntitiesForbidden", "ExternalReferenceForbidden"):
        return "DTDs and entity declarations are not allowed."
    return str(exc) or name


def read(archive: Archive, fmt: str = "") -> Parsed:
    """Every ``*.xml`` of the upload (CVAT writes one, ``annotations.xml``), streamed."""
    names = archive.names(".xml")
    if not names:
        raise InvalidInput("The upload holds no XML annotation file.")
    parsed = Parsed()

    def stream() -> Iterator[Item]:
        for name in names:
            with archive.open(name) as f:
                yield from _iter_xml(f, parsed)

    parsed.more = stream()
    return parsed
