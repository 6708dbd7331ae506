"""ICDAR Recognition, Localization and Segmentation 1.0 through the API: each export read back
with plain parsing (text, PIL) against the layout datumaro writes, a round trip into a fresh
task keeping what the format keeps, and bad archives failing cleanly without a change."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx
import numpy as np
from PIL import Image

from cvat_ray.storage.formats import masks
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

W, H = 64, 48  # the size of factories.images()
REC, LOC, SEG = "ICDAR Recognition 1.0", "ICDAR Localization 1.0", "ICDAR Segmentation 1.0"


def _text_attr(name: str) -> dict[str, Any]:
    return {"name": name, "mutable": False, "input_type": "text", "values": [],
            "default_value": ""}  # fmt: skip


LABELS: list[dict[str, Any]] = [
    {"name": "icdar", "attributes": [_text_attr(n) for n in ("text", "index", "color", "center")]},
    {"name": "cat"},
]
TEXT_ONLY: list[dict[str, Any]] = [{"name": "icdar", "attributes": [_text_attr("text")]}]


def _bmp(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="BMP")
    return buf.getvalue()


async def _put(api: httpx.AsyncClient, task: dict[str, Any], body: dict[str, Any]) -> None:
    r = await api.put(f"/api/tasks/{task['id']}/annotations/", json=body)
    assert r.status_code == 200, r.text


def _attrs(task: dict[str, Any], values: dict[str, str]) -> list[dict[str, Any]]:
    specs = {a["name"]: a["id"] for a in task["labels_by_name"]["icdar"]["attributes"]}
    return [{"spec_id": specs[k], "value": v} for k, v in values.items()]


def _values(task: dict[str, Any], obj: dict[str, Any]) -> dict[str, str]:
    names = {a["id"]: a["name"] for lb in task["labels_by_name"].values() for a in lb["attributes"]}
    return {names[a["spec_id"]]: a["value"] for a in obj["attributes"] if a["value"] != ""}


def _shape(
    task: dict[str, Any], kind: str, frame: int, points: list[float], **extra: Any
) -> dict[str, Any]:
    label = extra.pop("label", "icdar")
    attrs = extra.pop("attrs", {})
    return {"type": kind, "frame": frame, "label_id": task["labels_by_name"][label]["id"],
            "points": points, "attributes": _attrs(task, attrs) if attrs else [],
            **extra}  # fmt: skip


async def _annotated(api: httpx.AsyncClient) -> dict[str, Any]:
    """A task with one box, to see a failed import leave it as it was."""
    task = await labelled_task(api, images(1), LABELS)
    await _put(api, task, {"shapes": [_shape(task, "rectangle", 0, [1, 1, 5, 5])]})
    return task


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


async def test_the_three_formats_are_listed_enabled(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    body = (await api.get("/api/server/annotation/formats")).json()
    exporters = {f["name"]: f["enabled"] for f in body["exporters"]}
    importers = {f["name"]: f["enabled"] for f in body["importers"]}
    for name in (REC, LOC, SEG):
        assert exporters[name] is True and importers[name] is True, name


# ---------------------------------------------------------------------- Recognition


async def _recognition_task(api: httpx.AsyncClient) -> dict[str, Any]:
    task = await labelled_task(api, images(3), LABELS)
    icdar = task["labels_by_name"]["icdar"]["id"]
    await _put(api, task, {
        "tags": [
            {"frame": 0, "label_id": icdar, "attributes": _attrs(task, {"text": "hello world"})},
            {"frame": 1, "label_id": icdar, "attributes": _attrs(task, {"text": 'say "hi"'})},
        ],
        "shapes": [_shape(task, "rectangle", 1, [1, 2, 10, 20], attrs={"text": "box"})],
    })  # fmt: skip
    return task


async def test_recognition_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _recognition_task(api)
    files = _members(await export_dataset(api, "task", task["id"], REC, save_images=True))
    assert set(files) == {"default/gt.txt", *(f"default/images/img_{i:02d}.jpg" for i in range(3))}
    assert files["default/images/img_01.jpg"] == images(3)["img_01.jpg"]
    assert files["default/gt.txt"].decode().splitlines() == [
        'img_00.jpg, "hello world"',
        'img_01.jpg, "say "hi""',
        'img_01.jpg, "box"',  # a shape's text too, as CVAT's LabelToCaption
        "img_02.jpg, ",
    ]
    bare = _members(await export_dataset(api, "task", task["id"], REC))
    assert set(bare) == {"default/gt.txt"}
    assert bare["default/gt.txt"] == files["default/gt.txt"]


async def test_recognition_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _recognition_task(api)
    data = await export_dataset(api, "task", task["id"], REC)
    fresh = await labelled_task(api, images(3), TEXT_ONLY)
    body = await import_file(api, "task", fresh["id"], REC, "r.zip", data)
    assert body["status"] == "finished", body
    after = await task_annotations(api, fresh)
    assert after["shapes"] == []
    got = sorted((t["frame"], _values(fresh, t)["text"]) for t in after["tags"])
    assert got == [(0, "hello world"), (1, "box"), (1, 'say "hi"')]
    icdar = fresh["labels_by_name"]["icdar"]["id"]
    assert {t["label_id"] for t in after["tags"]} == {icdar}


async def test_recognition_bad_imports(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    await bad_import(api, task, REC, zip_bytes({"readme.md": b"x"}), "<subset>/gt.txt")
    await bad_import(
        api, task, REC, zip_bytes({"default/gt.txt": b"img_00.jpg\n"}), "default/gt.txt:1: expected"
    )
    plain = await labelled_task(api, images(1), [{"name": "cat"}])
    await _put(api, plain, {"shapes": [_shape(plain, "rectangle", 0, [1, 1, 5, 5], label="cat")]})
    await bad_import(
        api, plain, REC, zip_bytes({"default/gt.txt": b'img_00.jpg, "a"\n'}), "Label 'icdar'"
    )


# ---------------------------------------------------------------------- Localization


async def _localization_task(api: httpx.AsyncClient) -> dict[str, Any]:
    task = await labelled_task(api, images(3), LABELS)
    await _put(api, task, {
        "shapes": [
            _shape(task, "rectangle", 0, [1, 2, 30, 40], attrs={"text": "abc"}),
            _shape(task, "polygon", 0, [5, 5, 20, 5, 20, 20, 5, 20], attrs={"text": "x y"}),
            _shape(task, "rectangle", 1, [10, 10, 30, 20], rotation=90),
            _shape(task, "rectangle", 1, [1, 2, 3, 4], label="cat"),
            _shape(task, "points", 1, [1, 2], label="cat"),
        ],
    })  # fmt: skip
    return task


async def test_localization_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _localization_task(api)
    files = _members(await export_dataset(api, "task", task["id"], LOC, save_images=True))
    gts = {f"default/gt_img_{i:02d}.txt" for i in range(3)}
    assert set(files) == gts | {f"default/images/img_{i:02d}.jpg" for i in range(3)}
    assert files["default/images/img_02.jpg"] == images(3)["img_02.jpg"]
    assert files["default/gt_img_00.txt"].decode().splitlines() == [
        '1.0 2.0 30.0 40.0 "abc"',
        '5.0,5.0,20.0,5.0,20.0,20.0,5.0,20.0,"x y"',
    ]
    rotated, box = files["default/gt_img_01.txt"].decode().splitlines()
    # the rotated box as its corners (centre 20,15; turned 90 degrees)
    corners = [round(float(v)) for v in rotated.split(",")]
    assert corners == [25, 5, 25, 25, 15, 25, 15, 5]
    assert box == "1.0 2.0 3.0 4.0"  # any label, without a text
    assert files["default/gt_img_02.txt"] == b""
    bare = _members(await export_dataset(api, "task", task["id"], LOC))
    assert set(bare) == gts


async def test_localization_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _localization_task(api)
    data = await export_dataset(api, "task", task["id"], LOC)
    fresh = await labelled_task(api, images(3), TEXT_ONLY)
    body = await import_file(api, "task", fresh["id"], LOC, "l.zip", data)
    assert body["status"] == "finished", body
    after = await task_annotations(api, fresh)
    got = sorted(
        (s["frame"], s["type"], [round(p) for p in s["points"]], _values(fresh, s).get("text"))
        for s in after["shapes"]
    )
    assert got == [
        (0, "polygon", [5, 5, 20, 5, 20, 20, 5, 20], "x y"),
        (0, "rectangle", [1, 2, 30, 40], "abc"),
        (1, "polygon", [25, 5, 25, 25, 15, 25, 15, 5], None),
        (1, "rectangle", [1, 2, 3, 4], None),
    ]


async def test_localization_reads_icdar15_lines(client_for: Any, alice: Account) -> None:
    """ICDAR 15's unquoted transcriptions and comma-separated boxes."""
    api = client_for(alice)
    task = await labelled_task(api, images(1), TEXT_ONLY)
    gt = b"1,2,30,2,30,20,1,20,Genaxis Theatre\n4,5,6,7,###\n\n"
    body = await import_file(
        api, "task", task["id"], LOC, "l.zip", zip_bytes({"gt_img_00.txt": gt})
    )
    assert body["status"] == "finished", body
    shapes = (await task_annotations(api, task))["shapes"]
    got = sorted((s["type"], s["points"], _values(task, s)["text"]) for s in shapes)
    assert got == [
        ("polygon", [1, 2, 30, 2, 30, 20, 1, 20], "Genaxis Theatre"),
        ("rectangle", [4, 5, 6, 7], "###"),
    ]


async def test_localization_bad_imports(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    await bad_import(api, task, LOC, zip_bytes({"default/images/a.jpg": b"x"}), "gt_<image>.txt")
    await bad_import(
        api, task, LOC, zip_bytes({"default/gt_img_00.txt": b'1 2 3 "t"\n'}), "got 3 coordinates"
    )
    await bad_import(
        api, task, LOC, zip_bytes({"default/gt_img_00.txt": b'1 2 x 4 "t"\n'}), "'x' is not"
    )
    await bad_import(
        api, task, LOC, zip_bytes({"default/gt_nothing.txt": b"1 2 3 4\n"}), "matches no frame"
    )


# ---------------------------------------------------------------------- Segmentation


def _rect_bitmap(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    out = np.zeros((H, W), bool)
    out[y1 : y2 + 1, x1 : x2 + 1] = True
    return out


async def _segmentation_task(api: httpx.AsyncClient) -> dict[str, Any]:
    task = await labelled_task(api, images(3), LABELS)
    await _put(api, task, {
        "shapes": [
            _shape(task, "rectangle", 0, [2, 2, 10, 10], group=1,
                   attrs={"text": "H", "index": "0"}),
            _shape(task, "rectangle", 0, [12, 2, 20, 10], group=1,
                   attrs={"text": "i", "index": "1"}),
            _shape(task, "rectangle", 0, [30, 30, 40, 40],
                   attrs={"text": "!", "index": "2", "color": "10 20 30", "center": "35 35"}),
            _shape(task, "polygon", 1, [5, 5, 25, 5, 25, 25, 5, 25], label="cat"),
        ],
    })  # fmt: skip
    return task


async def test_segmentation_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _segmentation_task(api)
    files = _members(await export_dataset(api, "task", task["id"], SEG, save_images=True))
    notes = {f"default/img_{i:02d}_GT.txt" for i in range(3)}
    gt_masks = {"default/img_00_GT.bmp", "default/img_01_GT.bmp"}
    assert set(files) == notes | gt_masks | {f"default/images/img_{i:02d}.jpg" for i in range(3)}
    assert files["default/images/img_00.jpg"] == images(3)["img_00.jpg"]
    # a group on consecutive lines, a blank line before the next object
    assert files["default/img_00_GT.txt"].decode().splitlines() == [
        '128 0 0 - - 2 2 10 10 "H"',
        '0 128 0 - - 12 2 20 10 "i"',
        "",
        '10 20 30 35 35 30 30 40 40 "!"',
    ]
    assert files["default/img_01_GT.txt"].decode() == '128 0 0 - - 5 5 25 25 ""\n'
    assert files["default/img_02_GT.txt"] == b""
    bmp = np.asarray(Image.open(io.BytesIO(files["default/img_00_GT.bmp"])).convert("RGB"))
    assert bmp.shape == (H, W, 3)
    assert tuple(bmp[0, 0]) == (255, 255, 255)
    assert tuple(bmp[5, 5]) == (128, 0, 0)
    assert tuple(bmp[5, 15]) == (0, 128, 0)
    assert tuple(bmp[35, 35]) == (10, 20, 30)
    assert np.array_equal((bmp == (128, 0, 0)).all(axis=2), _rect_bitmap(2, 2, 10, 10))
    bare = _members(await export_dataset(api, "task", task["id"], SEG))
    assert set(bare) == notes | gt_masks


async def test_segmentation_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _segmentation_task(api)
    data = await export_dataset(api, "task", task["id"], SEG)
    fresh = await labelled_task(api, images(3), LABELS)
    body = await import_file(api, "task", fresh["id"], SEG, "s.zip", data)
    assert body["status"] == "finished", body
    shapes = (await task_annotations(api, fresh))["shapes"]
    assert {s["type"] for s in shapes} == {"mask"}
    by_text = {(s["frame"], _values(fresh, s).get("text", "")): s for s in shapes}
    assert sorted(by_text) == [(0, "!"), (0, "H"), (0, "i"), (1, "")]
    for key, box in {(0, "H"): (2, 2, 10, 10), (0, "i"): (12, 2, 20, 10),
                     (0, "!"): (30, 30, 40, 40), (1, ""): (5, 5, 25, 25)}.items():  # fmt: skip
        bitmap = masks.cvat_to_bitmap(by_text[key]["points"], W, H).astype(bool)
        assert np.array_equal(bitmap, _rect_bitmap(*box)), key
    h, i, bang = by_text[(0, "H")], by_text[(0, "i")], by_text[(0, "!")]
    assert h["group"] == i["group"] != 0 and bang["group"] == 0
    assert _values(fresh, bang) == {"text": "!", "index": "2", "color": "10 20 30",
                                    "center": "35 35"}  # fmt: skip
    assert _values(fresh, h) == {"text": "H", "index": "0", "color": "128 0 0"}
    # a label without index/color/center: those are left out
    plain = await labelled_task(api, images(3), TEXT_ONLY)
    body = await import_file(api, "task", plain["id"], SEG, "s.zip", data, conv_mask_to_poly=True)
    assert body["status"] == "finished", body
    shapes = (await task_annotations(api, plain))["shapes"]
    assert {s["type"] for s in shapes} == {"polygon"}
    assert sorted(_values(plain, s).get("text", "") for s in shapes) == ["", "!", "H", "i"]


async def test_segmentation_project_import_with_images(client_for: Any, alice: Account) -> None:
    """The _GT.bmp masks are never taken for images: the new task has the three frames."""
    api = client_for(alice)
    task = await _segmentation_task(api)
    data = await export_dataset(api, "task", task["id"], SEG, save_images=True)
    tasks = await import_into_new_project(api, LABELS, SEG, data)
    assert [(t["name"], t["size"]) for t in tasks] == [("default", 3)]
    shapes = (await api.get(f"/api/tasks/{tasks[0]['id']}/annotations/")).json()["shapes"]
    assert sorted(s["frame"] for s in shapes) == [0, 0, 0, 1]


async def test_segmentation_bad_imports(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    note = b'255 0 0 - - 0 0 3 3 "a"\n'
    red = np.full((H, W, 3), 255, np.uint8)
    red[:4, :4] = (255, 0, 0)
    green = red.copy()
    green[10:12, 10:12] = (0, 255, 0)
    await bad_import(api, task, SEG, zip_bytes({"readme.md": b"x"}), "<image>_GT.txt")
    await bad_import(
        api, task, SEG, zip_bytes({"default/img_00_GT.txt": note}), "the mask is missing"
    )
    await bad_import(
        api, task, SEG,
        zip_bytes({"default/img_00_GT.txt": note, "default/img_00_GT.bmp": _bmp(green)}),
        "the colour (0, 255, 0) is not listed",
    )  # fmt: skip
    await bad_import(
        api, task, SEG,
        zip_bytes({"default/img_00_GT.txt": b"255 0 0 1 2\n", "default/img_00_GT.bmp": _bmp(red)}),
        "expected 'R G B cx cy x1 y1 x2 y2",
    )  # fmt: skip
    await bad_import(
        api, task, SEG,
        zip_bytes({"default/img_00_GT.txt": note, "default/img_00_GT.bmp": b"not an image"}),
        "img_00_GT.bmp",
    )  # fmt: skip
