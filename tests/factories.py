"""Builders that tests in several modules share: tasks with data or frames, synthetic
scenes and the colour detector's task, function specs, request polling, a launcher that
holds auto-annotation runs back. Tests import them from here, never from another test
module."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from typing import Any

import cv2
import httpx
import numpy as np
from PIL import Image

from cvat_ray.actors.functions.synthetic import COLOURS, make_scene
from cvat_ray.actors.launcher import ThreadLauncher
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.deploy import builtin_spec_dir
from cvat_ray.storage.db import Database
from cvat_ray.storage.functions.spec import FunctionSpec, load_spec_file
from cvat_ray.storage.services import lambda_functions
from cvat_ray.storage.services.resources import get_task
from cvat_ray.storage.services.task_data import FrameInfo, attach_data
from tests.conftest import Account
from tests.media_files import image_bytes

# ---------------------------------------------------------------------- tasks and their data

LABELS = [
    {"name": "cat", "color": "#ff0000"},
    {
        "name": "dog",
        "attributes": [
            {
                "name": "color",
                "mutable": False,
                "input_type": "select",
                "values": ["a", "b"],
                "default_value": "a",
            },
            {"name": "age", "mutable": True, "input_type": "number", "values": ["0", "20", "1"]},
            {"name": "good", "mutable": True, "input_type": "checkbox", "values": ["true"]},
            {"name": "note", "mutable": True, "input_type": "text", "values": []},
        ],
    },
    {
        "name": "person",
        "type": "skeleton",
        "svg": '<circle r="1" data-label-name="head" />',
        "sublabels": [{"name": "head", "type": "points"}, {"name": "hand", "type": "points"}],
    },
]


def add_frames(db: Database, task_id: int, count: int) -> None:
    with db.session() as session:
        task = get_task(session, task_id)
        attach_data(session, task, [FrameInfo(f"img_{i:03}.jpg", 640, 480) for i in range(count)])


# the labels of a task made by :func:`new_task`
DATA_LABELS = [{"name": "cat"}]


async def new_task(api: httpx.AsyncClient, **extra: object) -> int:
    r = await api.post("/api/tasks", json={"name": "data task", "labels": DATA_LABELS, **extra})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def upload(
    api: httpx.AsyncClient, task_id: int, files: dict[str, bytes], **params: object
) -> httpx.Response:
    url = f"/api/tasks/{task_id}/data/"
    r = await api.post(
        url,
        headers={"Upload-Start": ""},
        content=b"",
    )
    assert r.status_code == 202, r.text
    parts = {
        f"client_files[{i}]": (f"/home/someone/data/{name}", data, "application/octet-stream")
        for i, (name, data) in enumerate(files.items())
    }
    r = await api.post(
        url, headers={"Upload-Multiple": ""}, files=parts, data={"image_quality": "70"}
    )
    assert r.status_code == 200, r.text
    return await api.post(url, headers={"Upload-Finish": ""}, json={"image_quality": 70, **params})


async def wait(api: httpx.AsyncClient, rq_id: str, timeout: float = 60) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await api.get(f"/api/requests/{rq_id}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert isinstance(body["message"], str)
        if body["status"] in ("finished", "failed"):
            return body  # type: ignore[no-any-return]
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.05)


def images(count: int, fmt: str = "JPEG", ext: str = ".jpg") -> dict[str, bytes]:
    return {
        f"img_{i:02d}{ext}": image_bytes(64, 48, (i * 20, 50, 50), fmt=fmt) for i in range(count)
    }


async def make_task(
    api: httpx.AsyncClient, db: Database, frames: int = 10, segment_size: int = 0, **extra: Any
) -> dict[str, Any]:
    r = await api.post(
        "/api/tasks", json={"name": "t", "labels": LABELS, "segment_size": segment_size, **extra}
    )
    assert r.status_code == 201, r.text
    task = r.json()
    add_frames(db, task["id"], frames)
    labels = (await api.get(f"/api/labels?task_id={task['id']}&org=")).json()["results"]
    jobs = (await api.get(f"/api/jobs?task_id={task['id']}&org=&sort=id")).json()["results"]
    by_name = {lbl["name"]: lbl for lbl in labels}
    task["labels_by_name"] = by_name
    task["job_ids"] = sorted(j["id"] for j in jobs)
    task["jobs_by_start"] = sorted(jobs, key=lambda j: j["start_frame"])
    return task


# ---------------------------------------------------------------------- scenes and functions

W, H = 320, 240

COLOUR_LABELS = [{"name": name, "type": "rectangle"} for name in COLOURS] + [{"name": "cat"}]
W, H = 320, 240


def png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def scenes(count: int, seed: int = 1) -> list[tuple[np.ndarray, list[tuple[str, Any]]]]:
    return [make_scene(W, H, (1, 4), seed=seed * 100 + i, sizes=(20, 60)) for i in range(count)]


async def colour_task(api: httpx.AsyncClient, frames: list[np.ndarray], **extra: object) -> int:
    labels = {} if "project_id" in extra else {"labels": COLOUR_LABELS}
    r = await api.post("/api/tasks", json={"name": "scenes", **labels, **extra})
    assert r.status_code == 201, r.text
    task_id = int(r.json()["id"])
    files = {f"scene_{i:03d}.png": png(im) for i, im in enumerate(frames)}
    r = await upload(api, task_id, files, sorting_method="lexicographical")
    assert r.status_code == 202, r.text
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    return task_id


async def label_names(api: httpx.AsyncClient, task_id: int) -> dict[int, str]:
    r = await api.get(f"/api/labels?task_id={task_id}&page_size=100")
    return {lb["id"]: lb["name"] for lb in r.json()["results"]}


def found(
    shapes: list[dict[str, Any]], names: dict[int, str]
) -> set[tuple[int, str, tuple[int, ...]]]:
    return {
        (s["frame"], names[s["label_id"]], tuple(round(p) for p in s["points"])) for s in shapes
    }


def truth_of(
    frames: list[tuple[np.ndarray, list[tuple[str, Any]]]],
) -> set[tuple[int, str, tuple[int, ...]]]:
    return {(i, name, tuple(box)) for i, (_, truth) in enumerate(frames) for name, box in truth}


async def poll(api: httpx.AsyncClient, request_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await api.get(f"/api/lambda/requests/{request_id}")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if body["status"] in ("finished", "failed"):
            return body
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.1)


def cartoon_face(size: int = 200) -> tuple[np.ndarray, tuple[int, int]]:
    grey = np.full((480, 640), 60, np.uint8)
    cx, cy = 300, 250
    cv2.ellipse(grey, (cx, cy), (int(size * 0.42), int(size * 0.55)), 0, 0, 360, 190, -1)
    for dx in (-1, 1):
        eye = (cx + dx * int(size * 0.17), cy - int(size * 0.12))
        cv2.ellipse(grey, eye, (int(size * 0.09), int(size * 0.045)), 0, 0, 360, 40, -1)
        brow = cy - int(size * 0.24)
        cv2.line(
            grey, (cx + dx * int(size * 0.08), brow), (cx + dx * int(size * 0.28), brow), 70, 8
        )
    cv2.line(grey, (cx, cy - int(size * 0.08)), (cx, cy + int(size * 0.12)), 150, 6)
    cv2.ellipse(
        grey, (cx, cy + int(size * 0.25)), (int(size * 0.15), int(size * 0.04)), 0, 0, 360, 80, -1
    )
    blurred = cv2.GaussianBlur(grey, (0, 0), size / 60)
    return np.stack([blurred] * 3, axis=-1), (cx, cy)


def silhouette(height: int = 240) -> tuple[np.ndarray, tuple[int, int]]:
    image = np.full((480, 640, 3), 170, np.uint8)
    cx, top, u, ink = 320, 120, height / 8, (50, 50, 50)
    cv2.circle(image, (cx, int(top + u * 0.6)), int(u * 0.55), ink, -1)
    cv2.ellipse(image, (cx, int(top + u * 2.6)), (int(u * 0.9), int(u * 1.5)), 0, 0, 360, ink, -1)
    for dx in (-1, 1):
        hip, foot = (
            (cx + dx * int(u * 0.4), int(top + u * 3.8)),
            (cx + dx * int(u * 0.6), int(top + u * 7.8)),
        )
        cv2.line(image, hip, foot, ink, int(u * 0.55))
        shoulder, hand = (
            (cx + dx * int(u * 0.8), int(top + u * 1.5)),
            (cx + dx * int(u * 1.2), int(top + u * 4.2)),
        )
        cv2.line(image, shoulder, hand, ink, int(u * 0.35))
    return cv2.GaussianBlur(image, (0, 0), 1.5), (cx, int(top + u * 3))


def colour_spec(**resources: Any) -> FunctionSpec:
    """The built-in colour detector on a quarter CPU, one replica, batches of four (the
    session Ray cluster's size)."""
    spec = load_spec_file(builtin_spec_dir() / "colour-detector.yaml")
    return spec.model_copy(
        update={
            "resources": spec.resources.model_copy(update={"num_cpus": 0.25, **resources}),
            "autoscaling": spec.autoscaling.model_copy(
                update={"min_replicas": 1, "max_replicas": 1}
            ),
            "batching": spec.batching.model_copy(update={"max_batch_size": 4}),
        }
    )


def crashing_spec(model: str) -> FunctionSpec:
    """A detector from tests/actors/crashing.py (``Crasher`` or ``Staller``) with the
    colour detector's resources."""
    spec = colour_spec()
    return spec.model_copy(
        update={
            "id": model.lower(),
            "runtime": spec.runtime.model_copy(
                update={"class_": f"tests.actors.crashing:{model}", "options": {}}
            ),
            "labels": spec.labels[:1],
        }
    )


def marked_scenes(count: int, marked: int, seed: int) -> list[np.ndarray]:
    """Scenes whose frame ``marked`` has the pixel that makes the crashing models act up."""
    images = [im.copy() for im, _ in scenes(count, seed=seed)]
    images[marked][0, 0] = (1, 0, 0)
    return images


class Deferred(ThreadLauncher):
    """The in-process launcher, except that it starts no auto-annotation run: the test
    decides when a run runs (task data is processed as usual)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(settings, db)
        self.submitted: list[str] = []

    def submit(self, request_id: str, operation_type: str) -> None:
        if operation_type in self.held_types:
            self.submitted.append(request_id)
        else:
            super().submit(request_id, operation_type)

    held_types: tuple[str, ...] = (lambda_functions.OPERATION,)


def api_routes(app: Any) -> list[tuple[str, str, Any]]:
    """(method, path, endpoint) of every API route, included routers flattened."""
    out = []
    for route in app.routes:
        contexts = (
            list(route.effective_route_contexts())
            if hasattr(route, "effective_route_contexts")
            else [route]
        )
        for item in contexts:
            path = getattr(item, "path", "")
            if isinstance(path, str) and path.startswith("/api/") and hasattr(item, "endpoint"):
                for method in sorted(set(item.methods) - {"HEAD", "OPTIONS"}):
                    out.append((method, path, item.endpoint))
    return out


async def route_objects(client_for: Any, db: Database, admin: Account) -> dict[str, str]:
    """One real object behind each path parameter of the API's routes (the route walks of
    the route-guard and UI-contract tests)."""
    api: httpx.AsyncClient = client_for(admin)
    org = (await api.post("/api/organizations", json={"slug": "walk"})).json()
    project = (await api.post("/api/projects", json={"name": "p", "labels": LABELS})).json()
    task = (await api.post("/api/tasks", json={"name": "t", "project_id": project["id"]})).json()
    add_frames(db, task["id"], 2)
    job = (await api.get(f"/api/jobs?task_id={task['id']}")).json()["results"][0]
    label = (await api.get(f"/api/labels?project_id={project['id']}")).json()["results"][0]
    token = (await api.post("/api/auth/access_tokens", json={"name": "t"})).json()
    membership = (await api.get("/api/memberships?org=walk")).json()["results"][0]
    issue = (
        await api.post(
            "/api/issues", json={"job": job["id"], "frame": 0, "position": [1, 2], "message": "m"}
        )
    ).json()
    comment = (await api.get(f"/api/comments?issue_id={issue['id']}")).json()["results"][0]
    guide = (await api.post("/api/guides", json={"task_id": task["id"], "markdown": "m"})).json()
    asset = (
        await api.post(
            "/api/assets",
            data={"guide_id": str(guide["id"])},
            files={"file": ("a.png", image_bytes(8, 8, fmt="PNG"), "image/png")},
        )
    ).json()
    settings = (await api.get(f"/api/quality/settings?task_id={task['id']}")).json()["results"][0]
    webhook = (
        await api.post(
            "/api/webhooks",
            json={
                "target_url": "http://192.0.2.1/hook",  # refused at once: no network needed
                "type": "project",
                "project_id": project["id"],
                "events": ["update:task"],
            },
        )
    ).json()
    delivery = (await api.post(f"/api/webhooks/{webhook['id']}/ping")).json()
    return {
        "webhook_id": str(webhook["id"]),
        "delivery_id": str(delivery["id"]),
        "guide_id": str(guide["id"]),
        "uuid": asset["uuid"],
        "settings_id": str(settings["id"]),
        "issue_id": str(issue["id"]),
        "comment_id": str(comment["id"]),
        "org_id": str(org["id"]),
        "project_id": str(project["id"]),
        "task_id": str(task["id"]),
        "job_id": str(job["id"]),
        "label_id": str(label["id"]),
        "token_id": str(token["id"]),
        "membership_id": str(membership["id"]),
        "user_id": str(admin.id),
        "request_id": "nonexistent",
        "func_id": "nonexistent",
        # a cloud storage needs a reachable bucket; a missing one must still not give a 500
        "storage_id": "999999",
        "upload_id": "nonexistent",
        "key": "nonexistent",
    }


def service_account_key(token_uri: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "test",
            "private_key_id": "1",
            "private_key": pem,
            "client_email": "reader@test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": token_uri,
        }
    )


# ---------------------------------------------------------------------- dataset export/import


async def labelled_task(
    api: httpx.AsyncClient, files: dict[str, bytes], labels: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A task with :data:`LABELS` (or ``labels``) and these images; its labels by name."""
    r = await api.post("/api/tasks", json={"name": "dataset task", "labels": labels or LABELS})
    assert r.status_code == 201, r.text
    task = r.json()
    r = await upload(api, task["id"], files)
    assert r.status_code == 202, r.text
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    found = (await api.get(f"/api/labels?task_id={task['id']}&org=&page_size=100")).json()
    task["labels_by_name"] = {lb["name"]: lb for lb in found["results"]}
    return task


async def export_dataset(
    api: httpx.AsyncClient, kind: str, obj_id: int, fmt: str, save_images: bool = False
) -> bytes:
    """Export through the API (202, poll, absolute result_url) and download the file."""
    r = await api.post(
        f"/api/{kind}s/{obj_id}/dataset/export",
        params={"format": fmt, "save_images": str(save_images)},
    )
    assert r.status_code == 202, r.text
    body = await wait(api, r.json()["rq_id"])
    assert body["status"] == "finished", body
    url = str(body["result_url"])
    assert url.startswith("http://testserver/"), url
    r = await api.get(url)
    assert r.status_code == 200, r.text
    assert "attachment" in r.headers["content-disposition"]
    return r.content


async def import_file(
    api: httpx.AsyncClient,
    kind: str,
    obj_id: int,
    fmt: str,
    name: str,
    data: bytes,
    conv_mask_to_poly: bool = False,
) -> dict[str, object]:
    """Import a file by multipart (``annotation_file``); the finished or failed request.
    Masks stay masks unless ``conv_mask_to_poly`` (the server's default is CVAT's: on)."""
    path = (
        f"/api/{kind}s/{obj_id}/dataset/"
        if kind == "project"
        else f"/api/{kind}s/{obj_id}/annotations/"
    )
    field = "dataset_file" if kind == "project" else "annotation_file"
    params = {"format": fmt, "conv_mask_to_poly": str(conv_mask_to_poly).lower()}
    r = await api.post(path, params=params, files={field: (name, data)})
    assert r.status_code == 202, r.text
    return await wait(api, r.json()["rq_id"])


# ------------------------------------------------------------------ dataset format tests


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """A ZIP archive of these members, in memory."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


async def task_annotations(api: httpx.AsyncClient, task: dict[str, Any]) -> dict[str, Any]:
    r = await api.get(f"/api/tasks/{task['id']}/annotations/")
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def attr_id(task: dict[str, Any], label: str, name: str) -> int:
    """The id of a label's attribute (``task`` as :func:`labelled_task` returns it)."""
    attrs = task["labels_by_name"][label]["attributes"]
    return int(next(a["id"] for a in attrs if a["name"] == name))


async def bad_import(
    api: httpx.AsyncClient, task: dict[str, Any], fmt: str, data: bytes, reason: str
) -> None:
    """The import fails with ``reason`` in its message and leaves the annotations as they were."""
    before = await task_annotations(api, task)
    body = await import_file(api, "task", task["id"], fmt, "bad.zip", data)
    assert body["status"] == "failed", body
    assert reason in str(body["message"]), body["message"]
    assert await task_annotations(api, task) == before


async def import_into_new_project(
    api: httpx.AsyncClient, labels: list[dict[str, Any]], fmt: str, data: bytes
) -> list[dict[str, Any]]:
    """A new project with ``labels``, ``data`` imported into it as a dataset (the import must
    finish); the project's tasks."""
    r = await api.post("/api/projects", json={"name": "imported", "labels": labels})
    assert r.status_code == 201, r.text
    project = r.json()["id"]
    body = await import_file(api, "project", project, fmt, "dataset.zip", data)
    assert body["status"] == "finished", body
    tasks: list[dict[str, Any]] = (
        await api.get("/api/tasks", params={"project_id": project})
    ).json()["results"]
    return tasks
