"""Ultralytics YOLO Detection Track 1.0 through the API: export only (as in CVAT), the
Ultralytics YOLO Detection layout with each track's box carrying the track id as a sixth
column on every frame where the track is visible."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import yaml

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

FMT = "Ultralytics YOLO Detection Track 1.0"
DETECTION = "Ultralytics YOLO Detection 1.0"
W, H = 64, 48  # the size of factories.images()
FRAMES = 6


async def _tracked(api: httpx.AsyncClient) -> dict[str, Any]:
    """A task of 6 frames: a cat track keyed on 0 and 2, outside from 4; a dog track from
    frame 4 to the end; a plain dog box on frame 1; a polygon (not a box) on frame 0."""
    task = await labelled_task(api, images(FRAMES))
    cat, dog = (task["labels_by_name"][n]["id"] for n in ("cat", "dog"))
    body = {
        "shapes": [
            {"type": "rectangle", "frame": 1, "label_id": dog, "points": [8, 12, 40, 36]},
            {"type": "polygon", "frame": 0, "label_id": cat, "points": [1, 1, 20, 1, 20, 15]},
        ],
        "tracks": [
            {
                "frame": 0,
                "label_id": cat,
                "shapes": [
                    {"type": "rectangle", "frame": 0, "points": [0, 0, 16, 12]},
                    {"type": "rectangle", "frame": 2, "points": [16, 12, 32, 24]},
                    {"type": "rectangle", "frame": 4, "points": [16, 12, 32, 24], "outside": True},
                ],
            },
            {
                "frame": 4,
                "label_id": dog,
                "shapes": [{"type": "rectangle", "frame": 4, "points": [32, 24, 64, 48]}],
            },
        ],
    }
    r = await api.put(f"/api/tasks/{task['id']}/annotations/", json=body)
    assert r.status_code == 200, r.text
    return task


def _box(cls: int, x1: float, y1: float, x2: float, y2: float) -> str:
    return (
        f"{cls} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} "
        f"{(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}"
    )


async def test_listed_for_export_only(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    r = await api.get("/api/server/annotation/formats")
    assert r.status_code == 200
    body = r.json()
    exporters = {f["name"]: f for f in body["exporters"]}
    importers = {f["name"]: f for f in body["importers"]}
    assert exporters[FMT]["enabled"] is True
    assert exporters[FMT]["ext"] == "ZIP" and exporters[FMT]["version"] == "1.0"
    assert importers.get(FMT, {"enabled": False})["enabled"] is False  # CVAT has no importer


async def test_export_writes_track_ids(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tracked(api)
    ids = {
        task["labels_by_name"]["cat"]["id"]: "cat",
        task["labels_by_name"]["dog"]["id"]: "dog",
    }
    tracks = {ids[t["label_id"]]: t["id"] for t in (await task_annotations(api, task))["tracks"]}
    data = await export_dataset(api, "task", task["id"], FMT)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        config = yaml.safe_load(zf.read("data.yaml"))
        listing = zf.read("train.txt").decode().split()
        rows = {
            i: zf.read(f"labels/train/img_{i:02d}.txt").decode().splitlines() for i in range(FRAMES)
        }
    assert config["path"] == "." and config["train"] == "train.txt"
    assert config["names"] == {0: "cat", 1: "dog", 2: "person"}
    assert listing == [f"images/train/img_{i:02d}.jpg" for i in range(FRAMES)]
    assert not any(n.startswith("images/") for n in names)  # no images asked for
    cat, dog = f" {tracks['cat']}", f" {tracks['dog']}"
    assert rows == {
        0: [_box(0, 0, 0, 16, 12) + cat],  # the polygon is not a box: dropped
        1: [_box(1, 8, 12, 40, 36), _box(0, 8, 6, 24, 18) + cat],  # plain box: 5 columns
        2: [_box(0, 16, 12, 32, 24) + cat],
        3: [_box(0, 16, 12, 32, 24) + cat],  # after the last key, until outside
        4: [_box(1, 32, 24, 64, 48) + dog],  # the cat is outside from here on
        5: [_box(1, 32, 24, 64, 48) + dog],
    }
    assert rows[1][0].split() == ["1", "0.375000", "0.500000", "0.500000", "0.500000"]
    assert len(rows[1][1].split()) == 6 and int(rows[1][1].split()[5]) == tracks["cat"]


async def test_export_with_images(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tracked(api)
    plain = await export_dataset(api, "task", task["id"], "Ultralytics YOLO Detection 1.0", True)
    data = await export_dataset(api, "task", task["id"], FMT, save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf, zipfile.ZipFile(io.BytesIO(plain)) as zp:
        assert sorted(zf.namelist()) == sorted(zp.namelist())
        for i in range(FRAMES):
            assert zf.read(f"images/train/img_{i:02d}.jpg") == images(FRAMES)[f"img_{i:02d}.jpg"]
            tracked = zf.read(f"labels/train/img_{i:02d}.txt").decode().splitlines()
            detected = zp.read(f"labels/train/img_{i:02d}.txt").decode().splitlines()
            # the same boxes as Ultralytics YOLO Detection, a track's with its id appended
            assert [r.split()[:5] for r in tracked] == [r.split() for r in detected]
        assert zf.read("data.yaml") == zp.read("data.yaml")


async def test_import_is_refused(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tracked(api)
    before = await task_annotations(api, task)
    r = await api.post(
        f"/api/tasks/{task['id']}/annotations/",
        params={"format": FMT},
        files={"annotation_file": ("d.zip", await export_dataset(api, "task", task["id"], FMT))},
    )
    assert 400 <= r.status_code < 500, r.text
    assert f"'{FMT}' cannot be used for import" in r.text, r.text
    assert "Ultralytics YOLO Detection 1.0" in r.text  # the importers it can use are listed
    assert await task_annotations(api, task) == before


async def test_detection_import_makes_tracks_of_track_ids(client_for: Any, alice: Account) -> None:
    """As CVAT's: the Detection importer reads the sixth column; one id's boxes become a track
    (a keyframe per frame it is on, outside on the frame after a run)."""
    api = client_for(alice)
    task = await _tracked(api)
    data = await export_dataset(api, "task", task["id"], FMT)
    fresh = await labelled_task(api, images(FRAMES))
    body = await import_file(api, "task", fresh["id"], DETECTION, "t.zip", data)
    assert body["status"] == "finished", body
    got = await task_annotations(api, fresh)
    names = {lb["id"]: name for name, lb in fresh["labels_by_name"].items()}
    assert [(names[s["label_id"]], s["frame"], s["type"]) for s in got["shapes"]] == [
        ("dog", 1, "rectangle")
    ]
    tracks = {names[t["label_id"]]: t for t in got["tracks"]}
    assert sorted(tracks) == ["cat", "dog"]
    cat = [(s["frame"], s["outside"]) for s in tracks["cat"]["shapes"]]
    assert cat == [(0, False), (1, False), (2, False), (3, False), (4, True)]
    assert [round(v) for v in tracks["cat"]["shapes"][1]["points"]] == [8, 6, 24, 18]
    dog = [(s["frame"], s["outside"]) for s in tracks["dog"]["shapes"]]
    assert dog == [(4, False), (5, False)]

    # a track id that is not a whole number >= 0 fails the import and changes nothing
    bad = zip_bytes({
        "data.yaml": b"names:\n  0: cat\n  1: dog\npath: .\ntrain: train.txt\n",
        "labels/train/img_0.txt": b"0 0.5 0.5 0.2 0.2 -3\n",
    })  # fmt: skip
    await bad_import(api, fresh, DETECTION, bad, "track id -3")
