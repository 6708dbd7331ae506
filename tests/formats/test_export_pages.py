"""A large export's pages made by forked processes (PostgreSQL): the same archive as made
in the worker's thread, read from the export's snapshot (what is written meanwhile is not
in it), and a cancel ends the processes."""

from __future__ import annotations

import asyncio
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pycocotools.coco import COCO
from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.annotations import bulk, reads
from cvat_ray.storage.db import Database
from cvat_ray.storage.formats import forked, masks, registry
from cvat_ray.storage.formats.archive import ZipOut
from cvat_ray.storage.formats.source import task_dataset
from cvat_ray.storage.models import Data, Job, Label, Task
from cvat_ray.storage.schemas.annotations import LabeledData, LabeledShape
from cvat_ray.storage.services.task_data import FrameInfo, attach_data
from tests.conftest import Account
from tests.factories import LABELS

pytestmark = [
    pytest.mark.skipif(not forked.available(), reason="no os.fork"),
    pytest.mark.parametrize("db", ["postgresql"], indirect=True),
]

FRAMES = 700
JOBS = [(0, 249), (250, 499), (500, 699)]
DELETED = [3, 300, 640]


async def _task(api: httpx.AsyncClient, db: Database) -> int:
    r = await api.post("/api/tasks", json={"name": "pages", "labels": LABELS})
    assert r.status_code == 201, r.text
    task_id = int(r.json()["id"])
    with db.session() as session:
        task = session.get(Task, task_id)
        assert task is not None
        frames = [FrameInfo(f"dir/img_{i:04}.jpg", 64 + i % 3, 48) for i in range(FRAMES)]
        attach_data(session, task, frames, job_ranges=JOBS)
        data = session.get(Data, task.data_id)
        assert data is not None
        data.deleted_frames = DELETED
    labels = (await api.get(f"/api/labels?task_id={task_id}&page_size=100")).json()["results"]
    r = await api.put(f"/api/tasks/{task_id}/annotations/", json=_annotations(labels))
    assert r.status_code == 200, r.text
    return task_id


def _annotations(labels: list[dict[str, Any]]) -> dict[str, Any]:
    by = {lb["name"]: lb for lb in labels}
    cat, dog, person = by["cat"]["id"], by["dog"]["id"], by["person"]["id"]
    specs = {a["name"]: a["id"] for a in by["dog"]["attributes"]}
    head, hand = (
        next(s["id"] for s in by["person"]["sublabels"] if s["name"] == n) for n in ("head", "hand")
    )
    bitmap = np.zeros((48, 64), np.uint8)
    bitmap[5:20, 10:30] = 1
    mask = masks.bitmap_to_cvat(bitmap)
    shapes: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    for f in range(0, FRAMES, 3):
        x = f % 40
        shapes.append({"type": "rectangle", "frame": f, "label_id": dog, "points": [x, 1, x + 9.5, 20],
                       "z_order": f % 4, "occluded": f % 2 == 0, "attributes": [
                           {"spec_id": specs["color"], "value": "b"},
                           {"spec_id": specs["note"], "value": f"50% off, %d {f}"}]})  # fmt: skip
        shapes.append({"type": "polygon", "frame": f, "label_id": cat,
                       "points": [x, 1, x + 20, 1, x + 20, 15, x, 15]})  # fmt: skip
        if f % 9 == 0:
            shapes.append({"type": "mask", "frame": f, "label_id": cat, "points": mask})
            shapes.append({"type": "points", "frame": f, "label_id": dog, "points": [3, 4]})
            shapes.append({"type": "skeleton", "frame": f, "label_id": person, "points": [],
                           "elements": [
                               {"type": "points", "frame": f, "label_id": head, "points": [10, 10]},
                               {"type": "points", "frame": f, "label_id": hand, "points": [12, 20]},
                           ]})  # fmt: skip
            tags.append({"frame": f, "label_id": cat, "attributes": []})
    # tracks across pages and jobs (a job's tracks are cut at its end, as CVAT does)
    tracks = [
        {"frame": first, "label_id": cat, "shapes": [
            {"type": "rectangle", "frame": first, "points": [0, 0, 10, 10]},
            {"type": "rectangle", "frame": first + 60, "points": [20, 10, 40, 30]},
            {"type": "rectangle", "frame": first + 100, "points": [20, 10, 40, 30],
             "outside": True}]}
        for first in (0, 100, 120, 260, 380, 520)
    ]  # fmt: skip
    return {"shapes": shapes, "tags": tags, "tracks": tracks}


def _export(
    db: Database,
    settings: Settings,
    task_id: int,
    fmt: str,
    path: Path,
    meanwhile: Callable[[], None] | None = None,
) -> dict[str, bytes]:
    """The archive's members, exported as the export worker does."""
    with db.session() as session:
        reads.begin_snapshot(session)
        task = session.get(Task, task_id)  # the snapshot is taken here
        assert task is not None
        dataset = task_dataset(session, settings, task)
        if meanwhile is not None:
            meanwhile()
        with ZipOut(path) as out:
            registry.exporter(fmt).write(dataset, out, fmt, False)
    with zipfile.ZipFile(path) as zf:
        return {
            # CVAT XML says when it was dumped
            name: re.sub(rb"<dumped>[^<]*</dumped>", b"", zf.read(name))
            for name in zf.namelist()
        }


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The process counts of the forked page runs."""
    runs: list[int] = []
    real = forked.pages_in_children

    def spy(count: int, make: Any, kind: Any, processes: int, before: Any = None) -> Iterator[Any]:
        runs.append(processes)
        return real(count, make, kind, processes, before)

    monkeypatch.setattr(forked, "pages_in_children", spy)
    return runs


@pytest.mark.parametrize("fmt", ["COCO 1.0", "CVAT for images 1.1"])
async def test_forked_pages_make_the_same_archive(
    client_for: Any,
    alice: Account,
    db: Database,
    settings: Settings,
    tmp_path: Path,
    spied: list[int],
    fmt: str,
) -> None:
    task_id = await _task(client_for(alice), db)
    settings.datasets.fork_export_from_frames = 0
    settings.datasets.export_processes = 0
    here = await asyncio.to_thread(_export, db, settings, task_id, fmt, tmp_path / "here.zip")
    assert spied == []
    for processes in (2, 3):
        settings.datasets.export_processes = processes
        made = await asyncio.to_thread(_export, db, settings, task_id, fmt, tmp_path / "f.zip")
        assert made == here
    assert spied == [2, 3]
    if fmt == "COCO 1.0":
        (name,) = here
        path = tmp_path / "instances.json"
        path.write_bytes(here[name])
        coco = COCO(str(path))
        anns = coco.loadAnns(coco.getAnnIds())
        assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
        assert len(coco.getImgIds()) == FRAMES - len(DELETED)
        notes = {a["attributes"]["note"] for a in anns if "note" in a["attributes"]}
        assert "50% off, %d 699" in notes
        # each annotation on its own image: the one named by its frame
        files = {i["id"]: i["file_name"] for i in coco.loadImgs(coco.getImgIds())}
        for a in anns:
            if "note" in a["attributes"]:
                frame = int(a["attributes"]["note"].rsplit(" ", 1)[1])
                assert files[a["image_id"]] == f"dir/img_{frame:04}.jpg"


async def test_forked_pages_read_the_exports_snapshot(
    client_for: Any, alice: Account, db: Database, settings: Settings, tmp_path: Path
) -> None:
    task_id = await _task(client_for(alice), db)
    settings.datasets.fork_export_from_frames = 0
    fmt = "COCO 1.0"
    before = await asyncio.to_thread(_export, db, settings, task_id, fmt, tmp_path / "a.zip")

    def meanwhile() -> None:
        # a shape on every job, committed after the export's snapshot was taken
        with db.session() as session:
            jobs = session.scalars(select(Job.id).where(Job.task_id == task_id)).all()
            cat = _cat(session, task_id)
            for job_id, (start, _) in zip(sorted(jobs), JOBS, strict=True):
                box = LabeledShape(
                    type="rectangle", frame=start + 100, label_id=cat, points=[1, 1, 5, 5]
                )
                data = LabeledData(shapes=[box])
                ids = bulk.IdAllocator(session)
                bulk.assign_ids(data, ids)
                bulk.insert_rows(session, bulk.rows_for(job_id, data, bulk.new_rows(session)))

    during = await asyncio.to_thread(
        _export, db, settings, task_id, fmt, tmp_path / "b.zip", meanwhile
    )
    assert during == before
    after = await asyncio.to_thread(_export, db, settings, task_id, fmt, tmp_path / "c.zip")
    (name,) = after
    count = len(json.loads(after[name])["annotations"])
    assert count == len(json.loads(before[name])["annotations"]) + len(JOBS)


def _cat(session: Session, task_id: int) -> int:
    query = select(Label.id).where(Label.task_id == task_id, Label.name == "cat")
    return int(session.scalars(query).one())


async def test_cancelling_a_forked_export_ends_its_processes(
    client_for: Any, alice: Account, db: Database, settings: Settings, tmp_path: Path
) -> None:
    from tests.formats.test_forked import _children

    task_id = await _task(client_for(alice), db)
    settings.datasets.fork_export_from_frames = 0
    seen: list[int] = []

    class Cancelled(Exception):
        pass

    def export() -> None:
        with db.session() as session:
            reads.begin_snapshot(session)
            task = session.get(Task, task_id)
            assert task is not None
            dataset = task_dataset(session, settings, task)

            def on_page(share: float) -> None:
                seen.append(len(_children()))
                raise Cancelled

            dataset.on_page = on_page
            with ZipOut(tmp_path / "x.zip") as out:
                registry.exporter("COCO 1.0").write(dataset, out, "COCO 1.0", False)

    before = _children()
    with pytest.raises(Cancelled):
        await asyncio.to_thread(export)
    assert seen and seen[0] >= len(before) + 2
    assert _children() == before
