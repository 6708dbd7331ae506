"""CamVid, Cityscapes, KITTI and Open Images V6 through the API: exports read back with
independent parsing (csv, PIL, plain text), round trips into fresh tasks, bad input."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from cvat_ray.storage.formats import masks
from tests.conftest import Account
from tests.factories import (
    export_dataset,
    images,
    import_file,
    import_into_new_project,
    labelled_task,
    task_annotations,
    upload,
    wait,
    zip_bytes,
)
from tests.formats.test_datasets import H, W, _annotated, _bitmap, _names

FORMATS = ("CamVid 1.0", "Cityscapes 1.0", "KITTI 1.0", "Open Images V6 1.0")


def _box(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """The pixels a rectangle paints (its corners included)."""
    out = np.zeros((H, W), bool)
    out[y1 : y2 + 1, x1 : x2 + 1] = True
    return out


# what the shared payload paints: the cat box and the track's box on frame 0, the mask and
# the track's box on frame 2 (frame 1's overlaps depend on paint order)
CAT_0 = _box(1, 2, 30, 40) | _box(0, 0, 10, 10)
CAT_2 = _bitmap().astype(bool) | _box(10, 10, 20, 20)
POLYGON_1 = _box(1, 1, 20, 15)


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def _colours(text: str) -> list[tuple[str, tuple[int, ...]]]:
    out: list[tuple[str, tuple[int, ...]]] = []
    for line in text.splitlines():
        r, g, b, name = line.split(" ", 3)
        out.append((name, (int(r), int(g), int(b))))
    return out


def _mask_union(
    shapes: list[dict[str, Any]], names: dict[int, str], frame: int, label: str
) -> np.ndarray:
    union = np.zeros((H, W), bool)
    for s in shapes:
        if s["frame"] == frame and s["type"] == "mask" and names[s["label_id"]] == label:
            union |= masks.cvat_to_bitmap(s["points"], W, H).astype(bool)
    return union


async def _round_trip(
    api: httpx.AsyncClient, task: dict[str, Any], fmt: str, data: bytes
) -> tuple[dict[str, Any], dict[str, Any]]:
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], fmt, "d.zip", data)
    assert body["status"] == "finished", body
    return fresh, await task_annotations(api, fresh)


async def test_the_four_formats_are_listed_enabled(client_for: Any, alice: Account) -> None:
    body = (await client_for(alice).get("/api/server/annotation/formats")).json()
    for side in ("importers", "exporters"):
        by_name = {f["name"]: f for f in body[side]}
        for name in FORMATS:
            assert by_name[name]["enabled"] is True, (side, name)
            assert by_name[name]["ext"] == "ZIP"


async def test_camvid_export_and_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "CamVid 1.0", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        colours = dict(_colours(zf.read("label_colors.txt").decode()))
        listing = zf.read("default.txt").decode().splitlines()
        frame0 = _png(zf.read("defaultannot/img_00.png"))
        frame1 = _png(zf.read("defaultannot/img_01.png"))
        frame2 = _png(zf.read("defaultannot/img_02.png"))
    assert sorted(colours) == ["cat", "dog", "person"] and colours["cat"] == (255, 0, 0)
    assert listing == [f"/default/img_0{i}.jpg defaultannot/img_0{i}.png" for i in range(3)]
    assert {f"default/img_0{i}.jpg" for i in range(3)} <= names
    assert frame0.shape == (H, W, 3)
    assert np.array_equal(np.all(frame0 == colours["cat"], axis=2), CAT_0)
    assert np.array_equal(np.all(frame2 == colours["cat"], axis=2), CAT_2)
    assert tuple(frame1[22, 18]) == colours["dog"]  # only the dog box is there
    assert tuple(frame1[45, 60]) == (0, 0, 0)

    fresh, after = await _round_trip(api, task, "CamVid 1.0", data)
    names_b = _names(fresh)
    # one mask per label and frame, exactly the painted pixels
    got = sorted((s["frame"], names_b[s["label_id"]]) for s in after["shapes"])
    assert got == [(0, "cat"), (1, "cat"), (1, "dog"), (2, "cat")]
    assert {s["type"] for s in after["shapes"]} == {"mask"}
    assert np.array_equal(_mask_union(after["shapes"], names_b, 0, "cat"), CAT_0)
    assert np.array_equal(_mask_union(after["shapes"], names_b, 2, "cat"), CAT_2)
    dog = _mask_union(after["shapes"], names_b, 1, "dog")
    assert np.array_equal(dog, np.all(frame1 == colours["dog"], axis=2))
    assert not after["tags"]


async def test_cityscapes_export_and_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "Cityscapes 1.0", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        colours = _colours(zf.read("label_colors.txt").decode())
        base = "gtFine/default/img_02_gtFine"
        color = _png(zf.read(f"{base}_color.png"))
        label_ids = _png(zf.read(f"{base}_labelIds.png"))
        with Image.open(io.BytesIO(zf.read(f"{base}_instanceIds.png"))) as im:
            assert im.mode in ("I;16", "I")  # 16-bit greyscale
            instance_ids = np.asarray(im).astype(np.int64)
    assert [n for n, _ in colours] == ["background", "cat", "dog", "person"]
    assert colours[0][1] == (0, 0, 0) and colours[1][1] == (255, 0, 0)
    assert {f"imgsFine/leftImg8bit/default/img_0{i}_leftImg8bit.jpg" for i in range(3)} <= names
    for i in range(3):
        for kind in ("color", "labelIds", "instanceIds"):
            assert f"gtFine/default/img_0{i}_gtFine_{kind}.png" in names
    assert np.array_equal(label_ids == 1, CAT_2) and set(np.unique(label_ids)) == {0, 1}
    assert np.array_equal(np.all(color == (255, 0, 0), axis=2), CAT_2)
    # the mask and the track's box: two cat instances (class 1 * 1000 + instance)
    values = set(np.unique(instance_ids).tolist()) - {0}
    assert len(values) == 2 and {v // 1000 for v in values} == {1}
    assert np.array_equal(instance_ids > 0, CAT_2)

    fresh, after = await _round_trip(api, task, "Cityscapes 1.0", data)
    names_b = _names(fresh)
    on_2 = [s for s in after["shapes"] if s["frame"] == 2]
    assert len(on_2) == 2 and {names_b[s["label_id"]] for s in on_2} == {"cat"}
    assert np.array_equal(_mask_union(after["shapes"], names_b, 2, "cat"), CAT_2)
    assert np.array_equal(_mask_union(after["shapes"], names_b, 0, "cat"), CAT_0)
    assert {(s["frame"], names_b[s["label_id"]]) for s in after["shapes"]} == {
        (0, "cat"), (1, "cat"), (1, "dog"), (2, "cat")
    }  # fmt: skip


async def test_kitti_export_and_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "KITTI 1.0", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        colours = _colours(zf.read("label_colors.txt").decode())
        lines = {i: zf.read(f"default/label_2/img_0{i}.txt").decode().split("\n") for i in range(3)}
        instance = _png(zf.read("default/instance/img_02.png")).astype(np.int64)
        semantic = _png(zf.read("default/semantic/img_02.png")).astype(np.int64)
        rgb = _png(zf.read("default/semantic_rgb/img_02.png"))
        polygon = _png(zf.read("default/instance/img_01.png")).astype(np.int64)
    assert [n for n, _ in colours] == ["background", "cat", "dog", "person"]
    assert {f"default/image_2/img_0{i}.jpg" for i in range(3)} <= names
    rows = {i: sorted(ln.split() for ln in text if ln) for i, text in lines.items()}
    for fields in (f for r in rows.values() for f in r):
        assert len(fields) == 16 and fields[3] == "-1" and fields[8:15] == ["-1"] * 7
    boxes = {
        i: sorted((f[0], f[2], *(float(v) for v in f[4:8])) for f in r) for i, r in rows.items()
    }
    assert boxes[0] == [("cat", "0", 0, 0, 10, 10), ("cat", "1", 1, 2, 30, 40)]
    assert boxes[1] == [("cat", "0", 5, 5, 15, 15), ("dog", "0", 5, 6, 20, 25)]
    assert boxes[2] == [("cat", "0", 10, 10, 20, 20)]
    # segmentation: the mask on frame 2 (boxes are not painted), the polygon on frame 1
    assert np.array_equal(instance > 0, _bitmap().astype(bool))
    assert set(np.unique(instance).tolist()) == {0, (1 << 8) | 1}
    assert set(np.unique(semantic).tolist()) == {0, 1}
    assert np.array_equal(np.all(rgb == (255, 0, 0), axis=2), _bitmap().astype(bool))
    assert np.array_equal(polygon > 0, POLYGON_1)

    fresh, after = await _round_trip(api, task, "KITTI 1.0", data)
    names_b = _names(fresh)
    got_boxes = sorted(
        (s["frame"], names_b[s["label_id"]], s["occluded"], s["points"])
        for s in after["shapes"]
        if s["type"] == "rectangle"
    )
    assert got_boxes == [
        (0, "cat", False, [0, 0, 10, 10]), (0, "cat", True, [1, 2, 30, 40]),
        (1, "cat", False, [5, 5, 15, 15]), (1, "dog", False, [5, 6, 20, 25]),
        (2, "cat", False, [10, 10, 20, 20]),
    ]  # fmt: skip
    assert np.array_equal(_mask_union(after["shapes"], names_b, 2, "cat"), _bitmap())
    assert np.array_equal(_mask_union(after["shapes"], names_b, 1, "cat"), POLYGON_1)
    assert len([s for s in after["shapes"] if s["type"] == "mask"]) == 2


async def test_open_images_export_and_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "Open Images V6 1.0", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())

        def rows(name: str) -> list[dict[str, str]]:
            return list(csv.DictReader(io.StringIO(zf.read(f"annotations/{name}").decode())))

        classes = list(
            csv.reader(io.StringIO(zf.read("annotations/class-descriptions.csv").decode()))
        )
        hierarchy = json.loads(zf.read("annotations/bbox_labels_600_hierarchy.json"))
        image_rows = rows("default-images-with-rotation.csv")
        tags = rows("default-annotations-human-imagelabels.csv")
        boxes = rows("default-annotations-bbox.csv")
        segments = rows("default-annotations-object-segmentation.csv")
        meta = zf.read("annotations/images.meta").decode().splitlines()
        mask_files = {
            r["MaskPath"]: _png(zf.read(f"masks/default/{r['MaskPath']}")) for r in segments
        }
    assert ["cat", "cat"] in classes and ["head", "head"] in classes
    assert hierarchy["Subcategory"] == [
        {"LabelName": "person", "Subcategory": [{"LabelName": "head"}, {"LabelName": "hand"}]}
    ]
    assert [(r["ImageID"], r["Subset"]) for r in image_rows] == [
        (f"img_0{i}", "default") for i in range(3)
    ]
    assert {f"images/default/img_0{i}.jpg" for i in range(3)} <= names
    assert [(t["ImageID"], t["LabelName"], t["Confidence"]) for t in tags] == [
        ("img_00", "cat", "1")
    ]
    got = sorted(
        (
            b["ImageID"], b["LabelName"], b["IsOccluded"], b["IsTruncated"],
            round(float(b["XMin"]) * W, 3), round(float(b["YMin"]) * H, 3),
            round(float(b["XMax"]) * W, 3), round(float(b["YMax"]) * H, 3),
        )
        for b in boxes
    )  # fmt: skip
    assert got == [
        ("img_00", "cat", "0", "-1", 0, 0, 10, 10), ("img_00", "cat", "1", "-1", 1, 2, 30, 40),
        ("img_01", "cat", "0", "-1", 5, 5, 15, 15), ("img_01", "dog", "0", "-1", 5, 6, 20, 25),
        ("img_02", "cat", "0", "-1", 10, 10, 20, 20),
    ]  # fmt: skip
    assert sorted((s["ImageID"], s["LabelName"]) for s in segments) == [
        ("img_01", "cat"), ("img_02", "cat")
    ]  # fmt: skip
    for s in segments:
        assert s["MaskPath"] == f"{s['ImageID']}_{s['LabelName']}_{s['BoxID']}.png"
        pixels = mask_files[s["MaskPath"]] > 0
        expected = _bitmap().astype(bool) if s["ImageID"] == "img_02" else POLYGON_1
        assert np.array_equal(pixels, expected)
    assert meta[0].startswith("#") and f"img_00 {H} {W}" in meta

    fresh, after = await _round_trip(api, task, "Open Images V6 1.0", data)
    names_b = _names(fresh)
    assert [(t["frame"], names_b[t["label_id"]]) for t in after["tags"]] == [(0, "cat")]
    got_boxes = sorted(
        (s["frame"], names_b[s["label_id"]], s["occluded"], [round(p, 3) for p in s["points"]])
        for s in after["shapes"]
        if s["type"] == "rectangle"
    )
    assert got_boxes == [
        (0, "cat", False, [0, 0, 10, 10]), (0, "cat", True, [1, 2, 30, 40]),
        (1, "cat", False, [5, 5, 15, 15]), (1, "dog", False, [5, 6, 20, 25]),
        (2, "cat", False, [10, 10, 20, 20]),
    ]  # fmt: skip
    assert np.array_equal(_mask_union(after["shapes"], names_b, 2, "cat"), _bitmap())
    assert np.array_equal(_mask_union(after["shapes"], names_b, 1, "cat"), POLYGON_1)


def _label_png(colour: tuple[int, int, int]) -> bytes:
    array = np.zeros((H, W, 3), np.uint8)
    array[5:10, 5:10] = colour
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


_OID_HEADER = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded\n"


@pytest.mark.parametrize(
    ("fmt", "files", "reason"),
    [
        (
            "CamVid 1.0",
            {
                "label_colors.txt": b"255 0 0 cat\n1 2 3 unicorn\n",
                "default.txt": b"/default/img_00.jpg defaultannot/img_00.png\n",
                "defaultannot/img_00.png": _label_png((1, 2, 3)),
            },
            "Label 'unicorn' is not in the task",
        ),
        (
            "CamVid 1.0",
            {
                "label_colors.txt": b"255 0 0 cat\n",
                "default.txt": b"/default/img_00.jpg defaultannot/img_00.png\n",
                "defaultannot/img_00.png": _label_png((9, 9, 9)),
            },
            "is not in label_colors.txt",
        ),
        (
            "CamVid 1.0",
            {
                "label_colors.txt": b"255 0 0 cat\n",
                "default.txt": b"/default/img_00.jpg ../../etc/passwd\n",
            },
            "no member '../../etc/passwd'",
        ),
        (
            "Cityscapes 1.0",
            {"gtFine/default/img_00_gtFine_instanceIds.png": _label_png((1, 1, 1))},
            "no label_colors.txt",
        ),
        (
            "KITTI 1.0",
            {
                "label_colors.txt": b"0 0 0 background\n255 0 0 cat\n",
                "default/instance/img_00.png": b"not a png at all",
            },
            "not a readable PNG",
        ),
        (
            "KITTI 1.0",
            {"default/label_2/img_00.txt": b"cat 0 0 -1 1 2 3\n"},
            "expected 15 or 16 fields",
        ),
        (
            "KITTI 1.0",
            {"default/label_2/img_00.txt": b"unicorn 0 0 -1 1 2 3 4 -1 -1 -1 -1 -1 -1 -1\n"},
            "Label 'unicorn' is not in the task",
        ),
        (
            "Open Images V6 1.0",
            {
                "annotations/class-descriptions.csv": b"cat,cat\n",
                "annotations/default-annotations-bbox.csv": (
                    _OID_HEADER + "img_00,,unicorn,1,0.1,0.2,0.1,0.2,0\n"
                ).encode(),
            },
            "label 'unicorn' is not in the class descriptions",
        ),
        (
            "Open Images V6 1.0",
            {
                "annotations/class-descriptions.csv": b"cat,cat\n",
                "annotations/default-annotations-object-segmentation.csv": (
                    b"MaskPath,ImageID,LabelName,BoxID\n../../evil.png,img_00,cat,0\n"
                ),
            },
            "is not a file name",
        ),
    ],
)
async def test_bad_imports_fail_and_change_nothing(
    client_for: Any, alice: Account, fmt: str, files: dict[str, bytes], reason: str
) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    before = await task_annotations(api, task)
    body = await import_file(api, "task", task["id"], fmt, "bad.zip", zip_bytes(files))
    assert body["status"] == "failed"
    assert reason in str(body["message"]), body["message"]
    assert await task_annotations(api, task) == before


# ------------------------------------------------------- archives written from the layouts


def _png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _regions(*values: tuple[int, np.ndarray]) -> np.ndarray:
    out = np.zeros((H, W), np.uint16)
    for v, where in values:
        out[where] = v
    return out


A, B, C = _box(2, 2, 10, 10), _box(20, 5, 30, 15), _box(40, 20, 60, 40)

_OID_BOX = "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated\n"

_MADE: dict[str, dict[str, bytes]] = {
    # CamVid: a greyscale (label index) mask, background first
    "CamVid 1.0": {
        "label_colors.txt": b"255 0 0 cat\n0 0 255 dog\n",
        "train.txt": b"/train/img_00.jpg trainannot/img_00.png\n/train/img_01.jpg \n",
        "trainannot/img_00.png": _png_bytes(_regions((1, A), (2, B)).astype(np.uint8)),
    },
    # Cityscapes: a crowd region (the class id alone) and two dog instances
    "Cityscapes 1.0": {
        "label_colors.txt": b"0 0 0 background\n255 0 0 cat\n0 0 255 dog\n",
        "gtFine/val/somecity/img_00_gtFine_instanceIds.png": _png_bytes(
            _regions((1, A), (2001, B), (2002, C))
        ),
    },
    # KITTI: a box truncated by half (dog has no such attribute: left out), a cat instance
    "KITTI 1.0": {
        "label_colors.txt": b"0 0 0 background\n255 0 0 cat\n",
        "training/label_2/img_00.txt": b"dog 0.50 1 -1.57 1 2 30 40 -1 -1 -1 -1 -1 -1 -1\n",
        "training/instance/img_00.png": _png_bytes(_regions((257, A))),
    },
    # Open Images: V6's own class file (with a header), a box and a mask resized by images.meta
    "Open Images V6 1.0": {
        "annotations/oidv6-class-descriptions.csv": b"LabelName,DisplayName\ncat,Cat\ndog,Dog\n",
        "annotations/train-annotations-bbox.csv": (
            _OID_BOX + "img_00,xclick,dog,1,0.25,0.5,0.125,0.5,1,1\n"
        ).encode(),
        "annotations/train-annotations-object-segmentation.csv": (
            b"MaskPath,ImageID,LabelName,BoxID,BoxXMin,BoxXMax,BoxYMin,BoxYMax,PredictedIoU,"
            b"Clicks\nm.png,img_00,cat,0,,,,,,\n"
        ),
        "annotations/images.meta": f"img_00 {H} {W}\n".encode(),
        # half the image's size: resized to 64 x 48 (nearest)
        "masks/train/m.png": _png_bytes((_box(2, 2, 10, 10)[::2, ::2] * 255).astype(np.uint8)),
    },
}


@pytest.mark.parametrize("fmt", FORMATS)
async def test_archives_written_from_the_layouts_import(
    client_for: Any, alice: Account, fmt: str
) -> None:
    api = client_for(alice)
    task = await labelled_task(api, images(2))
    body = await import_file(api, "task", task["id"], fmt, "made.zip", zip_bytes(_MADE[fmt]))
    assert body["status"] == "finished", body
    after = await task_annotations(api, task)
    names = _names(task)
    shapes = after["shapes"]
    assert {s["frame"] for s in shapes} == {0}
    if fmt == "CamVid 1.0":
        assert np.array_equal(_mask_union(shapes, names, 0, "cat"), A)
        assert np.array_equal(_mask_union(shapes, names, 0, "dog"), B)
    elif fmt == "Cityscapes 1.0":
        assert np.array_equal(_mask_union(shapes, names, 0, "cat"), A)
        dogs = [s for s in shapes if names[s["label_id"]] == "dog"]
        assert len(dogs) == 2
        assert np.array_equal(_mask_union(shapes, names, 0, "dog"), B | C)
    elif fmt == "KITTI 1.0":
        (box,) = [s for s in shapes if s["type"] == "rectangle"]
        assert (names[box["label_id"]], box["points"], box["occluded"]) == (
            "dog",
            [1, 2, 30, 40],
            True,
        )
        assert box["attributes"] == []
        assert np.array_equal(_mask_union(shapes, names, 0, "cat"), A)
    else:
        (box,) = [s for s in shapes if s["type"] == "rectangle"]
        assert names[box["label_id"]] == "dog" and box["occluded"] is True
        assert box["attributes"] == []  # IsTruncated: dog has no such attribute
        assert box["points"] == [0.25 * W, 0.125 * H, 0.5 * W, 0.5 * H]
        (mask,) = [s for s in shapes if s["type"] == "mask"]
        decoded = masks.cvat_to_bitmap(mask["points"], W, H).astype(bool)
        # every other pixel of the box was kept, then doubled back
        assert np.array_equal(decoded, _box(2, 2, 11, 11))


def _flag(name: str) -> dict[str, Any]:
    return {
        "name": name, "mutable": False, "input_type": "checkbox",
        "values": ["false"], "default_value": "false",
    }  # fmt: skip


async def test_format_attributes_come_back_where_the_label_has_them(
    client_for: Any, alice: Account
) -> None:
    """KITTI's ``truncated`` and Cityscapes' ``is_crowd`` survive a round trip on a label
    with those attributes."""
    api = client_for(alice)
    labels = [
        {"name": "car", "color": "#00ff00", "attributes": [_flag("truncated"), _flag("is_crowd")]}
    ]
    task = await labelled_task(api, images(1), labels)
    car = task["labels_by_name"]["car"]
    spec = {a["name"]: a["id"] for a in car["attributes"]}
    r = await api.put(
        f"/api/tasks/{task['id']}/annotations/",
        json={"shapes": [
            {"type": "rectangle", "frame": 0, "label_id": car["id"], "points": [1, 2, 30, 40],
             "attributes": [{"spec_id": spec["truncated"], "value": "true"}]},
            {"type": "polygon", "frame": 0, "label_id": car["id"],
             "points": [40, 5, 60, 5, 60, 20, 40, 20],
             "attributes": [{"spec_id": spec["is_crowd"], "value": "true"}]},
        ]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    kitti = await export_dataset(api, "task", task["id"], "KITTI 1.0")
    city = await export_dataset(api, "task", task["id"], "Cityscapes 1.0")
    with zipfile.ZipFile(io.BytesIO(kitti)) as zf:
        (line,) = zf.read("default/label_2/img_00.txt").decode().splitlines()
    assert line.split()[:3] == ["car", "1.0", "0"]
    with zipfile.ZipFile(io.BytesIO(city)) as zf:
        ids = _png(zf.read("gtFine/default/img_00_gtFine_instanceIds.png")).astype(np.int64)
    # the crowd polygon is the class id alone (car is class 1: background, car), the box an
    # instance of it
    assert set(np.unique(ids).tolist()) == {0, 1, 1001}
    assert np.array_equal(ids == 1, _box(40, 5, 60, 20))
    for fmt, data, kind, attr in (
        ("KITTI 1.0", kitti, "rectangle", "truncated"),
        ("Cityscapes 1.0", city, "mask", "is_crowd"),
    ):
        fresh = await labelled_task(api, images(1), labels)
        body = await import_file(api, "task", fresh["id"], fmt, "d.zip", data)
        assert body["status"] == "finished", body
        shapes = [s for s in (await task_annotations(api, fresh))["shapes"] if s["type"] == kind]
        names = {a["id"]: a["name"] for a in fresh["labels_by_name"]["car"]["attributes"]}
        flagged = [
            s
            for s in shapes
            if {names[a["spec_id"]]: a["value"] for a in s["attributes"]}.get(attr) == "true"
        ]
        assert len(flagged) == 1, (fmt, shapes)
        if kind == "mask":
            bitmap = masks.cvat_to_bitmap(flagged[0]["points"], W, H).astype(bool)
            assert np.array_equal(bitmap, _box(40, 5, 60, 20))
        else:
            assert flagged[0]["points"] == [1, 2, 30, 40]


# a member each subset of a project export has, per format
_SUBSET_MEMBER = {
    "CamVid 1.0": "{subset}.txt",
    "Cityscapes 1.0": "gtFine/{subset}/{prefix}_1_gtFine_instanceIds.png",
    "KITTI 1.0": "{subset}/label_2/{prefix}_1.txt",
    "Open Images V6 1.0": "annotations/{subset}-annotations-bbox.csv",
}


async def _two_subsets(api: httpx.AsyncClient) -> tuple[int, list[int]]:
    """A project with tasks ``train`` (a_0.jpg, a_1.jpg) and ``val`` (b_0.jpg, b_1.jpg), each
    with a box [n, n, 9, 9] on frame 1 (n: the task's place)."""
    r = await api.post("/api/projects", json={"name": "p", "labels": [{"name": "cat"}]})
    assert r.status_code == 201, r.text
    project = r.json()["id"]
    task_ids = []
    for subset, prefix in (("train", "a"), ("val", "b")):
        r = await api.post(
            "/api/tasks", json={"name": subset, "project_id": project, "subset": subset}
        )
        assert r.status_code == 201, r.text
        files = {f"{prefix}_{i}.jpg": data for i, data in enumerate(images(2).values())}
        rq = (await upload(api, r.json()["id"], files)).json()["rq_id"]
        assert (await wait(api, rq))["status"] == "finished"
        task_ids.append(r.json()["id"])
    cat = (await api.get(f"/api/labels?project_id={project}")).json()["results"][0]["id"]
    for n, task_id in enumerate(task_ids):
        shape = {"type": "rectangle", "frame": 1, "label_id": cat, "points": [n, n, 9, 9]}
        r = await api.put(f"/api/tasks/{task_id}/annotations/", json={"shapes": [shape]})
        assert r.status_code == 200, r.text
    return project, task_ids


def _check_box(shapes: list[dict[str, Any]], n: int, fmt: str) -> None:
    """One shape on frame 1: the box [n, n, 9, 9] (painted, for mask formats)."""
    assert [s["frame"] for s in shapes] == [1], (fmt, shapes)
    if shapes[0]["type"] == "mask":  # painted: the box's pixels
        bitmap = masks.cvat_to_bitmap(shapes[0]["points"], W, H).astype(bool)
        assert np.array_equal(bitmap, _box(n, n, 9, 9))
    else:
        assert [round(p, 3) for p in shapes[0]["points"]] == [n, n, 9, 9]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_project_export_by_subset_and_import(
    client_for: Any, alice: Account, fmt: str
) -> None:
    """A project's tasks export as subsets (train, val); the project import fills each task
    again by image name."""
    api = client_for(alice)
    project, task_ids = await _two_subsets(api)
    data = await export_dataset(api, "project", project, fmt)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
    for subset, prefix in (("train", "a"), ("val", "b")):
        assert _SUBSET_MEMBER[fmt].format(subset=subset, prefix=prefix) in names, names
    for task_id in task_ids:
        assert (await api.delete(f"/api/tasks/{task_id}/annotations/")).status_code == 204
    body = await import_file(api, "project", project, fmt, "p.zip", data)
    assert body["status"] == "finished", body
    for n, task_id in enumerate(task_ids):
        shapes = (await api.get(f"/api/tasks/{task_id}/annotations/")).json()["shapes"]
        _check_box(shapes, n, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_project_export_with_images_makes_a_task_per_subset(
    client_for: Any, alice: Account, fmt: str
) -> None:
    """With its images, a project export imported into another project makes a task per
    subset (CVAT's create_from_dataset), unannotated images included; the mask files are
    never taken for images."""
    api = client_for(alice)
    project, _ = await _two_subsets(api)
    data = await export_dataset(api, "project", project, fmt, save_images=True)
    tasks = await import_into_new_project(api, [{"name": "cat"}], fmt, data)
    assert sorted((t["name"], t["subset"], t["size"]) for t in tasks) == [
        ("train", "train", 2),
        ("val", "val", 2),
    ], (fmt, tasks)
    for task in tasks:
        n = ["train", "val"].index(task["subset"])
        frames = (await api.get(f"/api/tasks/{task['id']}/data/meta")).json()["frames"]
        prefix = "ab"[n]
        assert [f["name"].rpartition(".")[0] for f in frames] == [f"{prefix}_0", f"{prefix}_1"]
        shapes = (await api.get(f"/api/tasks/{task['id']}/annotations/")).json()["shapes"]
        _check_box(shapes, n, fmt)
