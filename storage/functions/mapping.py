"""From what a model says to what a task stores.

Model output is CVAT's function output: a list of ``{label, type, points, confidence,
attributes?, mask?}`` dicts per frame, labels by the model's names. A *label map* sends each
model label to a task label (by the request's ``mapping``, or by equal names and
compatible types as CVAT does) and model attribute names to task attribute ids.

Pure: the task's labels come in as :class:`TaskLabel` (read by
``cvat_ray.storage.services.lambda_functions.task_labels``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.functions.spec import FunctionSpec
from cvat_ray.storage.schemas.annotations import (
    AttributeVal,
    LabeledData,
    LabeledImage,
    LabeledShape,
)
from cvat_ray.storage.schemas.lambda_ import MappingEntry


@dataclass(frozen=True)
class TaskLabel:
    id: int
    name: str
    type: str
    # attribute name -> (spec id, input type, allowed values)
    attributes: dict[str, tuple[int, str, tuple[str, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """Where one model label goes."""

    label_id: int
    label_type: str
    # model attribute name -> (task spec id, input type, allowed values)
    attributes: dict[str, tuple[int, str, tuple[str, ...]]]


LabelMap = dict[str, Target]


def compatible(model_type: str, task_type: str) -> bool:
    """CVAT's rule: the same type; ``any`` with anything but a skeleton; mask and polygon."""
    if model_type == task_type:
        return True
    if "skeleton" in (model_type, task_type):
        return False
    if "any" in (model_type, task_type):
        return True
    return {model_type, task_type} == {"mask", "polygon"}


def resolve(
    spec: FunctionSpec, labels: list[TaskLabel], mapping: Mapping[str, MappingEntry] | None
) -> LabelMap:
    """The label map of a call. A mapping to labels the task lacks, or from labels the model
    lacks, is a 400 naming them."""
    by_name = {label.name: label for label in labels}
    model = {label.name: label for label in spec.labels}
    result: LabelMap = {}
    if mapping is None:
        for name, mlabel in model.items():
            tlabel = by_name.get(name)
            if tlabel is not None and compatible(mlabel.type, tlabel.type):
                result[name] = Target(tlabel.id, tlabel.type, dict(tlabel.attributes))
        return result
    unknown_model = sorted(set(mapping) - set(model))
    if unknown_model:
        raise InvalidInput(
            f"The function {spec.id!r} has no labels named: {', '.join(unknown_model)}.",
            field="mapping",
        )
    missing = sorted({entry.name for entry in mapping.values()} - set(by_name))
    if missing:
        raise InvalidInput(f"The task has no labels named: {', '.join(missing)}.", field="mapping")
    for name, entry in mapping.items():
        tlabel = by_name[entry.name]
        mtype = model[name].type
        if not compatible(mtype, tlabel.type):
            raise InvalidInput(
                f"The model label {name!r} ({mtype}) cannot go to the task label "
                f"{tlabel.name!r} ({tlabel.type}).",
                field=f"mapping.{name}",
            )
        attrs: dict[str, tuple[int, str, tuple[str, ...]]] = {}
        if entry.attributes:
            lacking = sorted(set(entry.attributes.values()) - set(tlabel.attributes))
            if lacking:
                raise InvalidInput(
                    f"The task label {tlabel.name!r} has no attributes named: "
                    f"{', '.join(lacking)}.",
                    field=f"mapping.{name}.attributes",
                )
            attrs = {m: tlabel.attributes[t] for m, t in entry.attributes.items()}
        else:
            attrs = dict(tlabel.attributes)
        result[name] = Target(tlabel.id, tlabel.type, attrs)
    return result


def _attribute_vals(
    target: Target, given: Mapping[str, Any] | Iterable[Any] | None
) -> list[AttributeVal]:
    """Model attributes (``{name: value}`` or CVAT's ``[{name, value}]``) the task accepts."""
    if not given:
        return []
    pairs: Iterable[tuple[str, Any]]
    if isinstance(given, Mapping):
        pairs = given.items()
    else:
        pairs = ((a.get("name", ""), a.get("value", "")) for a in given if isinstance(a, dict))
    out = []
    for name, value in pairs:
        spec = target.attributes.get(str(name))
        if spec is None:
            continue
        spec_id, input_type, values = spec
        text = str(value).lower() if input_type == "checkbox" else str(value)
        if input_type in ("select", "radio") and values and text not in values:
            continue
        if input_type == "checkbox" and text not in ("true", "false"):
            continue
        if input_type == "number":
            try:
                low, high, _ = (float(v) for v in values)
                if not low <= float(text) <= high:
                    continue
            except ValueError:
                continue
        out.append(AttributeVal(spec_id=spec_id, value=text))
    return out


def _inside(points: list[float], roi: list[float] | None) -> bool:
    if roi is None or len(points) < 2:
        return True
    xs, ys = points[0::2], points[1::2]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    return roi[0] <= cx <= roi[2] and roi[1] <= cy <= roi[3]


def to_labeled_data(
    results: Iterable[tuple[int, list[dict[str, Any]]]],
    label_map: LabelMap,
    *,
    roi: list[float] | None = None,
) -> LabeledData:
    """Shapes (and tags) of ``(frame, model output)`` pairs, ``source: auto`` with the
    model's confidence as ``score``. Objects of unmapped labels, or outside ``roi`` (by
    their box centre), are dropped."""
    data = LabeledData()
    for frame, objects in results:
        for obj in objects:
            target = label_map.get(str(obj.get("label", "")))
            if target is None:
                continue
            score = min(1.0, max(0.0, float(obj.get("confidence", 1.0) or 0.0)))
            attributes = _attribute_vals(target, obj.get("attributes"))
            kind = str(obj.get("type", "rectangle"))
            if kind == "tag":
                data.tags.append(
                    LabeledImage(
                        label_id=target.label_id, frame=frame, source="auto", attributes=attributes
                    )
                )
                continue
            points = [float(p) for p in obj.get("points", [])]
            if kind == "mask" and obj.get("mask") is not None:
                points = [float(v) for v in obj["mask"]] + points[-4:]
            if not _inside(points[-4:] if kind == "mask" else points, roi):
                continue
            data.shapes.append(
                LabeledShape(
                    type=kind,  # type: ignore[arg-type]
                    points=points,
                    label_id=target.label_id,
                    frame=frame,
                    source="auto",
                    score=score,
                    attributes=attributes,
                )
            )
    return data
