"""Task backups over the API: export -> restore gives the same task, CVAT-written backups
restore, and a bad backup fails with a readable message and leaves nothing behind."""

from __future__ import annotations

import base64
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import Data, Label, Task
from tests.conftest import Account
from tests.factories import LABELS, images, upload, wait
from tests.media_files import image_bytes, write_video

# --------------------------------------------------------------------------- helpers


def _attr(label: dict[str, Any], name: str) -> int:
    return next(a["id"] for a in label["attributes"] if a["name"] == name)


def annotations_for(labels: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cat, dog, person = labels["cat"], labels["dog"], labels["person"]
    head, hand = (s["id"] for s in person["sublabels"])
    return {
        "tags": [
            {"frame": 1, "label_id": cat["id"], "group": 2, "source": "auto"},
            {"frame": 6, "label_id": dog["id"], "attributes": [
                {"spec_id": _attr(dog, "color"), "value": "b"}]},
        ],
        "shapes": [
            {
                "type": "rectangle", "frame": 0, "label_id": dog["id"],
                "points": [1, 2, 30.5, 40], "source": "auto", "score": 0.25, "rotation": 15,
                "occluded": True, "z_order": 3,
                "attributes": [
                    {"spec_id": _attr(dog, "color"), "value": "b"},
                    {"spec_id": _attr(dog, "age"), "value": "7"},
                    {"spec_id": _attr(dog, "good"), "value": "true"},
                    {"spec_id": _attr(dog, "note"), "value": 'quote " back\\slash'},
                ],
            },
            {"type": "polygon", "frame": 5, "label_id": cat["id"], "points": [0, 0, 5, 0, 5, 5]},
            {"type": "mask", "frame": 8, "label_id": cat["id"], "points": [2, 1, 1, 10, 20, 11, 21]},
            {
                "type": "skeleton", "frame": 9, "label_id": person["id"], "points": [],
                "elements": [
                    {"type": "points", "frame": 9, "label_id": head, "points": [1, 1]},
                    {"type": "points", "frame": 9, "label_id": hand, "points": [2, 2],
                     "outside": True},
                ],
            },
        ],
        "tracks": [
            {
                "frame": 0, "label_id": cat["id"], "group": 1,
                "shapes": [
                    {"type": "rectangle", "frame": 0, "points": [0, 0, 10, 10]},
                    {"type": "rectangle", "frame": 2, "points": [4, 4, 14, 14], "outside": True},
                ],
            },
            {
                "frame": 4, "label_id": person["id"],
                "shapes": [{"type": "skeleton", "frame": 4, "points": []}],
                "elements": [
                    {"frame": 4, "label_id": head,
                     "shapes": [{"type": "points", "frame": 4, "points": [3, 3]}]},
                    {"frame": 4, "label_id": hand,
                     "shapes": [{"type": "points", "frame": 4, "points": [4, 4]}]},
                ],
            },
        ],
    }  # fmt: skip


async def labels_of(api: httpx.AsyncClient, task_id: int) -> dict[str, dict[str, Any]]:
    r = await api.get(f"/api/labels?task_id={task_id}&org=&page_size=100")
    assert r.status_code == 200, r.text
    return {lbl["name"]: lbl for lbl in r.json()["results"]}


def _normal_labels(labels: dict[str, dict[str, Any]]) -> list[Any]:
    """Labels without ids; skeleton svgs with sublabel names in place of ids."""

    def attrs(items: list[dict[str, Any]]) -> list[Any]:
        return sorted(({k: v for k, v in a.items() if k != "id"} for a in items), key=str)

    out = []
    for lbl in labels.values():
        subs = {str(s["id"]): s["name"] for s in lbl.get("sublabels", [])}

        def named(m: re.Match[str], subs: dict[str, str] = subs) -> str:
            return f'data-label="{subs.get(m.group(1), m.group(1))}"'

        svg = re.sub(r'data-label-(?:id|name)="([^"]*)"', named, lbl.get("svg", ""))
        out.append(
            {
                "name": lbl["name"],
                "color": lbl["color"],
                "type": lbl["type"],
                "svg": svg,
                "attributes": attrs(lbl["attributes"]),
                "sublabels": sorted(
                    (
                        {"name": s["name"], "color": s["color"], "type": s["type"],
                         "attributes": attrs(s["attributes"])}
                        for s in lbl.get("sublabels", [])
                    ),
                    key=str,
                ),
            }
        )  # fmt: skip
    return sorted(out, key=lambda x: x["name"])


def _names(labels: dict[str, dict[str, Any]]) -> tuple[dict[int, str], dict[int, str]]:
    ids: dict[int, str] = {}
    specs: dict[int, str] = {}
    for lbl in labels.values():
        for item in [lbl, *lbl.get("sublabels", [])]:
            ids[item["id"]] = item["name"]
            for a in item["attributes"]:
                specs[a["id"]] = a["name"]
    return ids, specs


def normal_annotations(data: dict[str, Any], labels: dict[str, dict[str, Any]]) -> Any:
    """Annotations with ids dropped and label/attribute ids turned into names."""
    ids, specs = _names(labels)

    def norm(obj: Any) -> Any:
        if isinstance(obj, list):
            return [norm(o) for o in obj]
        if not isinstance(obj, dict):
            return obj
        out = {}
        for k, v in obj.items():
            if k == "id":
                continue
            if k == "label_id":
                out["label"] = ids[v]
            elif k == "spec_id":
                out["name"] = specs[v]
            else:
                out[k] = norm(v)
        return out

    return {
        k: sorted((norm(o) for o in data[k]), key=json.dumps) for k in ("tags", "shapes", "tracks")
    }


async def snapshot(api: httpx.AsyncClient, task_id: int) -> dict[str, Any]:
    """Everything a restored task must have the same as the original."""
    task = (await api.get(f"/api/tasks/{task_id}")).json()
    labels = await labels_of(api, task_id)
    meta = (await api.get(f"/api/tasks/{task_id}/data/meta")).json()
    jobs = (await api.get(f"/api/jobs?task_id={task_id}&org=&sort=id&page_size=100")).json()
    frames = []
    for i in range(task["size"]):
        r = await api.get(f"/api/tasks/{task_id}/data?type=frame&number={i}&quality=original")
        assert r.status_code == 200, r.text
        frames.append(r.content)
    ann = (await api.get(f"/api/tasks/{task_id}/annotations")).json()
    per_job = []
    for job in jobs["results"]:
        per_job.append(
            normal_annotations((await api.get(f"/api/jobs/{job['id']}/annotations")).json(), labels)
        )
    keep = (
        "name", "bug_tracker", "status", "subset", "mode", "size", "segment_size", "overlap",
        "image_quality", "data_chunk_size", "data_compressed_chunk_type",
        "data_original_chunk_type", "sorting_method", "dimension",
    )  # fmt: skip
    return {
        "task": {k: task.get(k) for k in keep},
        "labels": _normal_labels(labels),
        "meta": {k: v for k, v in meta.items() if k not in ("chunks_updated_date",)},
        "jobs": [
            (j["start_frame"], j["stop_frame"], j["status"], j["stage"], j["state"], j["type"])
            for j in jobs["results"]
        ],
        "frames": frames,
        "annotations": normal_annotations(ann, labels),
        "per_job": per_job,
    }


async def export(api: httpx.AsyncClient, kind: str, object_id: int, **params: Any) -> bytes:
    r = await api.post(f"/api/{kind}s/{object_id}/backup/export", params=params)
    assert r.status_code == 202, r.text
    done = await wait(api, r.json()["rq_id"])
    assert done["status"] == "finished", done
    url = str(done["result_url"])
    assert url.startswith("http://testserver/api/"), url
    r = await api.get(url)
    assert r.status_code == 200, r.text
    assert 'filename="' in r.headers["content-disposition"]
    return r.content


async def restore(api: httpx.AsyncClient, kind: str, backup: bytes) -> dict[str, Any]:
    r = await api.post(
        f"/api/{kind}s/backup/",
        files={f"{kind}_file": ("backup.zip", backup, "application/zip")},
    )
    assert r.status_code == 202, r.text
    return await wait(api, r.json()["rq_id"])


async def restore_tus(api: httpx.AsyncClient, kind: str, backup: bytes) -> dict[str, Any]:
    """CVAT-SDK's way: Upload-Start, TUS create + PATCH, Upload-Finish."""
    url = f"/api/{kind}s/backup/"
    r = await api.post(url, params={"filename": "bk.zip"}, headers={"Upload-Start": "true"})
    assert r.status_code == 202, r.text
    r = await api.post(
        url,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(backup)),
            "Upload-Metadata": "filename " + base64.b64encode(b"bk.zip").decode(),
        },
    )
    assert r.status_code == 201, r.text
    location, name = r.headers["location"], r.headers["upload-filename"]
    assert location.startswith("http://testserver/api/"), location
    half = len(backup) // 2
    for offset, piece in ((0, backup[:half]), (half, backup[half:])):
        r = await api.patch(
            location,
            content=piece,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert r.status_code == 204, r.text
    r = await api.post(url, params={"filename": name}, headers={"Upload-Finish": "true"})
    assert r.status_code == 202, r.text
    return await wait(api, r.json()["rq_id"])


async def full_task(api: httpx.AsyncClient, **extra: Any) -> int:
    r = await api.post(
        "/api/tasks",
        json={"name": "full task", "labels": LABELS, "segment_size": 4, "overlap": 1,
              "subset": "train", "bug_tracker": "http://bugs/1", **extra},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    task_id = int(r.json()["id"])
    r = await upload(
        api, task_id, images(12), sorting_method="random", chunk_size=5, image_quality=55
    )
    assert r.status_code == 202, r.text
    done = await wait(api, r.json()["rq_id"])
    assert done["status"] == "finished", done
    r = await api.patch(f"/api/tasks/{task_id}/data/meta", json={"deleted_frames": [3, 7]})
    assert r.status_code == 200, r.text
    labels = await labels_of(api, task_id)
    r = await api.put(f"/api/tasks/{task_id}/annotations", json=annotations_for(labels))
    assert r.status_code == 200, r.text
    jobs = (await api.get(f"/api/jobs?task_id={task_id}&org=&sort=id")).json()["results"]
    r = await api.patch(f"/api/jobs/{jobs[1]['id']}", json={"stage": "validation"})
    assert r.status_code == 200, r.text
    r = await api.patch(
        f"/api/jobs/{jobs[2]['id']}", json={"stage": "acceptance", "state": "completed"}
    )
    assert r.status_code == 200, r.text
    return task_id


def _counts(db: Database) -> tuple[int, int, int]:
    with db.session() as session:
        return (
            session.scalar(select(func.count()).select_from(Task)) or 0,
            session.scalar(select(func.count()).select_from(Data)) or 0,
            session.scalar(select(func.count()).select_from(Label)) or 0,
        )


def _files(settings: Settings) -> list[str]:
    """Media and staging files of the server (uploads of the caller excluded)."""
    found = []
    for root in (settings.media_dir / "data", settings.media_dir / "staging"):
        if root.is_dir():
            found += [str(p) for p in root.rglob("*") if p.is_file()]
    return sorted(found)


# --------------------------------------------------------------------------- round trip


async def test_task_round_trip_is_exact(
    client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    api = client_for(alice)
    task_id = await full_task(api)
    before = await snapshot(api, task_id)
    assert len(before["jobs"]) == 4 and before["meta"]["deleted_frames"] == [3, 7]
    assert sum(len(v) for v in before["annotations"].values()) == 8

    backup = await export(api, "task", task_id)
    with zipfile.ZipFile(io.BytesIO(backup)) as zf:
        names = set(zf.namelist())
        manifest = json.loads(zf.read("task.json"))
        per_job = json.loads(zf.read("annotations.json"))
    assert {"task.json", "annotations.json", "data/manifest.jsonl"} <= names
    assert len([n for n in names if n.startswith("data/img_")]) == 12
    assert manifest["version"] == "1.0" and len(per_job) == 4
    # every key CVAT's importer reads
    assert {"name", "bug_tracker", "status", "subset", "labels", "data", "jobs"} <= set(manifest)
    assert {"chunk_size", "image_quality", "start_frame", "stop_frame", "frame_filter",
            "chunk_type", "storage_method", "storage", "sorting_method",
            "deleted_frames"} <= set(manifest["data"])  # fmt: skip
    skeleton = next(lbl for lbl in manifest["labels"] if lbl["type"] == "skeleton")
    assert 'data-label-name="head"' in skeleton["svg"]
    shape = next(s for s in per_job[0]["shapes"] if s["type"] == "rectangle")
    assert shape["label"] == "dog" and "id" not in shape and "label_id" not in shape
    assert {a["name"] for a in shape["attributes"]} == {"color", "age", "good", "note"}

    done = await restore(api, "task", backup)
    assert done["status"] == "finished", done
    new_id = done["result_id"]
    assert isinstance(new_id, int) and new_id != task_id
    after = await snapshot(api, new_id)
    for key in before:
        assert after[key] == before[key], key
    # and through CVAT-SDK's upload flow (TUS), a second copy
    done = await restore_tus(api, "task", backup)
    assert done["status"] == "finished", done
    assert (await snapshot(api, done["result_id"]))["annotations"] == before["annotations"]


async def test_video_and_frame_range_round_trip(
    client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    api = client_for(alice)
    r = await api.post("/api/tasks", json={"name": "range", "labels": [{"name": "a"}]})
    task_id = r.json()["id"]
    r = await upload(
        api, task_id, images(10), start_frame=2, stop_frame=8, frame_filter="step=2",
        sorting_method="natural",
    )  # fmt: skip
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    before = await snapshot(api, task_id)
    assert before["task"]["size"] == 4
    done = await restore(api, "task", await export(api, "task", task_id))
    assert done["status"] == "finished", done
    assert await snapshot(api, done["result_id"]) == before


# --------------------------------------------------------------------------- CVAT's own zip


def cvat_backup() -> bytes:
    """A backup laid out exactly as CVAT 2.x's exporter writes one."""
    task = {
        "name": "from cvat",
        "bug_tracker": "",
        "status": "annotation",
        "subset": "",
        "labels": [
            {"name": "car", "color": "#fa3253", "attributes": [
                {"name": "model", "mutable": False, "input_type": "select",
                 "default_value": "a", "values": ["a", "b"]}],
             "type": "any", "svg": "", "sublabels": []},
            {"name": "body", "color": "#33ddff", "attributes": [], "type": "skeleton",
             "svg": '<line x1="1" y1="2" x2="3" y2="4" data-type="edge" '
                    'data-node-from="1" data-node-to="2"></line>'
                    '<circle r="0.75" cx="1" cy="2" data-type="element node" '
                    'data-element-id="1" data-node-id="1" data-label-name="l"></circle>'
                    '<circle r="0.75" cx="3" cy="4" data-type="element node" '
                    'data-element-id="2" data-node-id="2" data-label-name="r"></circle>',
             "sublabels": [
                 {"name": "l", "color": "#000001", "attributes": [], "type": "points",
                  "svg": "", "sublabels": []},
                 {"name": "r", "color": "#000002", "attributes": [], "type": "points",
                  "svg": "", "sublabels": []}]},
        ],
        "version": "1.0",
        "data": {
            "chunk_size": 3, "image_quality": 70, "start_frame": 0, "stop_frame": 5,
            "frame_filter": "", "chunk_type": "imageset", "storage_method": "cache",
            "storage": "local", "sorting_method": "lexicographical", "deleted_frames": [4],
            "custom_segments": False, "job_file_mapping": None,
            "validation_layout": None,
        },
        "jobs": [
            {"start_frame": 0, "stop_frame": 2, "frames": [], "status": "completed",
             "type": "annotation"},
            {"start_frame": 3, "stop_frame": 5, "frames": [], "status": "annotation",
             "type": "annotation"},
        ],
    }  # fmt: skip
    annotations = [
        {"version": 0, "tags": [], "shapes": [
            {"type": "rectangle", "occluded": False, "outside": False, "z_order": 0,
             "rotation": 0.0, "points": [1.0, 2.0, 3.0, 4.0], "frame": 1, "group": 0,
             "source": "manual", "attributes": [{"name": "model", "value": "b"}],
             "elements": [], "label": "car"},
            {"type": "skeleton", "occluded": False, "outside": False, "z_order": 0,
             "rotation": 0.0, "points": [], "frame": 2, "group": 0, "source": "manual",
             "attributes": [], "label": "body", "elements": [
                 {"type": "points", "occluded": False, "outside": False, "z_order": 0,
                  "rotation": 0.0, "points": [1.0, 2.0], "frame": 2, "group": 0,
                  "source": "manual", "attributes": [], "label": "l"},
                 {"type": "points", "occluded": False, "outside": True, "z_order": 0,
                  "rotation": 0.0, "points": [3.0, 4.0], "frame": 2, "group": 0,
                  "source": "manual", "attributes": [], "label": "r"}]}],
         "tracks": []},
        {"version": 0, "tags": [{"frame": 3, "group": 0, "source": "manual",
                                 "attributes": [], "label": "car"}],
         "shapes": [], "tracks": [
            {"frame": 3, "group": 0, "source": "manual", "attributes": [], "label": "car",
             "shapes": [{"type": "rectangle", "occluded": False, "outside": False,
                         "z_order": 0, "rotation": 0.0, "points": [0.0, 0.0, 5.0, 5.0],
                         "frame": 3, "attributes": [{"name": "model", "value": "a"}]}],
             "elements": []}]},
    ]  # fmt: skip
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        media = {f"frame_{i}.png": image_bytes(40, 30, (i * 30, 0, 0), fmt="PNG") for i in range(6)}
        lines = [{"version": "1.1"}, {"type": "images"}] + [
            {"name": n[:-4], "extension": ".png", "width": 40, "height": 30,
             "meta": {"related_images": []}, "checksum": "0" * 32}
            for n in sorted(media)
        ]  # fmt: skip
        zf.writestr("data/manifest.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
        for name, data in media.items():
            zf.writestr(f"data/{name}", data)
        zf.writestr("task.json", json.dumps(task))
        zf.writestr("annotations.json", json.dumps(annotations))
    return buffer.getvalue()


async def test_a_cvat_written_backup_restores(client_for: Any, alice: Account) -> None:
    api = client_for(alice)
    done = await restore(api, "task", cvat_backup())
    assert done["status"] == "finished", done
    task_id = done["result_id"]
    got = await snapshot(api, task_id)
    assert got["task"]["size"] == 6 and got["task"]["name"] == "from cvat"
    assert got["task"]["segment_size"] == 3
    assert [j[:3] for j in got["jobs"]] == [(0, 2, "completed"), (3, 5, "annotation")]
    assert got["meta"]["deleted_frames"] == [4]
    assert [f["name"] for f in got["meta"]["frames"]] == [f"frame_{i}.png" for i in range(6)]
    body = next(lbl for lbl in got["labels"] if lbl["name"] == "body")
    assert body["svg"].count('data-label="l"') == 1  # now numbered with the new sublabel id
    labels = await labels_of(api, task_id)
    sub_ids = {s["id"] for s in labels["body"]["sublabels"]}
    assert {int(i) for i in re.findall(r'data-label-id="(\d+)"', labels["body"]["svg"])} == sub_ids
    shapes = got["annotations"]["shapes"]
    car = next(s for s in shapes if s["label"] == "car")
    assert car["attributes"] == [{"name": "model", "value": "b"}] and car["frame"] == 1
    skeleton = next(s for s in shapes if s["label"] == "body")
    assert [e["label"] for e in skeleton["elements"]] == ["l", "r"]
    assert len(got["annotations"]["tracks"]) == 1 and len(got["annotations"]["tags"]) == 1


# --------------------------------------------------------------------------- bad backups


def _rewrite(backup: bytes, edit: dict[str, bytes | None]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(backup)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename in edit:
                continue
            dst.writestr(info, src.read(info))
        for name, data in edit.items():
            if data is not None:
                dst.writestr(name, data)
    return out.getvalue()


def _bad(backup: bytes) -> dict[str, tuple[bytes, str]]:
    task = json.loads(zipfile.ZipFile(io.BytesIO(backup)).read("task.json"))
    ann = json.loads(zipfile.ZipFile(io.BytesIO(backup)).read("annotations.json"))
    ann[1]["shapes"] = [dict(ann[0]["shapes"][0], label="zebra", frame=3)]
    slip = io.BytesIO()
    with zipfile.ZipFile(slip, "w") as zf:
        zf.writestr("task.json", json.dumps(task))
        zf.writestr("../evil.png", b"x")
    return {
        "not a zip": (b"hello, this is not a zip", "not a zip"),
        "truncated": (backup[: len(backup) // 2], "not a zip"),
        "wrong version": (
            _rewrite(backup, {"task.json": json.dumps({**task, "version": "2.0"}).encode()}),
            "version '2.0' is not supported",
        ),
        "zip slip": (slip.getvalue(), "'..'"),
        "undefined label": (
            _rewrite(backup, {"annotations.json": json.dumps(ann).encode()}),
            "label 'zebra' is used but not defined",
        ),
        "frame outside its job": (
            _rewrite(
                backup,
                {
                    "annotations.json": json.dumps(
                        [ann[0], {**ann[1], "shapes": [dict(ann[0]["shapes"][0], frame=0)]}]
                    ).encode()
                },
            ),
            "annotations.json[1]",
        ),
        "no task.json": (_rewrite(backup, {"task.json": None}), "no task.json"),
    }


@pytest.mark.parametrize(
    "case",
    ["not a zip", "truncated", "wrong version", "zip slip", "undefined label",
     "frame outside its job", "no task.json"],
)  # fmt: skip
async def test_a_bad_backup_fails_cleanly(
    case: str, client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    api = client_for(alice)
    good = cvat_backup()
    data, message = _bad(good)[case]
    counts, files = _counts(db), _files(settings)
    done = await restore(api, "task", data)
    assert done["status"] == "failed", done
    assert message in str(done["message"]), done["message"]
    assert _counts(db) == counts
    assert _files(settings) == files
    restores = settings.uploads_dir / "backups" / "requests"
    assert not restores.is_dir() or not list(restores.iterdir())
    assert not (Path(settings.data_dir) / "evil.png").exists()


async def test_backup_permissions(
    client_for: Any, alice: Account, bob: Account, db: Database
) -> None:
    api = client_for(alice)
    r = await api.post("/api/tasks", json={"name": "t", "labels": [{"name": "a"}]})
    task_id = r.json()["id"]
    other = client_for(bob)
    r = await other.post(f"/api/tasks/{task_id}/backup/export")
    assert r.status_code == 403, r.text
    r = await api.post(f"/api/tasks/{task_id}/backup/export")
    rq_id = r.json()["rq_id"]
    done = await wait(api, rq_id)
    assert done["status"] == "finished", done
    r = await other.get(f"/api/tasks/{task_id}/backup/download", params={"rq_id": rq_id})
    assert r.status_code in (403, 404), r.text
    # a task without data restores as a task without data
    done = await restore(api, "task", (await api.get(str(done["result_url"]))).content)
    assert done["status"] == "finished", done
    assert (await api.get(f"/api/tasks/{done['result_id']}")).json()["size"] == 0


async def test_video_task_round_trip(
    client_for: Any, alice: Account, tmp_path: Path, settings: Settings
) -> None:
    api = client_for(alice)
    video = write_video(tmp_path / "clip.mp4", 20).read_bytes()
    r = await api.post(
        "/api/tasks",
        json={"name": "video", "labels": [{"name": "car"}], "segment_size": 8, "overlap": 2},
    )
    task_id = r.json()["id"]
    r = await upload(api, task_id, {"clip.mp4": video}, start_frame=1, stop_frame=15)
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    labels = await labels_of(api, task_id)
    track = {
        "frame": 1, "label_id": labels["car"]["id"],
        "shapes": [{"type": "rectangle", "frame": 1, "points": [0, 0, 5, 5]},
                   {"type": "rectangle", "frame": 9, "points": [5, 5, 9, 9]}],
    }  # fmt: skip
    r = await api.put(f"/api/tasks/{task_id}/annotations", json={"tracks": [track]})
    assert r.status_code == 200, r.text
    before = await snapshot(api, task_id)
    assert before["task"]["mode"] == "interpolation" and before["task"]["size"] == 15
    backup = await export(api, "task", task_id)
    with zipfile.ZipFile(io.BytesIO(backup)) as zf:
        assert zf.read("data/clip.mp4") == video
    done = await restore(api, "task", backup)
    assert done["status"] == "finished", done
    assert await snapshot(api, done["result_id"]) == before


async def test_project_round_trip(client_for: Any, alice: Account, db: Database) -> None:
    api = client_for(alice)
    r = await api.post("/api/projects", json={"name": "proj", "labels": LABELS})
    assert r.status_code == 201, r.text
    project_id = r.json()["id"]
    task_ids = [await full_task(api, project_id=project_id, labels=[]) for _ in range(2)]
    r = await api.post(
        "/api/tasks", json={"name": "empty one", "project_id": project_id, "labels": []}
    )
    task_ids.append(r.json()["id"])
    before = [await snapshot(api, t) for t in task_ids]
    backup = await export(api, "project", project_id)
    with zipfile.ZipFile(io.BytesIO(backup)) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("project.json"))
    assert manifest["version"] == "1.0" and manifest["name"] == "proj"
    assert {"task_0/task.json", "task_1/task.json", "task_2/task.json"} <= set(names)
    done = await restore(api, "project", backup)
    assert done["status"] == "finished", done
    new_id = done["result_id"]
    assert new_id != project_id
    old = (await api.get(f"/api/projects/{project_id}")).json()
    new = (await api.get(f"/api/projects/{new_id}")).json()
    assert (new["name"], new["bug_tracker"]) == (old["name"], old["bug_tracker"])
    new_tasks = (await api.get(f"/api/tasks?project_id={new_id}&org=&sort=id")).json()["results"]
    assert len(new_tasks) == 3
    after = [await snapshot(api, t["id"]) for t in new_tasks]
    assert after == before
    r = await api.get(f"/api/labels?project_id={new_id}&org=&page_size=100")
    project_labels = {lbl["name"]: lbl for lbl in r.json()["results"]}
    assert _normal_labels(project_labels) == before[0]["labels"]
    # a task of a project, backed up alone, restores as a task of its own with those labels
    done = await restore(api, "task", await export(api, "task", task_ids[0]))
    assert done["status"] == "finished", done
    alone = await snapshot(api, done["result_id"])
    assert (await api.get(f"/api/tasks/{done['result_id']}")).json()["project_id"] is None
    assert alone == before[0]
