"""The backup's manifests and the conversions between ids and names (no I/O).

CVAT writes labels, attributes and annotations by *name*: a restore creates new labels with
new ids, and the names tie annotations to them. A skeleton's sublabels are named inside their
skeleton (two skeletons may both have a ``head``), so a label is known by ``(parent name,
name)``; the svg of a skeleton names its points with ``data-label-name`` in the backup and
``data-label-id`` once restored, as CVAT does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cvat_ray.cluster.errors import InvalidInput

VERSION = "1.0"
TASK_MANIFEST = "task.json"
PROJECT_MANIFEST = "project.json"
ANNOTATIONS = "annotations.json"
DATA = "data"
MEDIA_MANIFEST = "manifest.jsonl"
# files of ``data/`` that are not media
NOT_MEDIA = frozenset({MEDIA_MANIFEST, "index.json"})

# The keys CVAT keeps of an annotation object (its ``_prepare_meta`` whitelist).
ANNOTATION_KEYS = frozenset(
    {
        "label", "type", "occluded", "outside", "z_order", "points", "rotation", "frame",
        "group", "source", "attributes", "shapes", "elements", "score", "start", "stop",
    }
)  # fmt: skip
TASK_KEYS = ("name", "bug_tracker", "status", "subset", "labels", "version")
DATA_KEYS = (
    "chunk_size", "image_quality", "start_frame", "stop_frame", "frame_filter", "chunk_type",
    "storage_method", "storage", "sorting_method", "deleted_frames",
)  # fmt: skip


def task_folder(index: int) -> str:
    """The folder of the ``index``-th task (0-based, tasks in id order) in a project backup."""
    return f"task_{index}"


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class LabelRow:
    id: int
    parent_id: int | None
    name: str
    color: str
    type: str
    svg: str


@dataclass(frozen=True)
class SpecRow:
    id: int
    label_id: int
    name: str
    mutable: bool
    input_type: str
    default_value: str
    values: str


_ID_REF = re.compile(r'data-label-id="(\d+)"')
_NAME_REF = re.compile(r'data-label-name="([^"]*)"')


def svg_to_names(svg: str, names: Mapping[int, str]) -> str:
    """A skeleton's svg with its sublabels named instead of numbered."""
    return _ID_REF.sub(lambda m: f'data-label-name="{names.get(int(m.group(1)), m.group(1))}"', svg)


def svg_to_ids(svg: str, ids: Mapping[str, int]) -> str:
    """The reverse of :func:`svg_to_names` with the sublabels' new ids."""
    return _NAME_REF.sub(
        lambda m: f'data-label-id="{ids[m.group(1)]}"' if m.group(1) in ids else m.group(0), svg
    )


def labels_manifest(labels: Iterable[LabelRow], specs: Iterable[SpecRow]) -> list[dict[str, Any]]:
    """CVAT's ``labels`` list: top-level labels with their attributes and sublabels."""
    labels = list(labels)
    by_label: dict[int, list[SpecRow]] = {}
    for spec in sorted(specs, key=lambda s: s.id):
        by_label.setdefault(spec.label_id, []).append(spec)
    children: dict[int, list[LabelRow]] = {}
    for label in labels:
        if label.parent_id is not None:
            children.setdefault(label.parent_id, []).append(label)

    def one(label: LabelRow) -> dict[str, Any]:
        subs = sorted(children.get(label.id, []), key=lambda s: s.id)
        return {
            "name": label.name,
            "color": label.color,
            "attributes": [
                {
                    "name": s.name,
                    "mutable": s.mutable,
                    "input_type": s.input_type,
                    "default_value": s.default_value,
                    "values": s.values.split("\n") if s.values else [],
                }
                for s in by_label.get(label.id, [])
            ],
            "type": label.type,
            "svg": svg_to_names(label.svg, {s.id: s.name for s in subs}),
            "sublabels": [one(s) for s in subs],
        }

    return [one(label) for label in sorted(labels, key=lambda x: x.id) if label.parent_id is None]


# --------------------------------------------------------------------------- annotations


@dataclass
class IdNames:
    """For export: label id -> name, attribute spec id -> name."""

    labels: dict[int, str] = field(default_factory=dict)
    specs: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(cls, labels: Iterable[LabelRow], specs: Iterable[SpecRow]) -> IdNames:
        return cls({lbl.id: lbl.name for lbl in labels}, {s.id: s.name for s in specs})


def _attrs_to_names(attrs: list[dict[str, Any]], names: IdNames) -> list[dict[str, Any]]:
    return [
        {"name": names.specs.get(a["spec_id"], str(a["spec_id"])), "value": a["value"]}
        for a in attrs
    ]


def to_names(obj: dict[str, Any], names: IdNames) -> dict[str, Any]:
    """An annotation object (tag, shape, track, keyframe, element) as CVAT's backup writes it:
    ids dropped, ``label_id`` -> ``label`` and ``spec_id`` -> ``name``."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "label_id":
            out["label"] = names.labels.get(value, str(value))
        elif key == "attributes":
            out["attributes"] = _attrs_to_names(value, names)
        elif key in ("shapes", "elements"):
            out[key] = [to_names(o, names) for o in value]
        elif key in ANNOTATION_KEYS:
            out[key] = value
    return out


# Rewriting the database's object JSON as text (ten times faster than parsing it). Outside a
# string, ``"id":`` can only be a key; inside one it cannot occur, since a string's quotes
# are escaped and a closing quote is never followed by ":" (keys are ours, never user text).
# The patterns start with a literal, so the regex engine searches for it.
_DROP_ID = re.compile(r'"id":(?:-?\d+|null),')
_DROP_LAST_ID = re.compile(r',"id":(?:-?\d+|null)(?=[}\]])')
_LABEL_ID = re.compile(r'"label_id":(\d+)')
_SPEC_ID = re.compile(r'"spec_id":(\d+)')


@dataclass
class TextNames:
    """For export: label and spec ids -> their names as JSON strings."""

    labels: dict[int, str]
    specs: dict[int, str]

    @classmethod
    def of(cls, names: IdNames) -> TextNames:
        return cls(
            {k: json.dumps(v) for k, v in names.labels.items()},
            {k: json.dumps(v) for k, v in names.specs.items()},
        )

    def convert(self, text: str) -> str:
        """Object JSON as the database writes it (``reads``) -> as CVAT's backup has it:
        ids dropped, ``label_id`` -> ``label``, ``spec_id`` -> ``name``. Every key the
        database writes is in CVAT's whitelist but these."""
        text = _DROP_LAST_ID.sub("", _DROP_ID.sub("", text))
        text = _LABEL_ID.sub(lambda m: '"label":' + self._label(int(m.group(1))), text)
        return _SPEC_ID.sub(lambda m: '"name":' + self._spec(int(m.group(1))), text)

    def _label(self, label_id: int) -> str:
        return self.labels.get(label_id) or json.dumps(str(label_id))

    def _spec(self, spec_id: int) -> str:
        return self.specs.get(spec_id) or json.dumps(str(spec_id))


@dataclass
class NameIds:
    """For a restore: ``(parent name, name)`` -> label id, and per label, attribute name ->
    spec id."""

    labels: dict[tuple[str, str], int] = field(default_factory=dict)
    specs: dict[int, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, labels: Iterable[LabelRow], specs: Iterable[SpecRow]) -> NameIds:
        labels = list(labels)
        by_id = {lbl.id: lbl for lbl in labels}
        index = cls()
        for lbl in labels:
            parent = by_id[lbl.parent_id].name if lbl.parent_id in by_id else ""
            index.labels[(parent, lbl.name)] = lbl.id
        for spec in specs:
            index.specs.setdefault(spec.label_id, {})[spec.name] = spec.id
        return index


def _label_id(obj: Mapping[str, Any], parent: str, index: NameIds, where: str) -> tuple[int, str]:
    name = obj.get("label")
    if not isinstance(name, str):
        raise InvalidInput(f"{where}: the object has no label name.")
    found = index.labels.get((parent, name))
    if found is None:
        inside = f" (a sublabel of {parent!r})" if parent else ""
        raise InvalidInput(
            f"{where}: the label {name!r}{inside} is used but not defined in the backup's labels."
        )
    return found, name


def _attrs_to_ids(
    attrs: Any, label_id: int, label: str, index: NameIds, where: str
) -> list[dict[str, Any]]:
    if type(attrs) is not list:
        raise InvalidInput(f"{where}.attributes: a list is expected.")
    if not attrs:
        return []
    specs = index.specs.get(label_id, {})
    out = []
    for i, attr in enumerate(attrs):
        name = attr.get("name") if type(attr) is dict else attr
        spec = specs.get(name) if type(name) is str else None
        if spec is None:
            raise InvalidInput(
                f"{where}.attributes[{i}]: the label {label!r} has no attribute {name!r}."
            )
        out.append({"spec_id": spec, "value": attr.get("value")})
    return out


_PLAIN = ANNOTATION_KEYS - {"label", "attributes", "elements", "shapes"}


def to_ids(
    obj: Any, index: NameIds, where: str, parent: str = "", label: tuple[int, str] | None = None
) -> dict[str, Any]:
    """The reverse of :func:`to_names` against the restored labels; a label or attribute
    that the backup does not define is a readable error naming the object."""
    if type(obj) is not dict:
        raise InvalidInput(f"{where}: an object is expected.")
    out: dict[str, Any] = {}
    if label is None:
        label = _label_id(obj, parent, index, where)
        out["label_id"] = label[0]
    for key, value in obj.items():
        if key in _PLAIN:
            out[key] = value
        elif key == "attributes":
            out[key] = _attrs_to_ids(value, label[0], label[1], index, where)
        elif key == "elements":
            if type(value) is not list:
                raise InvalidInput(f"{where}.elements: a list is expected.")
            if value:
                out[key] = [
                    to_ids(e, index, f"{where}.elements[{i}]", parent=label[1])
                    for i, e in enumerate(value)
                ]
        elif key == "shapes":
            if type(value) is not list:
                raise InvalidInput(f"{where}.shapes: a list is expected.")
            # a track's keyframes have the track's label
            out[key] = [
                to_ids(s, index, f"{where}.shapes[{i}]", label=label) for i, s in enumerate(value)
            ]
    return out


def check_job_entry(job: Any, where: str) -> None:
    """One job's entry of ``annotations.json`` has the shape CVAT writes (audio intervals
    are not supported and must be empty)."""
    if not isinstance(job, dict):
        raise InvalidInput(f"{where}: an object is expected.")
    if job.get("intervals"):
        raise InvalidInput(f"{where}.intervals: audio intervals are not supported.")
    for section in ("tags", "shapes", "tracks"):
        if not isinstance(job.get(section, []), list):
            raise InvalidInput(f"{where}.{section}: a list is expected.")
