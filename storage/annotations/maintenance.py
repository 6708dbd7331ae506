"""Keeping annotations consistent when labels and attribute specs change.

Annotation rows hold label ids in a column and attribute spec ids inside their JSON text
(``attributes``, and a track's keyframes). Deleting a label or a job deletes its annotations
through triggers (migration 0003); these functions cover the rest:

- a task moved into a project gets the project's labels: its annotations are re-pointed from
  the old label and spec ids to the new ones (:func:`remap`);
- an attribute spec that is deleted disappears from the annotations that used it
  (:func:`drop_attribute`), as CVAT's cascade does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Table, and_, or_, select, update
from sqlalchemy.orm import Session

from cvat_ray.storage.annotations.bulk import SHAPES, TAGS, TRACKS
from cvat_ray.storage.models import Job, Label, Task
from cvat_ray.storage.schemas.annotations import AttributeVal, TrackedShape, encode

_attrs = msgspec.json.Decoder(list[AttributeVal])
_keys = msgspec.json.Decoder(list[TrackedShape])

Edit = Callable[[list[AttributeVal]], list[AttributeVal]]


def _rewrite(session: Session, table: Table, condition: ColumnElement[bool], edit: Edit) -> None:
    has_keys = "shapes" in table.c
    columns = [table.c.id, table.c.attributes] + ([table.c.shapes] if has_keys else [])
    rows = session.execute(select(*columns).where(condition)).all()
    changes: list[dict[str, Any]] = []
    for row in rows:
        change: dict[str, Any] = {"row_id": row.id}
        if row.attributes != "[]":
            change["attributes"] = encode(edit(_attrs.decode(row.attributes))).decode()
        if has_keys and '"spec_id"' in row.shapes:
            keys = _keys.decode(row.shapes)
            for key in keys:
                key.attributes = edit(key.attributes)
            change["shapes"] = encode(keys).decode()
        if len(change) > 1:
            changes.append(change)
    for change in changes:
        values = {k: v for k, v in change.items() if k != "row_id"}
        session.execute(update(table).where(table.c.id == change["row_id"]).values(**values))


def _jobs_of_task(task_id: int) -> ColumnElement[bool]:
    return Job.task_id == task_id


def remap(
    session: Session, task_id: int, labels: Mapping[int, int], attributes: Mapping[int, int]
) -> None:
    """Re-point a task's annotations to new label and attribute spec ids."""
    job_ids = select(Job.id).where(Job.task_id == task_id).scalar_subquery()
    for table in (TAGS, SHAPES, TRACKS):
        for old, new in labels.items():
            session.execute(
                update(table)
                .where(table.c.job_id.in_(job_ids), table.c.label_id == old)
                .values(label_id=new)
            )
        if attributes:

            def edit(values: list[AttributeVal]) -> list[AttributeVal]:
                for a in values:
                    a.spec_id = attributes.get(a.spec_id, a.spec_id)
                return values

            has_any = table.c.attributes != "[]"
            if "shapes" in table.c:
                has_any = or_(has_any, table.c.shapes.contains('"spec_id"'))
            _rewrite(session, table, and_(table.c.job_id.in_(job_ids), has_any), edit)


def drop_attribute(session: Session, label: Label, spec_id: int) -> None:
    """Remove a deleted attribute spec's values from the annotations of its label."""
    if label.task_id is not None:
        tasks: Sequence[int] = [label.task_id]
    else:
        tasks = session.scalars(select(Task.id).where(Task.project_id == label.project_id)).all()
    if not tasks:
        return
    job_ids = select(Job.id).where(Job.task_id.in_(tasks)).scalar_subquery()
    needle = f'"spec_id":{spec_id},'

    def edit(values: list[AttributeVal]) -> list[AttributeVal]:
        return [a for a in values if a.spec_id != spec_id]

    for table in (TAGS, SHAPES, TRACKS):
        mentions = table.c.attributes.contains(needle)
        if "shapes" in table.c:
            mentions = or_(mentions, table.c.shapes.contains(needle))
        _rewrite(
            session,
            table,
            and_(table.c.job_id.in_(job_ids), table.c.label_id == label.id, mentions),
            edit,
        )
