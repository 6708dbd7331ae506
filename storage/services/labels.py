"""Labels of tasks and projects: validation, creation, patching, reading, ``/api/labels``."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.storage import changes
from cvat_ray.storage.annotations import maintenance as annotation_maintenance
from cvat_ray.storage.models import AttributeSpec, Label, Project, Task, utcnow
from cvat_ray.storage.schemas.labels import (
    AttributeRead,
    AttributeWrite,
    LabelPatch,
    LabelRead,
    LabelWrite,
    SublabelRead,
)

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
# Distinct colours handed out in order when a label comes without one.
_PALETTE = (
    "#33ddff", "#fa3253", "#34d1b7", "#ff007c", "#ff6037", "#ddff33", "#24b353", "#b83df5",
    "#66ff66", "#32b7fa", "#ffcc33", "#83e070", "#fafa37", "#5986b3", "#8c78f0", "#ff6a4d",
)  # fmt: skip


@dataclass(frozen=True)
class LabelOwner:
    """Labels belong to a task or to a project, never both."""

    task_id: int | None = None
    project_id: int | None = None
    # who changes the labels (their create/update/delete:label events name them)
    actor: changes.Actor = field(default_factory=changes.Actor, compare=False)

    def condition(self) -> ColumnElement[bool]:
        if self.task_id is not None:
            return Label.task_id == self.task_id
        return Label.project_id == self.project_id


def owner_of(task: Task) -> LabelOwner:
    """The labels a task uses: its project's when it has one."""
    if task.project_id is not None:
        return LabelOwner(project_id=task.project_id)
    return LabelOwner(task_id=task.id)


# --------------------------------------------------------------------------- validation


def _at(where: str, field: str) -> str:
    """The path of a field for error messages (``labels[2].attributes[0].values``)."""
    return f"{where}.{field}" if where else field


def _check_attribute(a: AttributeWrite, where: str) -> tuple[str, list[str]]:
    """Validate one new or fully specified attribute; returns (default_value, values)."""
    if a.name is None or a.input_type is None or a.values is None:
        missing = [f for f in ("name", "input_type", "values") if getattr(a, f) is None]
        raise InvalidInput({_at(where, f): ["This field is required."] for f in missing})
    values = [v.strip() for v in a.values]
    if any(len(v) > 200 for v in values):
        raise InvalidInput(
            "Each value may have at most 200 characters.", field=_at(where, "values")
        )
    default = a.default_value
    match a.input_type:
        case "select" | "radio":
            if not values or any(not v for v in values):
                raise InvalidInput(
                    "A select or radio attribute needs non-empty values.",
                    field=_at(where, "values"),
                )
            if len(set(values)) != len(values):
                raise InvalidInput("Values must be unique.", field=_at(where, "values"))
            if default in (None, ""):
                default = values[0]
            if default not in values:
                raise InvalidInput(
                    "default_value must be one of the values.", field=_at(where, "default_value")
                )
        case "checkbox":
            if len(values) > 1 or any(v.lower() not in ("true", "false") for v in values):
                raise InvalidInput(
                    "A checkbox attribute takes one value, 'true' or 'false'.",
                    field=_at(where, "values"),
                )
            values = [v.lower() for v in values] or ["false"]
            default = (default or values[0]).lower()
            if default not in ("true", "false"):
                raise InvalidInput(
                    "default_value must be 'true' or 'false'.", _at(where, "default_value")
                )
        case "number":
            try:
                low, high, step = (float(v) for v in values)
            except ValueError as exc:
                raise InvalidInput(
                    "A number attribute takes three numbers: min, max, step.",
                    field=_at(where, "values"),
                ) from exc
            if low > high or step <= 0 or step > high - low + (1 if low == high else 0):
                raise InvalidInput(
                    "Number values need min <= max and 0 < step <= max - min.",
                    field=_at(where, "values"),
                )
            if default in (None, ""):
                default = values[0]
            try:
                dv = float(default)
            except ValueError as exc:
                raise InvalidInput(
                    "default_value must be a number.", _at(where, "default_value")
                ) from exc
            if not low <= dv <= high:
                raise InvalidInput(
                    "default_value must lie between min and max.", field=_at(where, "default_value")
                )
        case "text":
            default = default if default is not None else (values[0] if values else "")
            values = [default] if default else []
    assert default is not None
    if len(default) > 128:
        raise InvalidInput("At most 128 characters.", field=_at(where, "default_value"))
    return default, values


def _check_unique(names: Sequence[str], where: str, what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InvalidInput(f"Duplicate {what} name {name!r}.", field=where)
        seen.add(name)


def _check_color(color: str | None, where: str) -> None:
    if color and not _COLOR.match(color):
        raise InvalidInput("Color must look like #rrggbb.", field=_at(where, "color"))


# --------------------------------------------------------------------------- writes


def _insert_attributes(
    session: Session, label_id: int, attrs: Iterable[AttributeWrite], where: str
) -> None:
    attrs = list(attrs)
    _check_unique([a.name or "" for a in attrs], _at(where, "attributes"), "attribute")
    for i, a in enumerate(attrs):
        if a.id is not None:
            raise InvalidInput(
                "A new attribute must not have an id.", field=_at(where, f"attributes[{i}].id")
            )
        default, values = _check_attribute(a, _at(where, f"attributes[{i}]"))
        assert a.name is not None and a.input_type is not None
        session.add(
            AttributeSpec(
                label_id=label_id,
                name=a.name,
                mutable=bool(a.mutable),
                input_type=a.input_type,
                default_value=default,
                values="\n".join(values),
            )
        )


def _insert_label(
    session: Session,
    owner: LabelOwner,
    data: LabelWrite,
    where: str,
    color_index: int,
    parent_id: int | None = None,
) -> Label:
    if data.name is None:
        raise InvalidInput("This field is required.", field=_at(where, "name"))
    _check_color(data.color, where)
    label_type = data.type or "any"
    if data.sublabels and label_type != "skeleton":
        raise InvalidInput("Only skeleton labels have sublabels.", field=_at(where, "sublabels"))
    if label_type == "skeleton":
        if parent_id is not None:
            raise InvalidInput("A skeleton cannot contain a skeleton.", field=_at(where, "type"))
        if not data.sublabels:
            raise InvalidInput("A skeleton label needs sublabels.", field=_at(where, "sublabels"))
    label = Label(
        task_id=owner.task_id,
        project_id=owner.project_id,
        parent_id=parent_id,
        name=data.name,
        color=data.color or _PALETTE[color_index % len(_PALETTE)],
        type=label_type,
        svg=data.svg or "",
    )
    session.add(label)
    session.flush()
    record_label(session, owner, "create", after=label_snapshot(label))
    _insert_attributes(session, label.id, data.attributes, where)
    if data.sublabels:
        _check_unique([s.name or "" for s in data.sublabels], _at(where, "sublabels"), "sublabel")
        for j, sub in enumerate(data.sublabels):
            if sub.id is not None:
                raise InvalidInput(
                    "A new sublabel must not have an id.", _at(where, f"sublabels[{j}].id")
                )
            _insert_label(
                session, owner, sub, _at(where, f"sublabels[{j}]"), color_index + j + 1, label.id
            )
    return label


def label_snapshot(label: Label) -> dict[str, Any]:
    return {
        "id": label.id,
        "name": label.name,
        "color": label.color,
        "type": label.type,
        "svg": label.svg,
        "parent_id": label.parent_id,
        "task_id": label.task_id,
        "project_id": label.project_id,
    }


def record_label(
    session: Session,
    owner: LabelOwner,
    action: str,
    *,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
) -> None:
    """A ``create|update|delete:label`` domain change (ids resolved from the owner)."""
    if owner.task_id is not None:
        row = session.execute(
            select(Task.organization_id, Task.project_id).where(Task.id == owner.task_id)
        ).first()
        org_id, project_id = (row[0], row[1]) if row else (None, None)
    else:
        org_id = session.scalar(
            select(Project.organization_id).where(Project.id == owner.project_id)
        )
        project_id = owner.project_id
    changes.record(
        session,
        changes.Change(
            action=action,
            resource="label",
            after=after,
            before=before,
            scope_ids=changes.Scope(org_id=org_id, project_id=project_id, task_id=owner.task_id),
            actor=owner.actor,
        ),
    )


def create_labels(session: Session, owner: LabelOwner, labels: Sequence[LabelWrite]) -> None:
    """Add new labels to a task or project (names must not clash with existing ones)."""
    existing = set(
        session.scalars(select(Label.name).where(owner.condition(), Label.parent_id.is_(None)))
    )
    count = len(existing)
    names = [lbl.name or "" for lbl in labels if not lbl.deleted]
    _check_unique([*existing, *names], "labels", "label")
    for i, data in enumerate(labels):
        if data.id is not None:
            raise InvalidInput("A new label must not have an id.", field=f"labels[{i}].id")
        _insert_label(session, owner, data, f"labels[{i}]", count + i)


def patch_labels(session: Session, owner: LabelOwner, labels: Sequence[LabelWrite]) -> None:
    """CVAT's label PATCH inside a task or project: ``id`` updates, ``deleted`` removes,
    no ``id`` adds."""
    new = [lbl for lbl in labels if lbl.id is None]
    for i, data in enumerate(labels):
        if data.id is None:
            continue
        label = session.get(Label, data.id)
        if label is None or not _belongs(label, owner) or label.parent_id is not None:
            raise InvalidInput(f"Label {data.id} does not belong here.", field=f"labels[{i}].id")
        if data.deleted:
            record_label(session, owner, "delete", before=label_snapshot(label))
            session.delete(label)
            continue
        update_label(session, owner, label, data, f"labels[{i}]")
    session.flush()
    if new:
        create_labels(session, owner, new)


def _belongs(label: Label, owner: LabelOwner) -> bool:
    if owner.task_id is not None:
        return label.task_id == owner.task_id
    return label.project_id == owner.project_id


def update_label(
    session: Session,
    owner: LabelOwner,
    label: Label,
    data: LabelWrite | LabelPatch,
    where: str = "",
) -> None:
    """Change a label's name, colour, type, svg, attributes and sublabels in place."""
    before = label_snapshot(label)
    _update_label(session, owner, label, data, where)
    after = label_snapshot(label)
    if after != before:
        record_label(session, owner, "update", after=after, before=before)


def _update_label(
    session: Session,
    owner: LabelOwner,
    label: Label,
    data: LabelWrite | LabelPatch,
    where: str,
) -> None:
    if data.name is not None and data.name != label.name:
        clash = session.scalar(
            select(Label.id).where(
                owner.condition(),
                Label.name == data.name,
                Label.id != label.id,
                Label.parent_id.is_(None)
                if label.parent_id is None
                else Label.parent_id == label.parent_id,
            )
        )
        if clash is not None:
            raise InvalidInput(f"Duplicate label name {data.name!r}.", field=_at(where, "name"))
        label.name = data.name
    if data.color is not None:
        _check_color(data.color, where)
        label.color = data.color
    if data.type is not None and data.type != label.type:
        if (data.type == "skeleton") != (label.type == "skeleton"):
            raise InvalidInput(
                "A label cannot change to or from a skeleton.", field=_at(where, "type")
            )
        label.type = data.type
    if data.svg is not None:
        label.svg = data.svg
    _patch_attributes(session, label, data.attributes, where)
    for j, sub in enumerate(data.sublabels):
        sub_where = _at(where, f"sublabels[{j}]")
        if sub.id is None:
            if label.type != "skeleton":
                raise InvalidInput("Only skeleton labels have sublabels.", field=sub_where)
            _insert_label(session, owner, sub, sub_where, j, label.id)
            continue
        child = session.get(Label, sub.id)
        if child is None or child.parent_id != label.id:
            raise InvalidInput(f"Sublabel {sub.id} does not belong to this label.", sub_where)
        if sub.deleted:
            session.delete(child)
        else:
            update_label(session, owner, child, sub, sub_where)


def _patch_attributes(
    session: Session, label: Label, attrs: Sequence[AttributeWrite], where: str
) -> None:
    if not attrs:
        return
    current = {
        a.id: a
        for a in session.scalars(select(AttributeSpec).where(AttributeSpec.label_id == label.id))
    }
    new: list[AttributeWrite] = []
    for i, a in enumerate(attrs):
        aw = _at(where, f"attributes[{i}]")
        if a.id is None:
            new.append(a)
            continue
        spec = current.get(a.id)
        if spec is None:
            raise InvalidInput(
                f"Attribute {a.id} does not belong to this label.", field=_at(aw, "id")
            )
        if a.deleted:
            annotation_maintenance.drop_attribute(session, label, spec.id)
            session.delete(spec)
            del current[a.id]
            continue
        merged = AttributeWrite(
            name=a.name if a.name is not None else spec.name,
            mutable=a.mutable if a.mutable is not None else spec.mutable,
            input_type=a.input_type or spec.input_type,
            default_value=a.default_value if a.default_value is not None else spec.default_value,
            values=a.values if a.values is not None else _split(spec.values),
        )
        default, values = _check_attribute(merged, aw)
        assert merged.name is not None and merged.input_type is not None
        spec.name, spec.mutable, spec.input_type = (
            merged.name,
            bool(merged.mutable),
            merged.input_type,
        )
        spec.default_value, spec.values = default, "\n".join(values)
    names = [s.name for s in current.values()] + [a.name or "" for a in new]
    _check_unique(names, _at(where, "attributes"), "attribute")
    session.flush()
    _insert_attributes(session, label.id, new, where)


def _split(values: str) -> list[str]:
    return values.split("\n") if values else []


@dataclass(frozen=True)
class LabelMapping:
    """Old -> new ids when a task's labels are replaced by its new project's labels."""

    labels: dict[int, int]
    attributes: dict[int, int]


def move_task_labels(session: Session, task_id: int, project_id: int) -> LabelMapping:
    """Match a task's labels, sublabels and attributes to a project's by name, then drop the
    task's own. Every task label must exist in the project (400 names the missing ones)."""

    def index(
        owner: ColumnElement[bool],
    ) -> tuple[dict[tuple[str, ...], int], dict[int, tuple[str, ...]]]:
        rows = session.execute(select(Label.id, Label.name, Label.parent_id).where(owner)).all()
        names = {r.id: r.name for r in rows}
        by_key: dict[tuple[str, ...], int] = {}
        key_of: dict[int, tuple[str, ...]] = {}
        for r in rows:
            key = (names[r.parent_id], r.name) if r.parent_id else (r.name,)
            by_key[key] = r.id
            key_of[r.id] = key
        return by_key, key_of

    project_labels, _ = index(Label.project_id == project_id)
    _, task_keys = index(Label.task_id == task_id)
    missing = sorted("/".join(k) for k in task_keys.values() if k not in project_labels)
    if missing:
        raise InvalidInput(
            f"The project lacks these labels of the task: {', '.join(missing)}", field="project_id"
        )
    label_map = {old: project_labels[key] for old, key in task_keys.items()}
    attributes: dict[int, int] = {}
    if label_map:
        new_attrs = {
            (a.label_id, a.name): a.id
            for a in session.scalars(
                select(AttributeSpec).where(AttributeSpec.label_id.in_(label_map.values()))
            )
        }
        for a in session.scalars(
            select(AttributeSpec).where(AttributeSpec.label_id.in_(label_map))
        ):
            target = new_attrs.get((label_map[a.label_id], a.name))
            if target is None:
                raise InvalidInput(
                    f"The project's label lacks the attribute {a.name!r}.", field="project_id"
                )
            attributes[a.id] = target
    # Before the task's labels go (their trigger would delete the annotations with them).
    annotation_maintenance.remap(session, task_id, label_map, attributes)
    for label in session.scalars(
        select(Label).where(Label.task_id == task_id, Label.parent_id.is_(None))
    ):
        session.delete(label)
    session.flush()
    return LabelMapping(labels=label_map, attributes=attributes)


def touch_owner(session: Session, owner: LabelOwner) -> None:
    """Label changes count as changes of their task or project (SDK caches key on it)."""
    now = utcnow()
    if owner.task_id is not None:
        task = session.get(Task, owner.task_id)
        if task is not None:
            task.updated_date = now
    elif owner.project_id is not None:
        project = session.get(Project, owner.project_id)
        if project is not None:
            project.updated_date = now


# --------------------------------------------------------------------------- reads


def read_labels(session: Session, labels: Sequence[Label]) -> list[LabelRead]:
    """Wire form of top-level labels, with attributes and sublabels, in three queries."""
    if not labels:
        return []
    ids = [lbl.id for lbl in labels]
    children = session.scalars(
        select(Label).where(Label.parent_id.in_(ids)).order_by(Label.id)
    ).all()
    all_ids = ids + [c.id for c in children]
    attrs: dict[int, list[AttributeRead]] = defaultdict(list)
    for spec in session.scalars(
        select(AttributeSpec).where(AttributeSpec.label_id.in_(all_ids)).order_by(AttributeSpec.id)
    ):
        attrs[spec.label_id].append(
            AttributeRead(
                id=spec.id,
                name=spec.name,
                mutable=spec.mutable,
                input_type=spec.input_type,
                default_value=spec.default_value,
                values=_split(spec.values),
            )
        )
    subs: dict[int, list[SublabelRead]] = defaultdict(list)
    for c in children:
        assert c.parent_id is not None
        subs[c.parent_id].append(
            SublabelRead(
                id=c.id,
                name=c.name,
                color=c.color,
                type=c.type,
                attributes=attrs[c.id],
            )
        )
    return [
        LabelRead(
            id=lbl.id,
            name=lbl.name,
            color=lbl.color,
            type=lbl.type,
            svg=lbl.svg,
            attributes=attrs[lbl.id],
            sublabels=subs[lbl.id],
            has_parent=lbl.parent_id is not None,
            parent_id=lbl.parent_id,
            task_id=lbl.task_id,
            project_id=lbl.project_id,
        )
        for lbl in labels
    ]


def get_label(session: Session, label_id: int) -> Label:
    label = session.get(Label, label_id)
    if label is None:
        raise NotFound("Label not found.")
    return label
