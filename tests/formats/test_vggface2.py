"""VGGFace2 1.0 through the API: the export's layout (``labels.txt``, the landmark and box
CSVs under ``bb_landmark/``, images in ``<subset>/<label>/``), a round trip into a fresh
task, and bad archives failing cleanly without changing anything."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

import httpx

from tests.conftest import Account
from tests.factories import (
    bad_import,
    export_dataset,
    images,
    import_file,
    labelled_task,
    task_annotations,
    zip_bytes,
)

FMT = "VGGFace2 1.0"
LABELS: list[dict[str, Any]] = [{"name": "n000001"}, {"name": "n000002"}]
FIVE = [10, 12, 20, 12, 15, 18, 11, 24, 19, 24]  # eyes, nose, mouth corners
CSV_LANDMARKS = "bb_landmark/loose_landmark_default.csv"
CSV_BOXES = "bb_landmark/loose_bb_default.csv"
LANDMARK_HEADER = "NAME_ID,P1X,P1Y,P2X,P2Y,P3X,P3Y,P4X,P4Y,P5X,P5Y"


async def _face_task(api: httpx.AsyncClient) -> dict[str, Any]:
    """img_00: a box and landmarks of n000001; img_01: a n000002 tag; img_02: nothing."""
    task = await labelled_task(api, images(3), LABELS)
    one = task["labels_by_name"]["n000001"]["id"]
    two = task["labels_by_name"]["n000002"]["id"]
    r = await api.put(f"/api/tasks/{task['id']}/annotations/", json={
        "tags": [{"frame": 1, "label_id": two, "attributes": []}],
        "shapes": [
            {"type": "rectangle", "frame": 0, "label_id": one, "points": [1, 2, 31, 42]},
            {"type": "points", "frame": 0, "label_id": one, "points": FIVE},
        ],
    })  # fmt: skip
    assert r.status_code == 200, r.text
    return task


def _summary(task: dict[str, Any], data: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    names = {lb["id"]: lb["name"] for lb in task["labels_by_name"].values()}
    shapes = sorted(
        (s["frame"], s["type"], names[s["label_id"]], [round(p, 2) for p in s["points"]])
        for s in data["shapes"]
    )
    tags = sorted((t["frame"], names[t["label_id"]]) for t in data["tags"])
    return shapes, tags


async def test_vggface2_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _face_task(api)
    plain = await export_dataset(api, "task", task["id"], FMT)
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        assert sorted(zf.namelist()) == sorted(["labels.txt", CSV_LANDMARKS, CSV_BOXES])
        labels = zf.read("labels.txt").decode()
        landmarks = zf.read(CSV_LANDMARKS).decode()
        boxes = zf.read(CSV_BOXES).decode()
    assert labels.splitlines() == ["n000001", "n000002"]
    assert landmarks.splitlines()[0] == LANDMARK_HEADER
    rows = list(csv.DictReader(io.StringIO(landmarks)))
    assert [r["NAME_ID"] for r in rows] == ["n000001/img_00", "n000002/img_01", "no_label/img_02"]
    assert [float(rows[0][c]) for c in LANDMARK_HEADER.split(",")[1:]] == [float(v) for v in FIVE]
    assert all(v == "" for r in rows[1:] for k, v in r.items() if k != "NAME_ID")
    assert list(csv.reader(io.StringIO(boxes))) == [
        ["NAME_ID", "X", "Y", "W", "H"],
        ["n000001/img_00", "1.0", "2.0", "30.0", "40.0"],
    ]

    full = await export_dataset(api, "task", task["id"], FMT, save_images=True)
    with zipfile.ZipFile(io.BytesIO(full)) as zf:
        names = set(zf.namelist())
        stored = {n: zf.read(n) for n in names if n.endswith(".jpg")}
        assert zf.read(CSV_LANDMARKS).decode() == landmarks
    src = images(3)
    assert stored == {
        "default/n000001/img_00.jpg": src["img_00.jpg"],
        "default/n000002/img_01.jpg": src["img_01.jpg"],
        "default/no_label/img_02.jpg": src["img_02.jpg"],
    }
    assert names == {"labels.txt", CSV_LANDMARKS, CSV_BOXES, *stored}


async def test_vggface2_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _face_task(api)
    expected = _summary(task, await task_annotations(api, task))
    assert expected[0] and expected[1]
    for save_images in (False, True):
        data = await export_dataset(api, "task", task["id"], FMT, save_images)
        fresh = await labelled_task(api, images(3), LABELS)
        body = await import_file(api, "task", fresh["id"], FMT, "v.zip", data)
        assert body["status"] == "finished", body
        assert _summary(fresh, await task_annotations(api, fresh)) == expected


async def test_vggface2_reads_handmade_archive(client_for: Any, alice: Account) -> None:
    """A box-only dataset (no landmarks file), a row without coordinates as a tag, names
    whose first folder is the label."""
    api = client_for(alice)
    task = await labelled_task(api, images(2), LABELS)
    archive = zip_bytes({
        "bb_landmark/loose_bb_train.csv": b"NAME_ID,X,Y,W,H\nn000002/img_01,4,5,10,20\n",
        "bb_landmark/loose_landmark_train.csv": (
            LANDMARK_HEADER + "\nn000001/img_00,,,,,,,,,,\n"
        ).encode(),
    })  # fmt: skip
    body = await import_file(api, "task", task["id"], FMT, "h.zip", archive)
    assert body["status"] == "finished", body
    shapes, tags = _summary(task, await task_annotations(api, task))
    assert shapes == [(1, "rectangle", "n000002", [4.0, 5.0, 14.0, 25.0])]
    assert tags == [(0, "n000001")]


async def test_vggface2_bad_imports(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _face_task(api)
    head = LANDMARK_HEADER + "\n"
    await bad_import(api, task, FMT, zip_bytes({"readme.txt": b"x"}), "bb_landmark/loose_landmark_")
    await bad_import(
        api, task, FMT, zip_bytes({CSV_LANDMARKS: (head + "no_label/img_00" + ",1" * 10).encode()}),
        "have no label",
    )  # fmt: skip
    await bad_import(
        api, task, FMT, zip_bytes({CSV_LANDMARKS: (head + "n000001/img_00" + ",x" * 10).encode()}),
        "must be numbers",
    )  # fmt: skip
    await bad_import(api, task, FMT, zip_bytes({CSV_BOXES: b"X,Y,W,H\n1,2,3,4\n"}), "NAME_ID")
    await bad_import(
        api, task, FMT, zip_bytes({CSV_BOXES: b"NAME_ID,X,Y,W,H\nn000001/img_00,1,2,3,4,5\n"}),
        "more values",
    )  # fmt: skip
    await bad_import(
        api, task, FMT, zip_bytes({CSV_LANDMARKS: (head + "unicorn/img_00").encode()}), "unicorn"
    )
