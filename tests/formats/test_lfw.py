"""LFW 1.0 through the API: the export's layout (``<subset>/annotations/pairs.txt``,
``people.txt``, ``landmarks.txt``, images in ``<subset>/images/<person>/``), a round trip
into a fresh task, and bad archives failing cleanly without changing anything."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import httpx

from tests.conftest import Account
from tests.factories import (
    attr_id,
    bad_import,
    export_dataset,
    import_file,
    labelled_task,
    task_annotations,
    zip_bytes,
)
from tests.media_files import image_bytes

FMT = "LFW 1.0"
PAIR_ATTRS = [
    {"name": name, "mutable": False, "input_type": "text", "values": [""]}
    for name in ("positive_pairs", "negative_pairs")
]
LABELS: list[dict[str, Any]] = [
    {"name": "Alice_A", "attributes": PAIR_ATTRS},
    {"name": "Bob_B", "attributes": PAIR_ATTRS},
]
NAMES = ["Alice_A_0001.jpg", "Alice_A_0002.jpg", "Bob_B_0001.jpg", "img_03.jpg"]
FILES = {n: image_bytes(48, 40, (i * 30, 60, 90)) for i, n in enumerate(NAMES)}
ANN = "default/annotations"


async def _task(api: httpx.AsyncClient) -> dict[str, Any]:
    task = await labelled_task(api, FILES, LABELS)
    meta = (await api.get(f"/api/tasks/{task['id']}/data/meta")).json()
    task["frame_of"] = {f["name"].rpartition("/")[2]: i for i, f in enumerate(meta["frames"])}
    return task


async def _people_task(api: httpx.AsyncClient) -> dict[str, Any]:
    """Alice_A_0001 matches Alice_A_0002 and mismatches Bob_B_0001; Bob_B_0001 has landmarks;
    img_03 is untagged."""
    task = await _task(api)
    at, by = task["frame_of"], task["labels_by_name"]

    def tag(name: str, label: str, positive: str = "", negative: str = "") -> Any:
        return {"frame": at[name], "label_id": by[label]["id"], "attributes": [
            {"spec_id": attr_id(task, label, "positive_pairs"), "value": positive},
            {"spec_id": attr_id(task, label, "negative_pairs"), "value": negative},
        ]}  # fmt: skip

    r = await api.put(f"/api/tasks/{task['id']}/annotations/", json={
        "tags": [
            tag("Alice_A_0001.jpg", "Alice_A", "Alice_A/Alice_A_0002", "Bob_B/Bob_B_0001"),
            tag("Alice_A_0002.jpg", "Alice_A"),
            tag("Bob_B_0001.jpg", "Bob_B"),
        ],
        "shapes": [{"type": "points", "frame": at["Bob_B_0001.jpg"],
                    "label_id": by["Bob_B"]["id"], "points": [10, 10, 20, 10, 15, 20]}],
    })  # fmt: skip
    assert r.status_code == 200, r.text
    return task


def _summary(task: dict[str, Any], data: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    names = {lb["id"]: lb["name"] for lb in task["labels_by_name"].values()}
    attrs = {a["id"]: a["name"] for lb in task["labels_by_name"].values() for a in lb["attributes"]}
    tags = sorted(
        (t["frame"], names[t["label_id"]],
         sorted((attrs[a["spec_id"]], a["value"]) for a in t["attributes"] if a["value"]))
        for t in data["tags"]
    )  # fmt: skip
    shapes = sorted(
        (s["frame"], s["type"], names[s["label_id"]], [round(p, 2) for p in s["points"]])
        for s in data["shapes"]
    )
    return tags, shapes


async def test_lfw_export_layout(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _people_task(api)
    plain = await export_dataset(api, "task", task["id"], FMT)
    files = [f"{ANN}/pairs.txt", f"{ANN}/people.txt", f"{ANN}/landmarks.txt"]
    with zipfile.ZipFile(io.BytesIO(plain)) as zf:
        assert sorted(zf.namelist()) == sorted(files)
        pairs, people, landmarks = (zf.read(n).decode() for n in files)
    assert pairs.splitlines() == [
        "Alice_A\t1\t2",
        "Alice_A\t1\tBob_B\t1",
        "Alice_A/Alice_A_0002",
        "Bob_B/Bob_B_0001",
    ]
    assert people.splitlines() == ["Alice_A\t2", "Bob_B\t1"]
    assert landmarks.splitlines() == ["Bob_B/Bob_B_0001.jpg\t10.0\t10.0\t20.0\t10.0\t15.0\t20.0"]

    full = await export_dataset(api, "task", task["id"], FMT, save_images=True)
    with zipfile.ZipFile(io.BytesIO(full)) as zf:
        stored = {n: zf.read(n) for n in zf.namelist() if n.endswith(".jpg")}
        assert sorted(set(zf.namelist()) - set(stored)) == sorted(files)
        assert zf.read(f"{ANN}/pairs.txt").decode() == pairs
    assert stored == {
        "default/images/Alice_A/Alice_A_0001.jpg": FILES["Alice_A_0001.jpg"],
        "default/images/Alice_A/Alice_A_0002.jpg": FILES["Alice_A_0002.jpg"],
        "default/images/Bob_B/Bob_B_0001.jpg": FILES["Bob_B_0001.jpg"],
        "default/images/img_03.jpg": FILES["img_03.jpg"],  # untagged: no person folder
    }


async def test_lfw_round_trip(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _people_task(api)
    expected = _summary(task, await task_annotations(api, task))
    at = task["frame_of"]
    assert expected[0][0] == (
        at["Alice_A_0001.jpg"], "Alice_A",
        [("negative_pairs", "Bob_B/Bob_B_0001"), ("positive_pairs", "Alice_A/Alice_A_0002")],
    )  # fmt: skip
    for save_images in (False, True):
        data = await export_dataset(api, "task", task["id"], FMT, save_images)
        fresh = await _task(api)
        body = await import_file(api, "task", fresh["id"], FMT, "l.zip", data)
        assert body["status"] == "finished", body
        assert _summary(fresh, await task_annotations(api, fresh)) == expected


async def test_lfw_reads_original_layout(client_for: Any, alice: Account) -> None:
    """The original LFW's header line, several pairs of one image (joined), a mismatch with
    a person not among the labels ('-'), and pair attributes the label lacks left out."""
    api = client_for(alice)
    labels: list[dict[str, Any]] = [
        {"name": "Alice_A", "attributes": PAIR_ATTRS},
        {"name": "Bob_B"},
    ]
    task = await labelled_task(api, FILES, labels)
    pairs = b"1\t3\nAlice_A\t1\t2\nAlice_A\t1\t-\timg_03\nBob_B\t1\tAlice_A\t2\n"
    body = await import_file(
        api, "task", task["id"], FMT, "o.zip", zip_bytes({"annotations/pairs.txt": pairs})
    )
    assert body["status"] == "finished", body
    tags, shapes = _summary(task, await task_annotations(api, task))
    frames = {n: i for i, n in enumerate(sorted(NAMES))}
    assert shapes == []
    assert tags == sorted([
        (frames["Alice_A_0001.jpg"], "Alice_A",
         [("negative_pairs", "img_03"), ("positive_pairs", "Alice_A/Alice_A_0002")]),
        (frames["Alice_A_0002.jpg"], "Alice_A", []),
        (frames["Bob_B_0001.jpg"], "Bob_B", []),
    ])  # fmt: skip


async def test_lfw_bad_imports(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    task = await _people_task(api)
    ok = b"Alice_A\t1\t2\n"
    await bad_import(
        api, task, FMT, zip_bytes({"people.txt": b"Alice_A\t1\n"}), "annotations/pairs.txt"
    )
    await bad_import(
        api, task, FMT, zip_bytes({f"{ANN}/pairs.txt": b"Alice_A\t1\t2\t3\t4\n"}), "tab-separated"
    )
    await bad_import(
        api, task, FMT,
        zip_bytes({f"{ANN}/pairs.txt": ok, f"{ANN}/landmarks.txt": b"Bob_B/Bob_B_0001.jpg\t1\tx\n"}),
        "must be numbers",
    )  # fmt: skip
    await bad_import(
        api, task, FMT,
        zip_bytes({f"{ANN}/pairs.txt": ok, f"{ANN}/landmarks.txt": b"Bob_B_0001.jpg\t1\t2\n"}),
        "have no person",
    )  # fmt: skip
    await bad_import(api, task, FMT, zip_bytes({f"{ANN}/pairs.txt": b"Carol_C\t1\t2\n"}), "Carol_C")
