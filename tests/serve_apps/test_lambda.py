"""CVAT's lambda API with the built-in functions, in process (models loaded by the API
process, whole-task runs on the local engine). The Ray paths are in tests/actors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cvat_ray.actors.autoannotate import local_results, run_request
from cvat_ray.actors.functions.synthetic import COLOURS
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.serve_apps.deploy import builtin_spec_dir
from cvat_ray.storage.db import Database
from cvat_ray.storage.functions.spec import load_spec_file, spec_files
from cvat_ray.storage.services import lambda_functions
from cvat_ray.storage.services import requests as request_service
from tests.conftest import Account
from tests.factories import (
    COLOUR_LABELS,
    Deferred,
    H,
    W,
    cartoon_face,
    colour_task,
    found,
    label_names,
    png,
    poll,
    scenes,
    silhouette,
    truth_of,
    upload,
    wait,
)


@pytest.fixture
def functions(db: Database) -> list[str]:
    with db.session() as session:
        for path in spec_files(builtin_spec_dir()):
            lambda_functions.register(session, load_spec_file(path), "builtin")
    return [p.stem for p in spec_files(builtin_spec_dir())]


async def test_functions_are_listed_as_cvat_does(client_for, alice: Account, functions) -> None:
    api = client_for(alice)
    r = await api.get("/api/lambda/functions")
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list)
    by_id = {f["id"]: f for f in body}
    assert set(by_id) == set(functions)
    colour = by_id["colour-detector"]
    assert colour["kind"] == "detector"
    assert [lb["name"] for lb in colour["labels_v2"]] == list(COLOURS)
    assert by_id["grabcut"]["kind"] == "interactor" and by_id["grabcut"]["min_pos_points"] == 1
    assert by_id["mil-tracker"]["supported_shape_types"] == ["rectangle"]
    r = await api.get("/api/lambda/functions/colour-detector")
    assert r.status_code == 200 and r.json()["id"] == "colour-detector"
    r = await api.get("/api/lambda/functions/nope")
    assert r.status_code == 404 and "Unknown function 'nope'" in r.text


async def test_online_detector_finds_the_objects(client_for, alice: Account, functions) -> None:
    api = client_for(alice)
    frames = scenes(3)
    task_id = await colour_task(api, [im for im, _ in frames])
    names = await label_names(api, task_id)
    job = (await api.get(f"/api/jobs?task_id={task_id}")).json()["results"][0]
    got = []
    for i in range(3):
        r = await api.post(
            "/api/lambda/functions/colour-detector",
            json={"job": job["id"], "frame": i, "threshold": 0.5},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) >= {"version", "tags", "shapes", "tracks"}
        for shape in body["shapes"]:
            assert shape["source"] == "auto" and 0 < shape["score"] <= 1
            assert shape["frame"] == i
        got.extend(body["shapes"])
    assert found(got, names) == truth_of(frames)


async def test_online_call_bad_input(client_for, alice: Account, bob: Account, functions) -> None:
    api = client_for(alice)
    task_id = await colour_task(api, [im for im, _ in scenes(2)])
    job = (await api.get(f"/api/jobs?task_id={task_id}")).json()["results"][0]
    url = "/api/lambda/functions/colour-detector"
    r = await api.post(url, json={"task": task_id, "frame": 5})
    assert r.status_code == 400 and "between 0 and 1" in r.text
    r = await api.post(url, json={"job": job["id"], "frame": 9})
    assert r.status_code == 400 and "not in job" in r.text
    r = await api.post(url, json={"frame": 0})
    assert r.status_code == 400
    r = await api.post(url, json={"task": task_id, "frame": 0, "threshold": 2})
    assert r.status_code == 400 and "threshold" in r.text
    r = await api.post(url, json={"task": task_id, "mapping": {"red": {"name": "dog"}}})
    assert r.status_code == 400 and "The task has no labels named: dog" in r.text
    r = await api.post(url, content=b"{not json")
    assert r.status_code == 400
    r = await api.post("/api/lambda/functions/nope", json={"task": task_id})
    assert r.status_code == 404
    # no data yet
    empty = (await api.post("/api/tasks", json={"name": "e", "labels": COLOUR_LABELS})).json()
    r = await api.post(url, json={"task": empty["id"]})
    assert r.status_code == 400 and "no data" in r.text
    # another user's task
    r = await client_for(bob).post(url, json={"task": task_id})
    assert r.status_code == 403


async def test_mapping_sends_model_labels_to_task_labels(
    client_for, alice: Account, functions
) -> None:
    api = client_for(alice)
    frames = scenes(1, seed=7)
    task_id = await colour_task(api, [frames[0][0]])
    names = await label_names(api, task_id)
    mapping = {name: {"name": "cat"} for name in COLOURS}
    r = await api.post(
        "/api/lambda/functions/colour-detector", json={"task": task_id, "mapping": mapping}
    )
    assert r.status_code == 200, r.text
    shapes = r.json()["shapes"]
    assert len(shapes) == len(frames[0][1])
    assert {names[s["label_id"]] for s in shapes} == {"cat"}


async def test_interactor_outlines_the_object(client_for, alice: Account, functions) -> None:
    api = client_for(alice)
    image = np.full((H, W, 3), 90, dtype=np.uint8)
    rng = np.random.default_rng(3)
    image += rng.integers(0, 40, image.shape, dtype=np.uint8)
    image[60:160, 100:220] = (220, 40, 40)
    task_id = await colour_task(api, [image])
    r = await api.post(
        "/api/lambda/functions/grabcut",
        json={
            "task": task_id,
            "frame": 0,
            "pos_points": [[160, 110]],
            "obj_bbox": [[90, 50], [230, 170]],
        },
    )
    assert r.status_code == 200, r.text
    points = np.array(r.json()["points"])
    assert points.shape[1] == 2 and len(points) >= 3
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    assert abs(x0 - 100) <= 3 and abs(y0 - 60) <= 3 and abs(x1 - 219) <= 3 and abs(y1 - 159) <= 3
    r = await api.post("/api/lambda/functions/grabcut", json={"task": task_id, "frame": 0})
    assert r.status_code == 400 and "positive point" in r.text


async def test_tracker_follows_a_moving_square(client_for, alice: Account, functions) -> None:
    api = client_for(alice)
    rng = np.random.default_rng(5)
    frames = []
    for i in range(4):
        image = rng.integers(60, 120, (H, W, 3), dtype=np.uint8)
        x = 60 + 8 * i
        image[80:130, x : x + 50] = (240, 240, 20)
        image[95:115, x + 15 : x + 35] = (20, 20, 200)
        frames.append(image)
    task_id = await colour_task(api, frames)
    url = "/api/lambda/functions/mil-tracker"
    r = await api.post(url, json={"task": task_id, "frame": 0, "shapes": [[60, 80, 110, 130]]})
    assert r.status_code == 200, r.text
    states = r.json()["states"]
    for i in range(1, 4):
        r = await api.post(url, json={"task": task_id, "frame": i, "states": states})
        assert r.status_code == 200, r.text
        (box,) = r.json()["shapes"]
        states = r.json()["states"]
        assert abs(box[0] - (60 + 8 * i)) <= 6 and abs(box[1] - 80) <= 6
    r = await api.post(url, json={"task": task_id, "frame": 0})
    assert r.status_code == 400 and "shapes" in r.text


async def test_whole_task_request(client_for, alice: Account, bob: Account, functions) -> None:
    api = client_for(alice)
    frames = scenes(12, seed=3)
    task_id = await colour_task(api, [im for im, _ in frames], segment_size=5)
    names = await label_names(api, task_id)
    r = await api.post(
        "/api/lambda/requests",
        json={"function": "colour-detector", "task": task_id, "threshold": 0.4, "cleanup": True},
    )
    assert r.status_code == 200, r.text
    call = r.json()
    assert call["function"] == {
        "id": "colour-detector",
        "task": task_id,
        "threshold": 0.4,
    }  # no "job": CVAT's schema has it optional, not nullable (cvat-sdk refuses a null)
    assert call["status"] in ("queued", "started", "finished")
    done = await poll(api, call["id"])
    assert done["status"] == "finished" and done["progress"] == 100, done
    assert done["ended"] is not None and done["exc_info"] is None
    listed = (await api.get("/api/lambda/requests")).json()
    assert [c["id"] for c in listed] == [call["id"]]
    assert (await client_for(bob).get("/api/lambda/requests")).json() == []
    assert (await client_for(bob).get(f"/api/lambda/requests/{call['id']}")).status_code == 404
    shapes = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
    assert found(shapes, names) == truth_of(frames)
    assert all(s["source"] == "auto" and 0 < s["score"] <= 1 for s in shapes)
    # the same again with cleanup: replaced, not doubled
    r = await api.post(
        "/api/lambda/requests",
        json={"function": "colour-detector", "task": task_id, "cleanup": True},
    )
    assert (await poll(api, r.json()["id"]))["status"] == "finished"
    again = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
    assert len(again) == len(shapes)


async def test_request_bad_input(client_for, alice: Account, bob: Account, functions) -> None:
    api = client_for(alice)
    task_id = await colour_task(api, [im for im, _ in scenes(2)])
    url = "/api/lambda/requests"
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"function": "nope", "task": task_id}, 404, "Unknown function"),
        ({"function": "grabcut", "task": task_id}, 400, "whole-task runs take detectors"),
        (
            {"function": "colour-detector", "task": task_id, "mapping": {"red": {"name": "truck"}}},
            400,
            "The task has no labels named: truck",
        ),
        ({"function": "colour-detector", "task": task_id, "threshold": -1}, 400, "threshold"),
        ({"function": "colour-detector"}, 400, "task"),
        ({"function": "colour-detector", "task": 999999}, 404, ""),
        ({"function": "colour-detector", "task": task_id, "job": 999999}, 400, "not in task"),
        ({"function": "face-detector", "task": task_id}, 400, "matches a task label"),
    ]
    for body, status, text in cases:
        r = await api.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        assert text in r.text
    empty = (await api.post("/api/tasks", json={"name": "e", "labels": COLOUR_LABELS})).json()
    r = await api.post(url, json={"function": "colour-detector", "task": empty["id"]})
    assert r.status_code == 400 and "no data" in r.text
    r = await client_for(bob).post(url, json={"function": "colour-detector", "task": task_id})
    assert r.status_code == 403
    assert (await api.get("/api/lambda/requests")).json() == []


@pytest.fixture
def deferred_api(
    settings: Settings, db: Database, alice: Account
) -> Iterator[tuple[httpx.AsyncClient, Deferred]]:
    runs = Deferred(settings, db)
    app = build_app(settings, db, runs)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Token {alice.token}"},
    )
    yield client, runs


async def test_one_run_per_task_and_cancel(
    deferred_api, db: Database, settings: Settings, functions
) -> None:
    api, runs = deferred_api
    task_id = await colour_task(api, [im for im, _ in scenes(3)])
    body = {"function": "colour-detector", "task": task_id}
    first = (await api.post("/api/lambda/requests", json=body)).json()
    assert first["status"] == "queued" and runs.submitted == [first["id"]]
    r = await api.post("/api/lambda/requests", json=body)
    assert r.status_code == 409 and "Only one running request" in r.text
    r = await api.delete(f"/api/lambda/requests/{first['id']}")
    assert r.status_code == 204
    cancelled = (await api.get(f"/api/lambda/requests/{first['id']}")).json()
    assert cancelled["status"] == "failed" and "Cancelled" in cancelled["exc_info"]
    # the launcher's late hand-over finds nothing to do
    assert run_request(db, settings, first["id"], "test") is None
    assert (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"] == []
    # now another run may start
    assert (await api.post("/api/lambda/requests", json=body)).status_code == 200


async def test_cancel_mid_run_keeps_what_was_saved(
    deferred_api, db: Database, settings: Settings, functions
) -> None:
    api, _runs = deferred_api
    frames = scenes(8, seed=11)
    task_id = await colour_task(api, [im for im, _ in frames])
    call = (
        await api.post(
            "/api/lambda/requests", json={"function": "colour-detector", "task": task_id}
        )
    ).json()
    settings.functions.save_every = 2

    def cancelling(run: Any, s: Settings) -> Iterator[Any]:
        for i, result in enumerate(local_results(run, s)):
            if i == 4:  # two saves done (frames 0-3); the user cancels now
                with db.session() as session:  # what DELETE does once authorized
                    request_service.transition(
                        session, call["id"], "failed", message=lambda_functions.CANCELLED
                    )
            yield result

    stats = await asyncio.to_thread(
        run_request, db, settings, call["id"], "test", engine=cancelling
    )
    assert stats is not None and stats.cancelled
    done = (await api.get(f"/api/lambda/requests/{call['id']}")).json()
    assert done["status"] == "failed" and "Cancelled" in done["exc_info"]
    shapes = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
    assert shapes and {s["frame"] for s in shapes} <= {0, 1, 2, 3}
    want = {(i, n, tuple(b)) for i, (_, t) in enumerate(frames[:4]) for n, b in t}
    assert found(shapes, await label_names(api, task_id)) == want


async def test_a_bad_frame_is_recorded_and_skipped(
    client_for, alice: Account, settings: Settings, functions
) -> None:
    api = client_for(alice)
    frames = scenes(5, seed=21)
    task_id = await colour_task(api, [im for im, _ in frames])
    raw = sorted((settings.media_dir).rglob("scene_002.png"))
    assert raw, "the uploaded frame is stored under the media dir"
    for path in raw:
        Path(path).write_bytes(b"not an image any more")
    r = await api.post(
        "/api/lambda/requests", json={"function": "colour-detector", "task": task_id}
    )
    done = await poll(api, r.json()["id"])
    assert done["status"] == "finished", done
    call = (await api.get(f"/api/requests/{r.json()['id']}")).json()
    assert "1 frames failed and were skipped (frame 2:" in call["message"]
    shapes = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
    names = await label_names(api, task_id)
    want = {(i, n, tuple(b)) for i, (_, t) in enumerate(frames) if i != 2 for n, b in t}
    assert found(shapes, names) == want


async def test_dataset_run_through_the_api(
    client_for, alice: Account, bob: Account, functions
) -> None:
    api = client_for(alice)
    labels = [{"name": n, "type": "rectangle"} for n in COLOURS]
    project = (await api.post("/api/projects", json={"name": "p", "labels": labels})).json()
    frames = [scenes(2, seed=40 + i) for i in range(2)]
    task_ids = [
        await colour_task(api, [im for im, _ in f], project_id=project["id"]) for f in frames
    ]
    url = "/api/lambda/runs"
    r = await api.post(url, json={"function": "colour-detector", "project": project["id"]})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["tasks"] == 2 and body["to_annotate"] == 2 and body["job_id"] is None
    assert body["run"].startswith("colour-detector-")
    deadline = asyncio.get_running_loop().time() + 120
    while True:
        calls = (await api.get("/api/lambda/requests")).json()
        if len([c for c in calls if c["status"] == "finished"]) == 2:
            break
        assert asyncio.get_running_loop().time() < deadline, calls
        await asyncio.sleep(0.2)
    for task_id, f in zip(task_ids, frames, strict=True):
        shapes = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
        assert found(shapes, await label_names(api, task_id)) == truth_of(f)
    # the same run again: nothing left to do
    r = await api.post(url, json={"function": "colour-detector", "project": project["id"]})
    assert r.status_code == 202 and r.json()["to_annotate"] == 0
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"function": "colour-detector"}, 400, "exactly one of"),
        ({"function": "colour-detector", "tasks": [1], "project": 1}, 400, "exactly one of"),
        ({"function": "nope", "tasks": task_ids}, 404, "Unknown function"),
        ({"function": "grabcut", "tasks": task_ids}, 400, "dataset runs take detectors"),
        ({"function": "colour-detector", "tasks": [999999]}, 404, "999999"),
        ({"function": "colour-detector", "organization": "nowhere"}, 404, "nowhere"),
        ({"function": "colour-detector", "tasks": task_ids, "run": "../x"}, 400, "run"),
    ]
    for case, status, text in cases:
        r = await api.post(url, json=case)
        assert r.status_code == status, (case, r.text)
        assert text in r.text
    r = await client_for(bob).post(url, json={"function": "colour-detector", "tasks": task_ids})
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("function", "label", "drawing"),
    [("face-detector", "face", cartoon_face), ("person-detector", "person", silhouette)],
)
async def test_opencv_detectors_online(
    client_for, alice: Account, functions, function: str, label: str, drawing: Any
) -> None:
    api = client_for(alice)
    image, (cx, cy) = drawing()
    r = await api.post("/api/tasks", json={"name": "d", "labels": [{"name": label}]})
    task_id = int(r.json()["id"])
    r = await upload(api, task_id, {"drawing.png": png(image)})
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"
    r = await api.post(
        f"/api/lambda/functions/{function}", json={"task": task_id, "frame": 0, "threshold": 0.3}
    )
    assert r.status_code == 200, r.text
    shapes = r.json()["shapes"]
    hits = [
        s
        for s in shapes
        if s["points"][0] < cx < s["points"][2] and s["points"][1] < cy < s["points"][3]
    ]
    assert hits, shapes
    assert all(s["type"] == "rectangle" and 0 < s["score"] <= 1 for s in shapes)


# ---------------------------------------------------------------------------------- cleanup

# ``cleanup`` replaces the old annotations only when the run finishes; a failed or cancelled
# run leaves the jobs as they were.

CLEANUP_FRAMES = 8


async def _task_with_manual_shapes(api: httpx.AsyncClient) -> tuple[int, list[Any], Any]:
    frames = scenes(CLEANUP_FRAMES, seed=31)
    task_id = await colour_task(api, [im for im, _ in frames])
    names = await label_names(api, task_id)
    cat = next(i for i, n in names.items() if n == "cat")
    manual = [
        {"type": "rectangle", "frame": f, "label_id": cat, "points": [1, 2, 30, 40]} for f in (0, 5)
    ]
    body = {"version": 0, "tags": [], "shapes": manual, "tracks": []}
    r = await api.put(f"/api/tasks/{task_id}/annotations", json=body)
    assert r.status_code == 200, r.text
    return task_id, await _shapes(api, task_id), frames


async def _shapes(api: httpx.AsyncClient, task_id: int) -> list[dict[str, Any]]:
    shapes: list[dict[str, Any]] = (await api.get(f"/api/tasks/{task_id}/annotations")).json()[
        "shapes"
    ]
    return sorted(shapes, key=lambda s: s["id"])


async def _start(api: httpx.AsyncClient, task_id: int) -> str:
    body = {"function": "colour-detector", "task": task_id, "cleanup": True}
    r = await api.post("/api/lambda/requests", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


async def test_cleanup_replaces_the_annotations_when_the_run_finishes(
    deferred_api, db: Database, settings: Settings, functions
) -> None:
    api, _runs = deferred_api
    task_id, manual, frames = await _task_with_manual_shapes(api)
    request_id = await _start(api, task_id)
    settings.functions.save_every = 2
    seen: list[list[dict[str, Any]]] = []
    loop = asyncio.get_running_loop()

    def watching(run: Any, s: Settings) -> Iterator[Any]:
        for i, result in enumerate(local_results(run, s)):
            if i == 4:  # two saves done: the old annotations are still there meanwhile
                seen.append(asyncio.run_coroutine_threadsafe(_shapes(api, task_id), loop).result())
            yield result

    stats = await asyncio.to_thread(run_request, db, settings, request_id, "test", engine=watching)
    assert stats is not None and not stats.cancelled
    (during,) = seen
    assert [s["id"] for s in during[:2]] == [s["id"] for s in manual]
    assert {s["source"] for s in during[2:]} == {"auto"}
    done = (await api.get(f"/api/requests/{request_id}")).json()
    assert done["status"] == "finished", done
    after = await _shapes(api, task_id)
    assert found(after, await label_names(api, task_id)) == truth_of(frames)
    assert not {s["id"] for s in manual} & {s["id"] for s in after}


async def test_a_failed_cleanup_run_leaves_the_annotations_as_they_were(
    deferred_api, db: Database, settings: Settings, functions
) -> None:
    api, _runs = deferred_api
    task_id, manual, _frames = await _task_with_manual_shapes(api)
    request_id = await _start(api, task_id)
    settings.functions.save_every = 2

    def failing(run: Any, s: Settings) -> Iterator[Any]:
        for i, result in enumerate(local_results(run, s)):
            if i == 5:  # saved some output already
                raise RuntimeError("the model's node went away")
            yield result

    stats = await asyncio.to_thread(run_request, db, settings, request_id, "test", engine=failing)
    assert stats is not None
    done = (await api.get(f"/api/requests/{request_id}")).json()
    assert done["status"] == "failed" and "went away" in done["message"]
    assert await _shapes(api, task_id) == manual


async def test_a_cancelled_cleanup_run_leaves_the_annotations_as_they_were(
    deferred_api, db: Database, settings: Settings, functions
) -> None:
    """Cancelling a cleanup run keeps the old annotations and removes what the run wrote;
    what a user added meanwhile stays."""
    api, _runs = deferred_api
    task_id, manual, _frames = await _task_with_manual_shapes(api)
    request_id = await _start(api, task_id)
    settings.functions.save_every = 2
    loop = asyncio.get_running_loop()
    cat = manual[0]["label_id"]
    added = {"type": "rectangle", "frame": 3, "label_id": cat, "points": [5, 5, 9, 9]}

    async def user_adds() -> None:
        body = {"version": 0, "tags": [], "shapes": [added], "tracks": []}
        r = await api.patch(f"/api/tasks/{task_id}/annotations?action=create", json=body)
        assert r.status_code == 200, r.text

    def cancelling(run: Any, s: Settings) -> Iterator[Any]:
        for i, result in enumerate(local_results(run, s)):
            if i == 4:
                asyncio.run_coroutine_threadsafe(user_adds(), loop).result()
                with db.session() as session:  # what DELETE does once authorized
                    request_service.transition(
                        session, request_id, "failed", message=lambda_functions.CANCELLED
                    )
            yield result

    stats = await asyncio.to_thread(
        run_request, db, settings, request_id, "test", engine=cancelling
    )
    assert stats is not None and stats.cancelled
    after = await _shapes(api, task_id)
    assert after[:2] == manual
    assert [(s["frame"], s["points"], s["source"]) for s in after[2:]] == [
        (3, [5.0, 5.0, 9.0, 9.0], "manual")
    ]
