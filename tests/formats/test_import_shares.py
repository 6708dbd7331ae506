"""A large COCO import read in shares by forked processes (PostgreSQL): each share's rows
are made (and their ids taken) in its process, the worker writes them. The annotations are
those of the import read by one process; a file that cannot be divided is read whole; a
share's bad annotation fails the import with nothing written and no process left."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.formats import forked, jsonarray
from tests.conftest import Account
from tests.factories import import_file
from tests.formats.test_export_pages import _export, _task
from tests.formats.test_forked import _children

pytestmark = [
    pytest.mark.skipif(not forked.available(), reason="no os.fork"),
    pytest.mark.parametrize("db", ["postgresql"], indirect=True),
]


@pytest.fixture
def shares(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Pieces of a few kilobytes (dozens per file), and the number of shares of each
    divided read."""
    monkeypatch.setattr(jsonarray, "BLOCK", 3000)
    runs: list[int] = []
    real = forked.streams_in_children

    def spy(makers: list[Any], *args: Any, **kwargs: Any) -> Any:
        runs.append(len(makers))
        return real(makers, *args, **kwargs)

    monkeypatch.setattr(forked, "streams_in_children", spy)
    return runs


def _plain(objects: list[dict[str, Any]]) -> list[Any]:
    """Objects without their ids, in a stable order."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "id"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return sorted((strip(o) for o in objects), key=lambda o: json.dumps(o, sort_keys=True))


async def _imported(api: Any, task_id: int, archive: bytes) -> dict[str, Any]:
    body = await import_file(api, "task", task_id, "COCO 1.0", "coco.zip", archive)
    assert body["status"] == "finished", body
    got = (await api.get(f"/api/tasks/{task_id}/annotations/")).json()
    ids = [s["id"] for s in got["shapes"]] + [t["id"] for t in got["tags"]]
    assert len(ids) == len(set(ids))
    return {"shapes": _plain(got["shapes"]), "tags": _plain(got["tags"])}


@pytest.fixture
async def coco(
    client_for: Any, alice: Account, db: Database, settings: Settings, tmp_path: Path
) -> tuple[Any, int, bytes]:
    """A client, a task with annotations and its COCO export; imports forked whatever
    their size."""
    api = client_for(alice)
    task_id = await _task(api, db)
    await asyncio.to_thread(_export, db, settings, task_id, "COCO 1.0", tmp_path / "c.zip")
    settings.datasets.fork_reader_from_bytes = 0
    return api, task_id, (tmp_path / "c.zip").read_bytes()


async def test_shares_import_what_one_process_imports(
    coco: tuple[Any, int, bytes],
    settings: Settings,
    shares: list[int],
) -> None:
    api, task_id, archive = coco
    settings.datasets.import_processes = 1
    whole = await _imported(api, task_id, archive)
    assert shares == []
    assert len(whole["shapes"]) > 500
    for processes in (2, 3):
        settings.datasets.import_processes = processes
        assert await _imported(api, task_id, archive) == whole
    assert shares == [2, 3]


def _rewrite(archive: bytes, change: Any) -> bytes:
    """The archive with its COCO file's JSON changed by ``change``."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        (name,) = zf.namelist()
        doc = json.loads(zf.read(name))
    change(doc)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(name, json.dumps(doc))
    return out.getvalue()


async def test_a_file_that_cannot_be_divided_is_read_whole(
    coco: tuple[Any, int, bytes],
    settings: Settings,
    shares: list[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api, task_id, archive = coco

    def braces(doc: dict[str, Any]) -> None:
        # a separator of elements inside every note: the pieces are cut inside strings
        for a in doc["annotations"]:
            if "note" in a["attributes"]:
                a["attributes"]["note"] += "}, {"

    archive = _rewrite(archive, braces)
    settings.datasets.import_processes = 1
    whole = await _imported(api, task_id, archive)
    settings.datasets.import_processes = 2
    with caplog.at_level(logging.INFO, logger="cvat_ray.datasets"):
        assert await _imported(api, task_id, archive) == whole
    assert shares == [2]
    assert "cannot be divided" in caplog.text
    notes = [a["value"] for s in whole["shapes"] for a in s["attributes"] if "}, {" in a["value"]]
    assert notes


async def test_a_bad_annotation_in_a_share_fails_the_import(
    coco: tuple[Any, int, bytes],
    settings: Settings,
    shares: list[int],
) -> None:
    api, task_id, archive = coco
    before = (await api.get(f"/api/tasks/{task_id}/annotations/")).json()

    def unknown(doc: dict[str, Any]) -> None:
        doc["categories"].append({"id": 99, "name": "zebra", "supercategory": ""})
        doc["annotations"][-1]["category_id"] = 99

    settings.datasets.import_processes = 2
    running = _children()
    body = await import_file(
        api, "task", task_id, "COCO 1.0", "coco.zip", _rewrite(archive, unknown)
    )
    assert body["status"] == "failed"
    assert "zebra" in str(body["message"])
    assert shares == [2]
    assert (await api.get(f"/api/tasks/{task_id}/annotations/")).json() == before
    assert _children() == running
