"""Ultralytics YOLO Pose / Classification, Market-1501 and WiderFace 1.0 through the API: each
export read back with plain parsing (yaml, json, text) against the layout CVAT writes, a round
trip into a fresh task keeping what the format keeps, and bad input failing cleanly."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import Account
from tests.factories import (
    attr_id,
    bad_import,
    export_dataset,
    images,
    import_file,
    labelled_task,
    task_annotations,
    zip_bytes,
)
from tests.media_files import image_bytes

W, H = 64, 48  # the size of factories.images()


async def _put(api: httpx.AsyncClient, task: dict[str, Any], body: dict[str, Any]) -> None:
    r = await api.put(f"/api/tasks/{task['id']}/annotations/", json=body)
    assert r.status_code == 200, r.text


def _names(task: dict[str, Any]) -> dict[int, str]:
    out = {}
    for lb in task["labels_by_name"].values():
        out[lb["id"]] = lb["name"]
        for sub in lb.get("sublabels", []):
            out[sub["id"]] = f"{lb['name']}.{sub['name']}"
    return out


def _attr_names(task: dict[str, Any]) -> dict[int, str]:
    return {a["id"]: a["name"] for lb in task["labels_by_name"].values() for a in lb["attributes"]}


async def test_the_four_formats_are_listed_enabled(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    body = (await api.get("/api/server/annotation/formats")).json()
    exporters = {f["name"]: f["enabled"] for f in body["exporters"]}
    importers = {f["name"]: f["enabled"] for f in body["importers"]}
    for name in (
        "Ultralytics YOLO Pose 1.0",
        "Ultralytics YOLO Classification 1.0",
        "Market-1501 1.0",
        "WiderFace 1.0",
    ):
        assert exporters[name] is True and importers[name] is True, name


# ---------------------------------------------------------------------- Ultralytics YOLO Pose


def _skeleton(task: dict[str, Any], frame: int, head: Any, hand: Any) -> dict[str, Any]:
    """A person skeleton; ``head``/``hand`` are (x, y, occluded, outside)."""
    person = task["labels_by_name"]["person"]
    subs = {s["name"]: s["id"] for s in person["sublabels"]}
    return {
        "type": "skeleton",
        "frame": frame,
        "label_id": person["id"],
        "points": [],
        "elements": [
            {"type": "points", "frame": frame, "label_id": subs[name], "points": [x, y],
             "occluded": occluded, "outside": outside}
            for name, (x, y, occluded, outside) in (("head", head), ("hand", hand))
        ],
    }  # fmt: skip


async def _pose_task(api: httpx.AsyncClient) -> dict[str, Any]:
    task = await labelled_task(api, images(3))
    cat = task["labels_by_name"]["cat"]["id"]
    await _put(api, task, {
        "shapes": [
            _skeleton(task, 0, (10, 10, False, False), (12, 20, True, False)),
            _skeleton(task, 1, (32, 24, False, False), (40, 30, False, True)),
            {"type": "rectangle", "frame": 0, "label_id": cat, "points": [1, 2, 30, 40]},
        ],
    })  # fmt: skip
    return task


def _elements(s: dict[str, Any], names: dict[int, str]) -> tuple[Any, ...]:
    return tuple(sorted(
        (names[e["label_id"]], tuple(round(p, 1) for p in e["points"]), e["occluded"],
         e["outside"])
        for e in s["elements"]
    ))  # fmt: skip


async def test_pose_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _pose_task(api)
    data = await export_dataset(api, "task", task["id"], "Ultralytics YOLO Pose 1.0", True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        config = yaml.safe_load(zf.read("data.yaml"))
        rows0 = zf.read("labels/train/img_00.txt").decode().splitlines()
        rows1 = zf.read("labels/train/img_01.txt").decode().splitlines()
        listing = zf.read("train.txt").decode().split()
        image0 = zf.read("images/train/img_00.jpg")
    assert config["names"] == {0: "person"}  # skeleton labels only
    assert config["kpt_shape"] == [2, 3]
    assert config["train"] == "train.txt" and config["path"] == "."
    assert listing == [f"images/train/img_{i:02d}.jpg" for i in range(3)]
    assert {f"labels/train/img_{i:02d}.txt" for i in range(3)} <= names
    assert image0 == images(3)["img_00.jpg"]
    # the box around the points, then x y v per sublabel (head visible, hand occluded)
    (line,) = rows0
    cls, *values = line.split()
    expected = [11 / W, 15 / H, 2 / W, 10 / H, 10 / W, 10 / H, 2, 12 / W, 20 / H, 1]
    assert cls == "0" and [round(float(v), 5) for v in values] == [round(v, 5) for v in expected]
    # an outside point: visibility 0, left out of the box
    (line,) = rows1
    numbers = [float(v) for v in line.split()[1:]]
    assert numbers[2:4] == [0, 0] and numbers[6] == 2 and numbers[9] == 0


async def test_pose_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _pose_task(api)
    data = await export_dataset(api, "task", task["id"], "Ultralytics YOLO Pose 1.0")
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], "Ultralytics YOLO Pose 1.0", "p.zip", data)
    assert body["status"] == "finished", body
    before, after = await task_annotations(api, task), await task_annotations(api, fresh)
    na, nb = _names(task), _names(fresh)
    expected = sorted(
        (s["frame"], _elements(s, na)) for s in before["shapes"] if s["type"] == "skeleton"
    )
    got = sorted((s["frame"], _elements(s, nb)) for s in after["shapes"])
    assert [s["type"] for s in after["shapes"]] == ["skeleton", "skeleton"]
    assert got == expected


async def test_pose_keeps_skeleton_tracks_per_frame(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await labelled_task(api, images(3))
    person = task["labels_by_name"]["person"]
    subs = {sub["name"]: sub["id"] for sub in person["sublabels"]}

    def element(name: str, start: int, end: int) -> dict[str, Any]:
        return {"frame": 0, "label_id": subs[name], "shapes": [
            {"type": "points", "frame": 0, "points": [start, start]},
            {"type": "points", "frame": 2, "points": [end, end]},
        ]}  # fmt: skip

    await _put(api, task, {"tracks": [{
        "frame": 0, "label_id": person["id"],
        "shapes": [{"type": "skeleton", "frame": 0, "points": []},
                   {"type": "skeleton", "frame": 2, "points": []}],
        "elements": [element("head", 0, 20), element("hand", 10, 30)],
    }]})  # fmt: skip
    data = await export_dataset(api, "task", task["id"], "Ultralytics YOLO Pose 1.0")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        rows = [zf.read(f"labels/train/img_{i:02d}.txt").decode().split() for i in range(3)]
    # frame 1 is interpolated: head (10, 10), hand (20, 20)
    assert [round(float(v) * W) for v in rows[1][5::3]] == [10, 20]
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], "Ultralytics YOLO Pose 1.0", "p.zip", data)
    assert body["status"] == "finished", body
    after = await task_annotations(api, fresh)
    assert after["tracks"] == []
    names = _names(fresh)
    got = sorted((s["frame"], _elements(s, names)) for s in after["shapes"])
    assert [(f, [e[1] for e in els]) for f, els in got] == [
        (0, [(10.0, 10.0), (0.0, 0.0)]),
        (1, [(20.0, 20.0), (10.0, 10.0)]),
        (2, [(30.0, 30.0), (20.0, 20.0)]),
    ]  # sorted by element name: hand, head


async def test_pose_bad_imports(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _pose_task(api)
    line = b"0 0.5 0.5 0.2 0.2 0.1 0.1 2 0.2 0.2 2\n"
    unknown = zip_bytes({
        "data.yaml": b"names: {0: unicorn}\nkpt_shape: [2, 3]\npath: .\n",
        "labels/train/img_00.txt": line,
    })  # fmt: skip
    await bad_import(api, task, "Ultralytics YOLO Pose 1.0", unknown, "Label 'unicorn' is not")
    no_shape = zip_bytes({"data.yaml": b"names: {0: person}\n", "labels/train/img_00.txt": line})
    await bad_import(api, task, "Ultralytics YOLO Pose 1.0", no_shape, "kpt_shape")
    too_many = zip_bytes({
        "data.yaml": b"names: {0: person}\nkpt_shape: [3, 3]\n",
        "labels/train/img_00.txt": b"0 0.5 0.5 0.2 0.2 0.1 0.1 2 0.2 0.2 2 0.3 0.3 2\n",
    })  # fmt: skip
    await bad_import(api, task, "Ultralytics YOLO Pose 1.0", too_many, "has 2 points")
    too_few = zip_bytes({
        "data.yaml": b"names: {0: person}\nkpt_shape: [1, 3]\n",
        "labels/train/img_00.txt": b"0 0.5 0.5 0.2 0.2 0.1 0.1 2\n",
    })  # fmt: skip
    await bad_import(api, task, "Ultralytics YOLO Pose 1.0", too_few, "gives 1 per skeleton")


# ---------------------------------------------------------------------- Classification


async def _tagged_task(api: httpx.AsyncClient) -> dict[str, Any]:
    task = await labelled_task(api, images(3))
    cat, dog = (task["labels_by_name"][n]["id"] for n in ("cat", "dog"))
    await _put(api, task, {
        "tags": [
            {"frame": 0, "label_id": cat, "attributes": []},
            {"frame": 1, "label_id": cat, "attributes": []},
            {"frame": 1, "label_id": dog, "attributes": []},
        ],
        "shapes": [{"type": "rectangle", "frame": 2, "label_id": cat, "points": [1, 2, 3, 4]}],
    })  # fmt: skip
    return task


def _tags(data: dict[str, Any], names: dict[int, str]) -> list[tuple[int, str]]:
    return sorted((t["frame"], names[t["label_id"]]) for t in data["tags"])


async def test_classification_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tagged_task(api)
    fmt = "Ultralytics YOLO Classification 1.0"
    data = await export_dataset(api, "task", task["id"], fmt, save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        labels = json.loads(zf.read("train/labels.json"))
        cat0 = zf.read("train/cat/img_00.jpg")
    assert names == {
        "train/labels.json", "train/cat/img_00.jpg", "train/cat/img_01.jpg",
        "train/dog/img_01.jpg", "train/no_label/img_02.jpg",
    }  # fmt: skip
    assert cat0 == images(3)["img_00.jpg"]
    assert labels == {
        "img_00": {"labels": ["cat"], "path": "cat/img_00.jpg"},
        "img_01": {"labels": ["cat", "dog"], "path": "dog/img_01.jpg"},
        "img_02": {"labels": [], "path": "no_label/img_02.jpg"},
    }
    # without images: only the labels file
    bare = await export_dataset(api, "task", task["id"], fmt)
    with zipfile.ZipFile(io.BytesIO(bare)) as zf:
        assert zf.namelist() == ["train/labels.json"]


async def test_classification_round_trips(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tagged_task(api)
    fmt = "Ultralytics YOLO Classification 1.0"
    expected = _tags(await task_annotations(api, task), _names(task))
    for save_images in (False, True):
        data = await export_dataset(api, "task", task["id"], fmt, save_images=save_images)
        fresh = await labelled_task(api, images(3))
        body = await import_file(api, "task", fresh["id"], fmt, "c.zip", data)
        assert body["status"] == "finished", body
        after = await task_annotations(api, fresh)
        assert _tags(after, _names(fresh)) == expected
        assert after["shapes"] == []
    # folders alone (a plain Ultralytics dataset, no labels.json)
    fresh = await labelled_task(api, images(3))
    plain = zip_bytes({"val/dog/img_02.jpg": b"x", "val/no_label/img_00.jpg": b"x"})
    body = await import_file(api, "task", fresh["id"], fmt, "c.zip", plain)
    assert body["status"] == "finished", body
    assert _tags(await task_annotations(api, fresh), _names(fresh)) == [(2, "dog")]


async def test_classification_bad_imports(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _tagged_task(api)
    fmt = "Ultralytics YOLO Classification 1.0"
    await bad_import(
        api, task, fmt, zip_bytes({"train/unicorn/img_00.jpg": b"x"}), "Label 'unicorn' is not"
    )
    await bad_import(api, task, fmt, zip_bytes({"train/labels.json": b"{not json"}), "labels.json")
    await bad_import(api, task, fmt, zip_bytes({"../train/cat/img_00.jpg": b"x"}), "unsafe path")


# ---------------------------------------------------------------------- Market-1501

MARKET_LABELS: list[dict[str, Any]] = [
    {
        "name": "market-1501",
        "attributes": [
            {"name": "query", "mutable": False, "input_type": "checkbox", "values": ["false"]},
            {"name": "person_id", "mutable": False, "input_type": "text", "values": []},
            {"name": "camera_id", "mutable": False, "input_type": "number",
             "values": ["0", "10", "1"]},
        ],
    },
    {"name": "cat"},
]  # fmt: skip

MARKET_NAMES = ["0001_c1s1_000101_00.jpg", "0002_c2s3_000202_01.jpg", "img_02.jpg"]


async def _market_task(api: httpx.AsyncClient, names: list[str]) -> dict[str, Any]:
    files = {n: image_bytes(W, H, (i * 20, 50, 50)) for i, n in enumerate(names)}
    task = await labelled_task(api, files, MARKET_LABELS)
    meta = (await api.get(f"/api/tasks/{task['id']}/data/meta")).json()
    task["frame_of"] = {f["name"].rpartition("/")[2]: i for i, f in enumerate(meta["frames"])}
    return task


def _market_tag(task: dict[str, Any], frame: int, pid: str, cam: str, query: str) -> Any:
    return {
        "frame": frame,
        "label_id": task["labels_by_name"]["market-1501"]["id"],
        "attributes": [
            {"spec_id": attr_id(task, "market-1501", "person_id"), "value": pid},
            {"spec_id": attr_id(task, "market-1501", "camera_id"), "value": cam},
            {"spec_id": attr_id(task, "market-1501", "query"), "value": query},
        ],
    }


def _market_tags(task: dict[str, Any], data: dict[str, Any]) -> list[tuple[int, dict[str, str]]]:
    attrs = _attr_names(task)
    return sorted(
        (t["frame"], {attrs[a["spec_id"]]: a["value"] for a in t["attributes"]})
        for t in data["tags"]
    )


async def test_market1501_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _market_task(api, MARKET_NAMES)
    at = task["frame_of"]
    cat = task["labels_by_name"]["cat"]["id"]
    await _put(api, task, {
        "tags": [
            _market_tag(task, at["0001_c1s1_000101_00.jpg"], "0001", "0", "false"),
            _market_tag(task, at["0002_c2s3_000202_01.jpg"], "0002", "1", "true"),
            _market_tag(task, at["img_02.jpg"], "0007", "3", "false"),
        ],
        "shapes": [{"type": "rectangle", "frame": 0, "label_id": cat, "points": [1, 2, 3, 4]}],
    })  # fmt: skip
    data = await export_dataset(api, "task", task["id"], "Market-1501 1.0", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        listing = zf.read("images_default.txt").decode().splitlines()
        names = set(zf.namelist())
        query = zf.read("query/0002_c2s3_000202_01.jpg")
    # names of that form are kept; another is made from the tag (camera from 1, sequence 1)
    assert sorted(listing) == [
        "bounding_box_default/0001_c1s1_000101_00.jpg",
        "bounding_box_default/0007_c4s1_000000_00.jpg",
        "query/0002_c2s3_000202_01.jpg",
    ]
    assert names == {"images_default.txt", *listing}
    assert query == image_bytes(W, H, (20, 50, 50))


async def test_market1501_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    names = MARKET_NAMES[:2]
    task = await _market_task(api, names)
    at = task["frame_of"]
    await _put(api, task, {
        "tags": [
            _market_tag(task, at[names[0]], "0001", "0", "false"),
            _market_tag(task, at[names[1]], "0002", "1", "true"),
        ]
    })  # fmt: skip
    data = await export_dataset(api, "task", task["id"], "Market-1501 1.0")
    fresh = await _market_task(api, names)
    body = await import_file(api, "task", fresh["id"], "Market-1501 1.0", "m.zip", data)
    assert body["status"] == "finished", body
    expected = _market_tags(task, await task_annotations(api, task))
    got = _market_tags(fresh, await task_annotations(api, fresh))
    assert got == expected
    assert {f: a["query"] for f, a in got} == {at[names[0]]: "false", at[names[1]]: "true"}


async def test_market1501_bad_imports(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await labelled_task(api, {MARKET_NAMES[0]: image_bytes(W, H, (0, 50, 50))})
    listing = b"bounding_box_default/0001_c1s1_000101_00.jpg\n"
    await bad_import(
        api, task, "Market-1501 1.0", zip_bytes({"images_default.txt": listing}),
        "Label 'market-1501' is not in the task",
    )  # fmt: skip
    await bad_import(
        api, task, "Market-1501 1.0", zip_bytes({"readme.txt": b"x"}), "images_<subset>.txt"
    )


# ---------------------------------------------------------------------- WiderFace

WIDER_LABELS: list[dict[str, Any]] = [
    {
        "name": "face",
        "attributes": [
            {"name": "blur", "mutable": False, "input_type": "select", "values": ["0", "1", "2"],
             "default_value": "0"},
            {"name": "invalid", "mutable": False, "input_type": "checkbox", "values": ["false"]},
        ],
    },
    {"name": "cat"},
]  # fmt: skip


async def _wider_task(api: httpx.AsyncClient) -> dict[str, Any]:
    task = await labelled_task(api, images(3), WIDER_LABELS)
    by = task["labels_by_name"]
    face, cat = by["face"]["id"], by["cat"]["id"]
    blur, invalid = attr_id(task, "face", "blur"), attr_id(task, "face", "invalid")

    def face_box(frame: int, points: list[float], b: str, inv: str, occluded: bool) -> Any:
        return {"type": "rectangle", "frame": frame, "label_id": face, "points": points,
                "occluded": occluded, "attributes": [{"spec_id": blur, "value": b},
                                                     {"spec_id": invalid, "value": inv}]}  # fmt: skip

    await _put(api, task, {
        "tags": [{"frame": 0, "label_id": cat, "attributes": []}],
        "shapes": [
            face_box(0, [1, 2, 30, 40], "2", "false", True),
            {"type": "rectangle", "frame": 0, "label_id": cat, "points": [5, 6, 20, 25]},
            face_box(1, [3, 4, 13, 24], "0", "true", False),
            {"type": "polygon", "frame": 1, "label_id": cat, "points": [1, 1, 9, 1, 9, 9]},
        ],
        "tracks": [{
            "frame": 0, "label_id": cat,
            "shapes": [{"type": "rectangle", "frame": 0, "points": [0, 0, 10, 10]},
                       {"type": "rectangle", "frame": 2, "points": [10, 10, 20, 20]}],
        }],
    })  # fmt: skip
    return task


def _wider_blocks(text: str) -> dict[str, list[str]]:
    """Image line -> its box lines, read as the WIDER Face file is laid out."""
    lines = text.splitlines()
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(lines):
        image = lines[i]
        i += 1
        boxes: list[str] = []
        if i < len(lines) and lines[i].isdigit():
            count = int(lines[i])
            boxes = lines[i + 1 : i + 1 + count]
            i += 1 + count
        out[image] = boxes
    return out


async def test_widerface_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _wider_task(api)
    data = await export_dataset(api, "task", task["id"], "WiderFace 1.0", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        labels = zf.read("labels.txt").decode()
        text = zf.read("wider_face_split/wider_face_default_bbx_gt.txt").decode()
        image = zf.read("WIDER_default/images/1--cat/img_00.jpg")
    assert labels.split("\n") == ["face", "cat"]
    assert image == images(3)["img_00.jpg"]
    assert {
        "WIDER_default/images/no_label/img_01.jpg",
        "WIDER_default/images/no_label/img_02.jpg",
    } <= names
    blocks = _wider_blocks(text)
    assert list(blocks) == ["1--cat/img_00.jpg", "no_label/img_01.jpg", "no_label/img_02.jpg"]
    # x y w h blur expression illumination occluded pose invalid [label unless face]
    assert sorted(blocks["1--cat/img_00.jpg"]) == sorted([
        "1.0 2.0 29.0 38.0 2 - - True - False ",
        "5.0 6.0 15.0 19.0 - - - False - - cat",
        "0.0 0.0 10.0 10.0 - - - False - - cat",
    ])  # fmt: skip
    assert sorted(blocks["no_label/img_01.jpg"]) == sorted([
        "3.0 4.0 10.0 20.0 0 - - False - True ",
        "5.0 5.0 10.0 10.0 - - - False - - cat",
    ])  # fmt: skip
    assert blocks["no_label/img_02.jpg"] == ["10.0 10.0 10.0 10.0 - - - False - - cat"]


async def test_widerface_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _wider_task(api)
    data = await export_dataset(api, "task", task["id"], "WiderFace 1.0")
    fresh = await labelled_task(api, images(3), WIDER_LABELS)
    body = await import_file(api, "task", fresh["id"], "WiderFace 1.0", "w.zip", data)
    assert body["status"] == "finished", body
    before, after = await task_annotations(api, task), await task_annotations(api, fresh)

    def boxes(data: dict[str, Any], t: dict[str, Any]) -> list[Any]:
        names, attrs = _names(t), _attr_names(t)
        return sorted(
            (s["frame"], names[s["label_id"]], [round(p, 1) for p in s["points"]],
             s["occluded"], sorted((attrs[a["spec_id"]], a["value"]) for a in s["attributes"]))
            for s in data["shapes"] if s["type"] == "rectangle"
        )  # fmt: skip

    track = [(0, "cat", [0, 0, 10, 10]), (1, "cat", [5, 5, 15, 15]), (2, "cat", [10, 10, 20, 20])]
    expected = boxes(before, task) + [(f, n, p, False, []) for f, n, p in track]
    assert boxes(after, fresh) == sorted(expected)
    assert [s["type"] for s in after["shapes"]] == ["rectangle"] * 6
    assert _tags(after, _names(fresh)) == [(0, "cat")]


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        (
            {"wider_face_split/wider_face_default_bbx_gt.txt":
             b"no_label/img_00.jpg\n1\n1 2 3 4 - - - False - - unicorn\n"},
            "Label 'unicorn' is not in the task",
        ),
        (
            {"wider_face_split/wider_face_default_bbx_gt.txt": b"0--unicorn/img_00.jpg\n"},
            "Label 'unicorn' is not in the task",
        ),
        (
            {"wider_face_split/wider_face_default_bbx_gt.txt": b"no_label/img_00.jpg\n1\na b c d\n"},
            "expected 'x y w h' numbers",
        ),
        ({"labels.txt": b"face"}, "wider_face_split"),
        ({"../wider_face_split/wider_face_default_bbx_gt.txt": b""}, "unsafe path"),
    ],
)  # fmt: skip
async def test_widerface_bad_imports(
    client_for: Any, alice: Account, files: dict[str, bytes], reason: str
) -> None:
    api = client_for(alice)
    task = await _wider_task(api)
    await bad_import(api, task, "WiderFace 1.0", zip_bytes(files), reason)


async def test_widerface_attributes_the_label_lacks_are_left_out(
    client_for: Any, alice: Account
) -> None:
    """A WIDER file with all six flags into a task whose face label has none of them: the
    boxes come in (occluded from its column), the flags are left out, as in CVAT."""
    api = client_for(alice)
    task = await labelled_task(api, images(1), [{"name": "face"}])
    text = b"no_label/img_00.jpg\n2\n1 2 3 4 1 0 0 True 1 0\n5 6 7 8 0 0 0 False 0 0\n"
    data = zip_bytes({"wider_face_split/wider_face_val_bbx_gt.txt": text})
    body = await import_file(api, "task", task["id"], "WiderFace 1.0", "w.zip", data)
    assert body["status"] == "finished", body
    shapes = (await task_annotations(api, task))["shapes"]
    assert sorted((s["points"], s["occluded"], s["attributes"]) for s in shapes) == [
        ([1, 2, 4, 6], True, []),
        ([5, 6, 12, 14], False, []),
    ]
