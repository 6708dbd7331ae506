"""Annotation storage on SQLite and PostgreSQL: bulk rows, ids, the delete triggers."""

from __future__ import annotations

from sqlalchemy import delete, func, select

from cvat_ray.storage.annotations import bulk, reads
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Job, Label, LabeledShape, LabeledTag, Task
from cvat_ray.storage.schemas.annotations import (
    AttributeVal,
    LabeledData,
    LabeledImage,
    SubLabeledShape,
)
from cvat_ray.storage.schemas.annotations import (
    LabeledShape as Shape,
)
from cvat_ray.storage.services.task_data import FrameInfo, attach_data
from cvat_ray.storage.services.users import create_user


def _task(db: Database) -> tuple[int, int, int]:
    with db.session() as session:
        user = create_user(session, username="owner", password="Secret-pass-123")
        task = Task(name="t", owner_id=user.id, segment_size=5)
        session.add(task)
        session.flush()
        label = Label(task_id=task.id, name="cat", type="any")
        session.add(label)
        attach_data(session, task, [FrameInfo(f"{i}.jpg", 10, 10) for i in range(10)])
        job_id = session.scalars(select(Job.id).where(Job.task_id == task.id)).first()
        assert job_id is not None
        return task.id, job_id, label.id


def _payload(label: int) -> LabeledData:
    text = 'tab\there "quote" back\\slash \\N newline\n'
    return LabeledData(
        tags=[LabeledImage(frame=1, label_id=label, attributes=[AttributeVal(1, text)])],
        shapes=[
            Shape(
                type="skeleton",
                frame=2,
                label_id=label,
                elements=[SubLabeledShape(type="points", frame=2, label_id=label, points=[1, 2])],
            ),
            Shape(type="rectangle", frame=0, label_id=label, points=[0.1, 0.2, 3e-7, 1e10]),
        ],
    )


def test_rows_round_trip_with_unique_ids(db: Database) -> None:
    _, job_id, label = _task(db)
    with db.session() as session:
        ids = bulk.IdAllocator(session)
        # the write path takes the job row (SQLite's write lock) before allocating ids
        session.execute(select(Job).where(Job.id == job_id).with_for_update())
        first, second = _payload(label), _payload(label)
        bulk.assign_ids(first, ids)
        bulk.assign_ids(second, ids)
        rows = bulk.rows_for(job_id, first, bulk.new_rows(session))
        bulk.rows_for(job_id, second, rows)
        bulk.insert_rows(session, rows)
    shape_ids = [s.id for d in (first, second) for s in d.shapes] + [
        e.id for d in (first, second) for s in d.shapes for e in s.elements
    ]
    assert len(set(shape_ids)) == 6
    with db.session() as session:
        reads.begin_snapshot(session)
        tags = reads.load_section(session, "tags", job_id)
        shapes = reads.load_section(session, "shapes", job_id)
    assert [t.attributes[0].value for t in tags] == [first.tags[0].attributes[0].value] * 2
    assert [s.frame for s in shapes] == [0, 0, 2, 2]  # frame order
    assert shapes[0].points == [0.1, 0.2, 3e-7, 1e10]
    assert [len(s.elements) for s in shapes] == [0, 0, 1, 1]
    with db.session() as session:
        bulk.delete_ids(session, bulk.SHAPES, [first.shapes[0].id or 0])
        left = session.scalar(select(func.count()).select_from(LabeledShape))
    assert left == 4  # the skeleton went with its element


def test_deleting_a_job_or_a_label_deletes_its_annotations(db: Database) -> None:
    _, job_id, label = _task(db)
    with db.session() as session:
        data = _payload(label)
        session.execute(select(Job).where(Job.id == job_id).with_for_update())
        bulk.assign_ids(data, bulk.IdAllocator(session))
        bulk.insert_rows(session, bulk.rows_for(job_id, data, bulk.new_rows(session)))
    with db.session() as session:
        session.execute(delete(Label).where(Label.id == label))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(LabeledShape)) == 0
        assert session.scalar(select(func.count()).select_from(LabeledTag)) == 0

    _, job_id, label = _task_again(db)
    with db.session() as session:
        data = _payload(label)
        session.execute(select(Job).where(Job.id == job_id).with_for_update())
        bulk.assign_ids(data, bulk.IdAllocator(session))
        bulk.insert_rows(session, bulk.rows_for(job_id, data, bulk.new_rows(session)))
    with db.session() as session:
        session.execute(delete(Job).where(Job.id == job_id))
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(LabeledShape)) == 0


def _task_again(db: Database) -> tuple[int, int, int]:
    with db.session() as session:
        task = Task(name="t2", segment_size=5)
        session.add(task)
        session.flush()
        label = Label(task_id=task.id, name="dog", type="any")
        session.add(label)
        attach_data(session, task, [FrameInfo(f"{i}.jpg", 10, 10) for i in range(10)])
        job_id = session.scalars(select(Job.id).where(Job.task_id == task.id)).first()
        assert job_id is not None
        return task.id, job_id, label.id
