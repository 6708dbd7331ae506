"""``cleanup`` of a whole-task auto-annotation run: the old annotations are replaced only
when the run finishes; a failed or cancelled run leaves the jobs as they were."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx

from cvat_ray.actors.autoannotate import local_results, run_request
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.services import lambda_functions
from cvat_ray.storage.services import requests as request_service
from tests.serve_apps.test_lambda import (  # noqa: F401  (fixtures)
    colour_task,
    deferred_api,
    found,
    functions,
    label_names,
    scenes,
    truth_of,
)

FRAMES = 8


async def _task_with_manual_shapes(api: httpx.AsyncClient) -> tuple[int, list[Any], Any]:
    frames = scenes(FRAMES, seed=31)
    task_id = await colour_task(api, [im for im, _ in frames])
    names = await label_names(api, task_id)
    cat = next(i for i, n in names.items() if n == "cat")
    manual = [
        {"type": "rectangle", "frame": f, "label_id": cat, "points": [1, 2, 30, 40]}
        for f in (0, 5)
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

    stats = await asyncio.to_thread(
        run_request, db, settings, request_id, "test", engine=watching
    )
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
