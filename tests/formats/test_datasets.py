"""Dataset export and import through the API, checked by real readers (pycocotools), by
round trips into fresh tasks, and against CVAT-made files written from their documented
layouts; bad input fails cleanly and changes nothing."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import httpx
import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from cvat_ray.storage.formats import masks
from tests.conftest import Account
from tests.factories import (
    export_dataset,
    images,
    import_file,
    labelled_task,
    task_annotations,
    upload,
    wait,
    zip_bytes,
)

W, H = 64, 48  # the size of factories.images()


def _mask_points(bitmap: np.ndarray) -> list[float]:
    points = masks.bitmap_to_cvat(bitmap)
    assert points is not None
    return points


def _bitmap() -> np.ndarray:
    bitmap = np.zeros((H, W), np.uint8)
    bitmap[10:20, 5:30] = 1
    bitmap[15:30, 20:25] = 1
    return bitmap


def _payload(task: dict[str, Any]) -> dict[str, Any]:
    by = task["labels_by_name"]
    cat, dog, person = by["cat"]["id"], by["dog"]["id"], by["person"]["id"]
    specs = {a["name"]: a["id"] for a in by["dog"]["attributes"]}
    head, hand = (
        next(s["id"] for s in by["person"]["sublabels"] if s["name"] == n) for n in ("head", "hand")
    )
    return {
        "tags": [{"frame": 0, "label_id": cat, "group": 0, "source": "manual", "attributes": []}],
        "shapes": [
            {
                "type": "rectangle",
                "frame": 0,
                "label_id": cat,
                "points": [1, 2, 30, 40],
                "z_order": 1,
                "occluded": True,
            },
            {
                "type": "rectangle",
                "frame": 1,
                "label_id": dog,
                "points": [5, 6, 20, 25],
                "attributes": [
                    {"spec_id": specs["color"], "value": "b"},
                    {"spec_id": specs["age"], "value": "7"},
                ],
            },
            {
                "type": "polygon",
                "frame": 1,
                "label_id": cat,
                "points": [1, 1, 20, 1, 20, 15, 1, 15],
            },
            {"type": "mask", "frame": 2, "label_id": cat, "points": _mask_points(_bitmap())},
            {"type": "points", "frame": 2, "label_id": dog, "points": [3, 4, 5, 6]},
            {
                "type": "skeleton",
                "frame": 0,
                "label_id": person,
                "points": [],
                "elements": [
                    {"type": "points", "frame": 0, "label_id": head, "points": [10, 10]},
                    {"type": "points", "frame": 0, "label_id": hand, "points": [12, 20]},
                ],
            },
        ],
        "tracks": [
            {
                "frame": 0,
                "label_id": cat,
                "shapes": [
                    {"type": "rectangle", "frame": 0, "points": [0, 0, 10, 10]},
                    {"type": "rectangle", "frame": 2, "points": [10, 10, 20, 20]},
                ],
            },
        ],
    }


async def _annotated(api: httpx.AsyncClient, frames: int = 3) -> dict[str, Any]:
    task = await labelled_task(api, images(frames))
    r = await api.put(f"/api/tasks/{task['id']}/annotations/", json=_payload(task))
    assert r.status_code == 200, r.text
    return task


def _names(task: dict[str, Any]) -> dict[int, str]:
    out = {}
    for lb in task["labels_by_name"].values():
        out[lb["id"]] = lb["name"]
        for sub in lb.get("sublabels", []):
            out[sub["id"]] = f"{lb['name']}.{sub['name']}"
    return out


def _attr_names(task: dict[str, Any]) -> dict[int, str]:
    return {a["id"]: a["name"] for lb in task["labels_by_name"].values() for a in lb["attributes"]}


def _canon_shape(
    s: dict[str, Any], names: dict[int, str], attrs: dict[int, str]
) -> tuple[Any, ...]:
    return (
        s["frame"], s["type"], names[s["label_id"]], tuple(round(p, 1) for p in s["points"]),
        s["occluded"], s["z_order"],
        tuple(sorted((attrs[a["spec_id"]], a["value"]) for a in s["attributes"])),
        tuple(sorted((names[e["label_id"]], tuple(e["points"])) for e in s.get("elements", []))),
    )  # fmt: skip


async def test_formats_list_cvats_names(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    r = await api.get("/api/server/annotation/formats")
    assert r.status_code == 200
    body = r.json()
    exporters = {f["name"]: f for f in body["exporters"]}
    importers = {f["name"]: f for f in body["importers"]}
    for name in ("CVAT for images 1.1", "CVAT for video 1.1", "COCO 1.0", "YOLO 1.1"):
        assert exporters[name]["enabled"] is True
    for name in ("CVAT 1.1", "COCO 1.0", "YOLO 1.1"):
        assert importers[name]["enabled"] is True
    assert importers["COCO 1.0"]["ext"] == "JSON, ZIP"
    assert exporters["Datumaro 3D 1.0"]["enabled"] is False
    assert exporters["Datumaro 3D 1.0"]["dimension"] == "3d"
    assert "CVAT for images 1.1" not in importers and "CVAT 1.1" not in exporters
    for f in body["exporters"] + body["importers"]:
        assert set(f) == {"name", "ext", "version", "enabled", "dimension"}
        assert f["name"].endswith(" " + f["version"])


async def test_coco_export_opens_in_pycocotools(
    client_for: Any, alice: Account, tmp_path: Any
) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "COCO 1.0", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        assert "annotations/instances_default.json" in names
        assert {f"images/default/img_{i:02d}.jpg" for i in range(3)} <= names
        (tmp_path / "coco.json").write_bytes(zf.read("annotations/instances_default.json"))
    coco = COCO(str(tmp_path / "coco.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cat", "dog", "person"]
    assert len(coco.getImgIds()) == 3
    anns = coco.loadAnns(coco.getAnnIds())
    # 2 boxes + polygon + mask + the track's box on frames 0, 1, 2 (points/skeleton dropped)
    assert len(anns) == 7
    mask_ann = next(a for a in anns if a["iscrowd"] == 1)
    decoded = coco.annToMask(mask_ann)
    assert decoded.shape == (H, W)
    assert np.array_equal(decoded, _bitmap())
    rle = coco_mask.frPyObjects(mask_ann["segmentation"], H, W)
    assert coco_mask.area(rle) == int(_bitmap().sum())
    track_boxes = sorted((a["image_id"], a["bbox"]) for a in anns if "track_id" in a["attributes"])
    assert track_boxes == [(1, [0, 0, 10, 10]), (2, [5, 5, 10, 10]), (3, [10, 10, 10, 10])]


@pytest.mark.parametrize(
    ("export_fmt", "import_fmt"),
    [
        ("CVAT for video 1.1", "CVAT 1.1"),
        ("CVAT for images 1.1", "CVAT 1.1"),
        ("COCO 1.0", "COCO 1.0"),
        ("Datumaro 1.0", "Datumaro 1.0"),
    ],
)
async def test_round_trip_into_a_fresh_task(
    client_for: Any, alice: Account, export_fmt: str, import_fmt: str
) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], export_fmt)
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], import_fmt, "dataset.zip", data)
    assert body["status"] == "finished", body
    before, after = await task_annotations(api, task), await task_annotations(api, fresh)
    na, nb = _names(task), _names(fresh)
    aa, ab = _attr_names(task), _attr_names(fresh)
    if export_fmt == "CVAT for video 1.1":
        assert len(after["tracks"]) == len(before["tracks"]) + len(before["shapes"])
        keys_before = [
            (s["frame"], s["points"], s["outside"]) for s in before["tracks"][0]["shapes"]
        ]
        keys_after = [(s["frame"], s["points"], s["outside"]) for s in after["tracks"][0]["shapes"]]
        assert keys_after == keys_before
        return
    expected = {_canon_shape(s, na, aa) for s in before["shapes"]}
    got = {_canon_shape(s, nb, ab) for s in after["shapes"]}
    if export_fmt == "COCO 1.0":
        kept = {e for e in expected if e[1] in ("rectangle", "polygon", "mask")}
        # occluded is kept; z_order too; the track's boxes come as plain boxes
        assert kept <= got
        assert len(got - kept) == 3
    else:  # CVAT for images, Datumaro: every shape, tags
        assert expected <= got
        assert len(got - expected) == 3  # the track's shape on frames 0..2
        assert [t["label_id"] for t in after["tags"]] == [fresh["labels_by_name"]["cat"]["id"]]


async def test_yolo_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "YOLO 1.1", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("obj.names").decode().split() == ["cat", "dog", "person"]
        assert "obj_train_data/img_00.jpg" in zf.namelist()
        lines = zf.read("obj_train_data/img_00.txt").decode().splitlines()
        assert "0 0.242188 0.437500 0.453125 0.791667" in lines
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], "YOLO 1.1", "y.zip", data)
    assert body["status"] == "finished", body
    got = (await task_annotations(api, fresh))["shapes"]
    assert len(got) == 5  # 2 boxes + 3 track boxes
    assert any(s["frame"] == 0 and [round(p) for p in s["points"]] == [1, 2, 30, 40] for s in got)


# ---------------------------------------------------------------------- bad input


_COCO_UNKNOWN = json.dumps({
    "images": [{"id": 1, "file_name": "img_00.jpg", "width": W, "height": H}],
    "categories": [{"id": 1, "name": "unicorn"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                     "segmentation": [], "area": 25, "iscrowd": 0}],
}).encode()  # fmt: skip

_XXE = b"""<?xml version="1.0"?>
<!DOCTYPE annotations [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotations><image id="0" name="img_00.jpg"><tag label="&xxe;"/></image></annotations>"""

_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<annotations><image id="0" name="img_00.jpg"><tag label="&lol2;"/></image></annotations>"""


@pytest.mark.parametrize(
    ("fmt", "name", "data", "reason"),
    [
        ("COCO 1.0", "a.zip", b"PK\x03\x04 not really a zip", "not a readable ZIP"),
        ("CVAT 1.1", "a.xml", _XXE, "DTDs and entity declarations are not allowed"),
        ("CVAT 1.1", "a.xml", _LAUGHS, "DTDs and entity declarations are not allowed"),
        ("COCO 1.0", "a.json", _COCO_UNKNOWN, "Label 'unicorn' is not in the task"),
        ("COCO 1.0", "a.zip", zip_bytes({"../../evil.json": _COCO_UNKNOWN}), "unsafe path"),
        ("CVAT 1.1", "a.xml", b"", "the uploaded file is empty"),
        (
            "CVAT 1.1",
            "a.xml",
            b"<annotations><image name='nope.jpg'><tag label='cat'/></image></annotations>",
            "matches no frame",
        ),
    ],
)
async def test_bad_imports_fail_and_change_nothing(
    client_for: Any, alice: Account, fmt: str, name: str, data: bytes, reason: str
) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    before = await task_annotations(api, task)
    body = await import_file(api, "task", task["id"], fmt, name, data)
    assert body["status"] == "failed"
    assert reason in str(body["message"]), body["message"]
    assert await task_annotations(api, task) == before


async def test_wrong_format_names_are_400_listing_the_valid_ones(
    client_for: Any, alice: Account
) -> None:
    api = client_for(alice)
    task = await labelled_task(api, images(1))
    r = await api.post(f"/api/tasks/{task['id']}/dataset/export", params={"format": "Nope 9"})
    assert r.status_code == 400
    assert "COCO 1.0" in r.text and "CVAT for images 1.1" in r.text
    r = await api.post(
        f"/api/tasks/{task['id']}/annotations/",
        params={"format": "CVAT for images 1.1"},
        files={"annotation_file": ("a.xml", b"<annotations/>")},
    )
    assert r.status_code == 400 and "CVAT 1.1" in r.text
    r = await api.post(
        f"/api/tasks/{task['id']}/dataset/export", params={"format": "Datumaro 3D 1.0"}
    )
    assert r.status_code == 400 and "not available yet" in r.text


async def test_identical_exports_conflict_then_are_reused(
    client_for: Any, alice: Account, bob: Account
) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    params = {"format": "COCO 1.0", "save_images": "False"}
    url = f"/api/tasks/{task['id']}/dataset/export"
    first = await api.post(url, params=params)
    assert first.status_code == 202
    rq_id = first.json()["rq_id"]
    again = await api.post(url, params=params)
    # still queued or running: 409 with the same rq_id; finished: reused (202, same rq_id)
    assert again.status_code in (202, 409) and again.json()["rq_id"] == rq_id
    assert (await wait(api, rq_id))["status"] == "finished"
    reused = await api.post(url, params=params)
    assert reused.status_code == 202 and reused.json()["rq_id"] == rq_id
    # a change to the task makes a new export
    r = await api.patch(
        f"/api/tasks/{task['id']}/annotations/", params={"action": "create"},
        json={"shapes": [{"type": "rectangle", "frame": 0, "points": [0, 0, 1, 1],
                          "label_id": task["labels_by_name"]["cat"]["id"]}]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    fresh = await api.post(url, params=params)
    assert fresh.status_code == 202 and fresh.json()["rq_id"] != rq_id
    assert (await wait(api, fresh.json()["rq_id"]))["status"] == "finished"
    # someone else's result is not theirs to download
    other = client_for(bob)
    r = await other.get(f"/api/tasks/{task['id']}/dataset/download", params={"rq_id": rq_id})
    assert r.status_code in (403, 404)


async def test_masks_become_polygons_by_default(client_for: Any, alice: Account) -> None:
    """CVAT's ``conv_mask_to_poly`` is on unless the client turns it off."""
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "COCO 1.0")
    fresh = await labelled_task(api, images(3))
    r = await api.post(
        f"/api/tasks/{fresh['id']}/annotations/",
        params={"format": "COCO 1.0"},
        files={"annotation_file": ("c.zip", data)},
    )
    assert r.status_code == 202
    body = await wait(api, r.json()["rq_id"])
    assert body["status"] == "finished", body
    shapes = (await task_annotations(api, fresh))["shapes"]
    assert not [s for s in shapes if s["type"] == "mask"]
    on_frame_2 = [s for s in shapes if s["frame"] == 2 and s["type"] == "polygon"]
    assert len(on_frame_2) == 1
    xs, ys = on_frame_2[0]["points"][0::2], on_frame_2[0]["points"][1::2]
    assert (min(xs), min(ys), max(xs), max(ys)) == (5, 10, 29, 29)


@pytest.mark.parametrize(
    ("fmt", "kept", "tags", "extra"),
    [
        # extra: the track's boxes on frames 0..2, or the mask's outline
        ("PASCAL VOC 1.1", {"rectangle"}, True, 3),
        ("Ultralytics YOLO Detection 1.0", {"rectangle"}, False, 3),
        ("Ultralytics YOLO Oriented Bounding Boxes 1.0", {"rectangle"}, False, 3),
        ("Ultralytics YOLO Segmentation 1.0", {"polygon"}, False, 1),
        ("LabelMe 3.0", {"rectangle", "polygon"}, None, 3),
        ("ImageNet 1.0", set(), True, 0),
    ],
)
async def test_round_trip_of_what_a_format_keeps(
    client_for: Any, alice: Account, fmt: str, kept: set[str], tags: bool | None, extra: int
) -> None:
    """Export, import into a fresh task: the shapes of the kept types come back (tracks as
    their per-frame shapes, z_order dropped), the rest is dropped."""
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], fmt, save_images=True)
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], fmt, "d.zip", data)
    assert body["status"] == "finished", body
    before, after = await task_annotations(api, task), await task_annotations(api, fresh)
    na, nb, aa, ab = _names(task), _names(fresh), _attr_names(task), _attr_names(fresh)

    def canon(s: dict[str, Any], names: dict[int, str], attrs: dict[int, str]) -> tuple[Any, ...]:
        if tags is False:  # the YOLO family keeps geometry only
            s = {**s, "occluded": False, "attributes": []}
        return _canon_shape({**s, "z_order": 0}, names, attrs)

    expected = {canon(s, na, aa) for s in before["shapes"] if s["type"] in kept}
    got = {canon(s, nb, ab) for s in after["shapes"]}
    assert expected <= got
    assert len(got) == len(expected) + extra
    assert len(after["tags"]) == (len(before["tags"]) if tags else 0)
    tags_before = sorted((t["frame"], na[t["label_id"]]) for t in before["tags"])
    if tags:
        assert sorted((t["frame"], nb[t["label_id"]]) for t in after["tags"]) == tags_before


async def test_mot_keeps_tracks(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "MOT 1.1", save_images=True)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("gt/labels.txt").decode().split() == ["cat", "dog", "person"]
        rows = zf.read("gt/gt.txt").decode().splitlines()
        assert "img1/000001.jpg" in zf.namelist()
    assert "1,-1,1.00,2.00,29.00,38.00,1,1,0" in rows  # the occluded cat box
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], "MOT 1.1", "mot.zip", data)
    assert body["status"] == "finished", body
    after = await task_annotations(api, fresh)
    (track,) = after["tracks"]
    assert [(s["frame"], s["points"]) for s in track["shapes"]] == [
        (0, [0, 0, 10, 10]), (1, [5, 5, 15, 15]), (2, [10, 10, 20, 20])
    ]  # fmt: skip
    boxes = sorted((s["frame"], s["points"], s["occluded"]) for s in after["shapes"])
    assert boxes == [(0, [1, 2, 30, 40], True), (1, [5, 6, 20, 25], False)]


async def test_segmentation_mask_round_trip(client_for: Any, alice: Account) -> None:
    """Masks come back pixel for pixel; a polygon comes back as the mask of its pixels."""
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "Segmentation mask 1.1")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        labelmap = zf.read("labelmap.txt").decode()
        assert "background:0,0,0::" in labelmap and "cat:255,0,0::" in labelmap
        assert {"SegmentationClass/img_02.png", "SegmentationObject/img_02.png"} <= set(
            zf.namelist()
        )
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], "Segmentation mask 1.1", "s.zip", data)
    assert body["status"] == "finished", body
    shapes = (await task_annotations(api, fresh))["shapes"]
    on_2 = [s for s in shapes if s["frame"] == 2 and s["type"] == "mask"]
    # the mask, and the track's box on frame 2 (painted over it: pixels 10..20 both ways)
    assert len(on_2) == 2
    visible = _bitmap()
    visible[10:21, 10:21] = 0
    assert any(s["points"] == _mask_points(visible) for s in on_2)


async def test_project_export_by_subset_and_import_by_name(client_for: Any, alice: Account) -> None:
    """A project exports one subset per task subset; its import fills the tasks whose frames
    the items name (names from both tasks), and a job import touches only the job."""
    api = client_for(alice)
    r = await api.post("/api/projects", json={"name": "p", "labels": [{"name": "cat"}]})
    assert r.status_code == 201, r.text
    project = r.json()["id"]
    task_ids = []
    for subset, prefix in (("train", "a"), ("val", "b")):
        r = await api.post(
            "/api/tasks", json={"name": subset, "project_id": project, "subset": subset}
        )
        assert r.status_code == 201, r.text
        task_id = r.json()["id"]
        files = {f"{prefix}_{i}.jpg": data for i, data in enumerate(images(2).values())}
        rq = (await upload(api, task_id, files)).json()["rq_id"]
        assert (await wait(api, rq))["status"] == "finished"
        task_ids.append(task_id)
    cat = (await api.get(f"/api/labels?project_id={project}")).json()["results"][0]["id"]
    for n, task_id in enumerate(task_ids):
        r = await api.put(
            f"/api/tasks/{task_id}/annotations/",
            json={
                "shapes": [
                    {"type": "rectangle", "frame": 1, "label_id": cat, "points": [n, n, 9, 9]}
                ]
            },
        )
        assert r.status_code == 200
    data = await export_dataset(api, "project", project, "COCO 1.0")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        train = json.loads(zf.read("annotations/instances_train.json"))
        val = json.loads(zf.read("annotations/instances_val.json"))
    assert [im["file_name"] for im in train["images"]] == ["a_0.jpg", "a_1.jpg"]
    assert [a["bbox"] for a in val["annotations"]] == [[1, 1, 8, 8]]
    for task_id in task_ids:
        assert (await api.delete(f"/api/tasks/{task_id}/annotations/")).status_code == 204
    body = await import_file(api, "project", project, "COCO 1.0", "p.zip", data)
    assert body["status"] == "finished", body
    for n, task_id in enumerate(task_ids):
        shapes = (await api.get(f"/api/tasks/{task_id}/annotations/")).json()["shapes"]
        assert [(s["frame"], s["points"]) for s in shapes] == [(1, [n, n, 9, 9])]
    # a job of the first task: its own annotations replaced, the other task untouched
    job = (await api.get(f"/api/jobs?task_id={task_ids[0]}")).json()["results"][0]["id"]
    job_data = await export_dataset(api, "job", job, "CVAT for images 1.1")
    r = await api.delete(f"/api/tasks/{task_ids[0]}/annotations/")
    body = await import_file(api, "job", job, "CVAT 1.1", "j.zip", job_data)
    assert body["status"] == "finished", body
    shapes = (await api.get(f"/api/jobs/{job}/annotations/")).json()["shapes"]
    assert [(s["frame"], s["points"]) for s in shapes] == [(1, [0, 0, 9, 9])]


async def test_coco_keypoints_round_trip(client_for: Any, alice: Account, tmp_path: Any) -> None:
    api = client_for(alice)
    task = await _annotated(api)
    data = await export_dataset(api, "task", task["id"], "COCO Keypoints 1.0")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        (tmp_path / "kp.json").write_bytes(zf.read("annotations/person_keypoints_default.json"))
    coco = COCO(str(tmp_path / "kp.json"))
    (cat,) = coco.loadCats(coco.getCatIds())
    assert cat["name"] == "person" and cat["keypoints"] == ["head", "hand"]
    (ann,) = coco.loadAnns(coco.getAnnIds())
    assert ann["keypoints"] == [10, 10, 2, 12, 20, 2] and ann["num_keypoints"] == 2
    fresh = await labelled_task(api, images(3))
    body = await import_file(api, "task", fresh["id"], "COCO Keypoints 1.0", "kp.zip", data)
    assert body["status"] == "finished", body
    before, after = await task_annotations(api, task), await task_annotations(api, fresh)
    na, nb, aa, ab = _names(task), _names(fresh), _attr_names(task), _attr_names(fresh)
    skeleton = {_canon_shape(s, na, aa) for s in before["shapes"] if s["type"] == "skeleton"}
    assert {_canon_shape(s, nb, ab) for s in after["shapes"]} == skeleton


async def test_expired_exports_are_removed(
    client_for: Any, alice: Account, db: Any, settings: Any
) -> None:
    from datetime import timedelta

    from cvat_ray.storage.models import BackgroundRequest, utcnow
    from cvat_ray.storage.services.datasets import remove_expired, result_path

    api = client_for(alice)
    task = await labelled_task(api, images(1))
    r = await api.post(f"/api/tasks/{task['id']}/dataset/export", params={"format": "YOLO 1.1"})
    rq_id = r.json()["rq_id"]
    body = await wait(api, rq_id)
    assert body["status"] == "finished" and body["expiry_date"]
    assert result_path(rq_id, settings).exists()
    assert remove_expired(db, settings) == 0  # not expired yet: kept
    with db.session() as session:
        row = session.get(BackgroundRequest, rq_id)
        row.expiry_date = utcnow() - timedelta(seconds=1)
    assert remove_expired(db, settings) == 1
    assert not result_path(rq_id, settings).exists()
    r = await api.get(str(body["result_url"]))
    assert r.status_code == 404 and "expired" in r.text
    # and a new export is made instead of reusing the expired one
    r = await api.post(f"/api/tasks/{task['id']}/dataset/export", params={"format": "YOLO 1.1"})
    assert r.status_code == 202 and r.json()["rq_id"] != rq_id


@pytest.mark.parametrize("forked", [False, True], ids=["thread", "forked"])
async def test_a_streamed_import_fails_whole(
    client_for: Any, alice: Account, monkeypatch: pytest.MonkeyPatch, forked: bool
) -> None:
    """An import is written in chunks inside one transaction: a bad object after several
    chunks were written leaves the task as it was; a good file lands whole. The same with
    the chunks made in a forked process (large uploads), the error coming back from it."""
    from cvat_ray.storage.formats import sink
    from cvat_ray.storage.services import datasets

    monkeypatch.setattr(sink, "CHUNK", 3)
    monkeypatch.setattr(datasets, "_forks", lambda archive, settings: forked)
    api = client_for(alice)
    task = await _annotated(api)
    before = await task_annotations(api, task)
    anns = [
        {"id": n + 1, "image_id": 1 + n % 3, "category_id": 1, "bbox": [n, n, 5, 5],
         "segmentation": [], "area": 25, "iscrowd": 0}
        for n in range(20)
    ]  # fmt: skip
    doc = {
        "images": [{"id": i + 1, "file_name": f"img_{i:02d}.jpg", "width": W, "height": H}
                   for i in range(3)],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "unicorn"}],
        "annotations": [*anns, {**anns[0], "id": 99, "category_id": 2}],
    }  # fmt: skip
    body = await import_file(
        api, "task", task["id"], "COCO 1.0", "c.json", json.dumps(doc).encode()
    )
    assert body["status"] == "failed" and "unicorn" in str(body["message"])
    assert await task_annotations(api, task) == before
    doc["annotations"] = anns
    body = await import_file(
        api, "task", task["id"], "COCO 1.0", "c.json", json.dumps(doc).encode()
    )
    assert body["status"] == "finished", body
    shapes = (await task_annotations(api, task))["shapes"]
    assert sorted(s["points"][0] for s in shapes) == list(range(20))


def _coco_subset(names: list[str], boxes: dict[str, list[float]], label: str = "cat") -> bytes:
    ids = {n: i + 1 for i, n in enumerate(names)}
    return json.dumps({
        "images": [{"id": ids[n], "file_name": n, "width": W, "height": H} for n in names],
        "categories": [{"id": 1, "name": label}],
        "annotations": [
            {"id": k + 1, "image_id": ids[n], "category_id": 1, "bbox": box,
             "segmentation": [], "area": box[2] * box[3], "iscrowd": 0}
            for k, (n, box) in enumerate(boxes.items())
        ],
    }).encode()  # fmt: skip


def _coco_with_images(label: str = "cat", drop: str = "", extra: bytes = b"") -> bytes:
    pics = list(images(3).values())
    files = {
        "annotations/instances_train.json": _coco_subset(
            ["a/img_0.jpg", "a/img_1.jpg"], {"a/img_1.jpg": [1, 2, 5, 6]}, label
        ),
        "annotations/instances_val.json": _coco_subset(
            ["img_9.jpg"], {"img_9.jpg": [3, 3, 4, 4]}, label
        ),
        "images/train/a/img_0.jpg": pics[0],
        "images/train/a/img_1.jpg": pics[1],
        "images/val/img_9.jpg": extra or pics[2],
    }
    return zip_bytes({k: v for k, v in files.items() if not drop or drop not in k})


async def _project_tasks(api: httpx.AsyncClient, project: int) -> list[dict[str, Any]]:
    r = await api.get(f"/api/tasks?project_id={project}&sort=id")
    return list(r.json()["results"])


async def test_project_import_with_images_makes_a_task_per_subset(
    client_for: Any, alice: Account
) -> None:
    """As CVAT: each subset becomes a new task named after it, with the subset's images
    (every listed one, annotated or not) and annotations; existing tasks stay as they are."""
    api = client_for(alice)
    r = await api.post("/api/projects", json={"name": "p", "labels": [{"name": "cat"}]})
    project = r.json()["id"]
    r = await api.post("/api/tasks", json={"name": "old", "project_id": project})
    old = r.json()["id"]
    rq = (await upload(api, old, {"img_0.jpg": next(iter(images(1).values()))})).json()["rq_id"]
    assert (await wait(api, rq))["status"] == "finished"
    body = await import_file(api, "project", project, "COCO 1.0", "p.zip", _coco_with_images())
    assert body["status"] == "finished", body
    tasks = await _project_tasks(api, project)
    assert [(t["name"], t["subset"], t["size"]) for t in tasks] == [
        ("old", "", 1), ("train", "train", 2), ("val", "val", 1)
    ]  # fmt: skip
    assert (await api.get(f"/api/tasks/{old}/annotations/")).json()["shapes"] == []
    for task, frames, boxes in (
        (tasks[1], ["a/img_0.jpg", "a/img_1.jpg"], [(1, [1.0, 2.0, 6.0, 8.0])]),
        (tasks[2], ["img_9.jpg"], [(0, [3.0, 3.0, 7.0, 7.0])]),
    ):
        meta = (await api.get(f"/api/tasks/{task['id']}/data/meta")).json()
        assert [f["name"] for f in meta["frames"]] == frames
        assert {(f["width"], f["height"]) for f in meta["frames"]} == {(W, H)}
        shapes = (await api.get(f"/api/tasks/{task['id']}/annotations/")).json()["shapes"]
        assert [(s["frame"], s["points"]) for s in shapes] == boxes
        r = await api.get(f"/api/tasks/{task['id']}/data?type=chunk&number=0&quality=compressed")
        assert r.status_code == 200 and zipfile.is_zipfile(io.BytesIO(r.content))


async def test_project_import_without_labels_takes_the_datasets(
    client_for: Any, alice: Account
) -> None:
    api = client_for(alice)
    project = (await api.post("/api/projects", json={"name": "bare"})).json()["id"]
    body = await import_file(api, "project", project, "COCO 1.0", "p.zip", _coco_with_images())
    assert body["status"] == "finished", body
    labels = (await api.get(f"/api/labels?project_id={project}")).json()["results"]
    assert [lb["name"] for lb in labels] == ["cat"]
    assert len(await _project_tasks(api, project)) == 2


@pytest.mark.parametrize(
    ("archive", "reason"),
    [
        (_coco_with_images(label="dog"), 'Target project does not have label with name "dog"'),
        (_coco_with_images(drop="images/val/"), "no image for 'img_9.jpg' (subset 'val')"),
        (_coco_with_images(extra=b"not an image"), "img_9.jpg: not a valid image"),
    ],
)
async def test_bad_project_imports_with_images_make_no_task(
    client_for: Any, alice: Account, archive: bytes, reason: str
) -> None:
    api = client_for(alice)
    r = await api.post("/api/projects", json={"name": "p", "labels": [{"name": "cat"}]})
    project = r.json()["id"]
    body = await import_file(api, "project", project, "COCO 1.0", "p.zip", archive)
    assert body["status"] == "failed"
    assert reason in str(body["message"]), body["message"]
    assert await _project_tasks(api, project) == []
    labels = (await api.get(f"/api/labels?project_id={project}")).json()["results"]
    assert [lb["name"] for lb in labels] == ["cat"]
