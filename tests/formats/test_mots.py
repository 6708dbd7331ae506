"""MOTS PNG 1.0 through the API: the export's layout and 16-bit pixel values (class id * 1000
+ instance id) read back with PIL, a round trip into a fresh task giving the tracks back, a
project import with images making a task without taking the instance PNGs for frames, and
bad archives failing cleanly without a change."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import numpy as np
from PIL import Image

from cvat_ray.storage.formats import masks
from cvat_ray.storage.formats.cityscapes import png16
from tests.conftest import Account
from tests.factories import (
    bad_import,
    export_dataset,
    images,
    import_file,
    import_into_new_project,
    labelled_task,
    task_annotations,
    zip_bytes,
)

FMT = "MOTS PNG 1.0"
W, H = 64, 48  # the size of factories.images()
LABELS: list[dict[str, Any]] = [{"name": "cat"}, {"name": "dog"}]
BOX = [2.0, 2.0, 11.0, 11.0]
SQUARE = [20.0, 20.0, 40.0, 20.0, 40.0, 40.0, 20.0, 40.0]


def _blob() -> np.ndarray:
    bitmap = np.zeros((H, W), np.uint8)
    bitmap[30:40, 45:60] = 1
    return bitmap


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _pixels(data: bytes) -> np.ndarray:
    im = Image.open(io.BytesIO(data))
    assert im.mode in ("I;16", "I"), im.mode
    return np.asarray(im).astype(np.int64)


def _region(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    out = np.zeros((H, W), bool)
    out[y1 : y2 + 1, x1 : x2 + 1] = True
    return out


async def _put(api: httpx.AsyncClient, task: dict[str, Any], body: dict[str, Any]) -> None:
    r = await api.put(f"/api/tasks/{task['id']}/annotations/", json=body)
    assert r.status_code == 200, r.text


async def _tracked(api: httpx.AsyncClient) -> dict[str, Any]:
    """Four frames: a cat box track on 0-1, a dog polygon track on 0-3, a cat mask track on
    3, and a plain cat box on 2 (not a track: not exported)."""
    task = await labelled_task(api, images(4), LABELS)
    cat, dog = (task["labels_by_name"][n]["id"] for n in ("cat", "dog"))
    mask = masks.bitmap_to_cvat(_blob())
    await _put(api, task, {
        "shapes": [{"type": "rectangle", "frame": 2, "label_id": cat, "points": [1, 1, 9, 9]}],
        "tracks": [
            {"frame": 0, "label_id": cat, "shapes": [
                {"type": "rectangle", "frame": 0, "points": BOX},
                {"type": "rectangle", "frame": 2, "points": BOX, "outside": True},
            ]},
            {"frame": 0, "label_id": dog, "shapes": [
                {"type": "polygon", "frame": 0, "points": SQUARE},
            ]},
            {"frame": 3, "label_id": cat, "shapes": [
                {"type": "mask", "frame": 3, "points": mask},
            ]},
        ],
    })  # fmt: skip
    return task


async def test_mots_is_listed_enabled(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    body = (await api.get("/api/server/annotation/formats")).json()
    assert {f["name"]: f["enabled"] for f in body["exporters"]}[FMT] is True
    assert {f["name"]: f["enabled"] for f in body["importers"]}[FMT] is True


async def test_export_layout_and_pixel_values(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tracked(api)
    files = _members(await export_dataset(api, "task", task["id"], FMT, save_images=True))
    pngs = {f"default/instances/img_{i:02d}.png" for i in range(4)}
    jpgs = {f"default/images/img_{i:02d}.jpg" for i in range(4)}
    assert set(files) == pngs | jpgs | {"default/instances/labels.txt"}
    assert files["default/images/img_01.jpg"] == images(4)["img_01.jpg"]
    # the task's labels, class id = line number (no background line, as datumaro writes)
    assert files["default/instances/labels.txt"].decode().splitlines() == ["cat", "dog"]
    box, square = _region(2, 2, 11, 11), _region(20, 20, 40, 40)
    first = _pixels(files["default/instances/img_00.png"])
    assert first.shape == (H, W)
    # instances are the tracks in order of first appearance, from 0 (as CVAT's track ids)
    assert set(np.unique(first[box]).tolist()) == {1000}  # cat (class 1), instance 0
    assert set(np.unique(first[square]).tolist()) == {2001}  # dog (class 2), instance 1
    assert not first[~(box | square)].any()
    assert np.array_equal(_pixels(files["default/instances/img_01.png"]), first)
    # frame 2: the box track is outside, the plain box is no track: only the dog
    third = _pixels(files["default/instances/img_02.png"])
    assert set(np.unique(third).tolist()) == {0, 2001}
    last = _pixels(files["default/instances/img_03.png"])
    assert np.array_equal(last == 1002, _blob().astype(bool))  # the mask track: instance 2
    assert np.array_equal(last == 2001, square & ~_blob().astype(bool))
    bare = _members(await export_dataset(api, "task", task["id"], FMT))
    assert set(bare) == pngs | {"default/instances/labels.txt"}
    assert bare["default/instances/img_03.png"] == files["default/instances/img_03.png"]


def _tracks_by_label(task: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, Any]]:
    names = {lb["id"]: n for n, lb in task["labels_by_name"].items()}
    return sorted(
        (names[t["label_id"]], [(s["frame"], s["outside"], s["type"]) for s in t["shapes"]])
        for t in after["tracks"]
    )


async def test_round_trip_gives_the_tracks_back(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tracked(api)
    data = await export_dataset(api, "task", task["id"], FMT)
    fresh = await labelled_task(api, images(4), LABELS)
    body = await import_file(api, "task", fresh["id"], FMT, "mots.zip", data)
    assert body["status"] == "finished", body
    after = await task_annotations(api, fresh)
    assert after["shapes"] == [] and after["tags"] == []
    assert _tracks_by_label(fresh, after) == [
        ("cat", [(0, False, "mask"), (1, False, "mask"), (2, True, "mask")]),
        ("cat", [(3, False, "mask")]),
        ("dog", [(f, False, "mask") for f in range(4)]),
    ]
    by_frame = {
        (t["label_id"], s["frame"]): masks.cvat_to_bitmap(s["points"], W, H).astype(bool)
        for t in after["tracks"]
        for s in t["shapes"]
        if not s["outside"]
    }
    cat, dog = (fresh["labels_by_name"][n]["id"] for n in ("cat", "dog"))
    assert np.array_equal(by_frame[(cat, 1)], _region(2, 2, 11, 11))
    assert np.array_equal(by_frame[(cat, 3)], _blob().astype(bool))
    assert np.array_equal(by_frame[(dog, 2)], _region(20, 20, 40, 40))
    # CVAT's default: masks become polygons (tracks of polygons)
    poly = await labelled_task(api, images(4), LABELS)
    body = await import_file(api, "task", poly["id"], FMT, "m.zip", data, conv_mask_to_poly=True)
    assert body["status"] == "finished", body
    tracks = _tracks_by_label(poly, await task_annotations(api, poly))
    assert [(label, [k[:2] for k in keys]) for label, keys in tracks] == [
        ("cat", [(0, False), (1, False), (2, True)]),
        ("cat", [(3, False)]),
        ("dog", [(f, False) for f in range(4)]),
    ]
    assert {k[2] for _, keys in tracks for k in keys} == {"polygon"}


async def test_default_classes_and_ignore_region(client_for: Any, alice: Account) -> None:
    """Without labels.txt the MOTS classes (1 car, 2 pedestrian); class 10 is no object; a
    gap in an instance's frames ends its track until it shows again."""
    api = client_for(alice)
    task = await labelled_task(api, images(3), [{"name": "car"}, {"name": "pedestrian"}])
    frame = np.zeros((H, W), np.int64)
    frame[0:5, 0:5] = 2005
    frame[10:20, 10:20] = 10000
    data = zip_bytes({
        "instances/img_00.png": png16(frame),
        "instances/img_01.png": png16(np.zeros((H, W), np.int64)),
        "instances/img_02.png": png16(frame),
    })  # fmt: skip
    body = await import_file(api, "task", task["id"], FMT, "kitti.zip", data)
    assert body["status"] == "finished", body
    after = await task_annotations(api, task)
    assert _tracks_by_label(task, after) == [
        ("pedestrian", [(0, False, "mask"), (1, True, "mask"), (2, False, "mask")])
    ]


async def test_project_import_with_images_makes_a_task(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tracked(api)
    data = await export_dataset(api, "task", task["id"], FMT, save_images=True)
    tasks = await import_into_new_project(api, LABELS, FMT, data)
    assert [(t["name"], t["subset"], t["size"]) for t in tasks] == [("default", "default", 4)]
    frames = (await api.get(f"/api/tasks/{tasks[0]['id']}/data/meta")).json()["frames"]
    assert [f["name"] for f in frames] == [f"img_{i:02d}.jpg" for i in range(4)]
    after = (await api.get(f"/api/tasks/{tasks[0]['id']}/annotations/")).json()
    assert sorted(len(t["shapes"]) for t in after["tracks"]) == [1, 3, 4]


async def test_bad_archives_fail_cleanly(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await labelled_task(api, images(1), LABELS)
    await _put(api, task, {"shapes": [{
        "type": "rectangle", "frame": 0, "points": [1, 1, 5, 5],
        "label_id": task["labels_by_name"]["cat"]["id"],
    }]})  # fmt: skip
    labels = {"default/instances/labels.txt": b"cat\ndog\n"}
    value = np.zeros((H, W), np.int64)
    value[1:3, 1:3] = 3001
    cases = [
        ({"default/gt.txt": b"x"}, "no instances/ folder"),
        ({**labels, "default/instances/img_00.png": png16(value)}, "class id 3 (pixel value 3001)"),
        (
            {**labels, "default/instances/img_00.png": _rgb_png()},
            "one-channel 16-bit PNG, not mode RGB",
        ),
        ({**labels, "default/instances/img_00.png": b"not a png"}, "not a readable PNG"),
        (
            {"default/instances/labels.txt": b"cat\ncat\n"},
            "default/instances/labels.txt:2: label 'cat' is listed twice",
        ),
    ]
    horse = {"default/instances/labels.txt": b"horse\n"}
    cases.append(({**horse, "default/instances/img_00.png": png16(np.full((H, W), 1001))}, "horse"))
    for files, reason in cases:
        await bad_import(api, task, FMT, zip_bytes(files), reason)


def _rgb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (1, 2, 3)).save(buf, format="PNG")
    return buf.getvalue()
