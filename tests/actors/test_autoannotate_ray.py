"""The Ray paths of auto-annotation: whole-task runs as Ray Data pipelines (an actor pool of
their own, or the function's Serve replicas), runs on the registry's long-lived driver actor
(and what happens when it dies mid-run), functions as Serve deployments called online, and a
dataset run resumed after an interruption."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from cvat_ray.actors import dataset_run
from cvat_ray.actors.autoannotate import ray_results, run_request
from cvat_ray.actors.registry import AUTOANNOTATE
from cvat_ray.actors.runners import RayLauncher
from cvat_ray.cluster import runtime
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.serve_apps.deploy import delete_function, deploy_function
from cvat_ray.serve_apps.functions import FunctionUnavailable, ServeRunner
from cvat_ray.storage.db import Database
from cvat_ray.storage.functions.spec import FunctionSpec
from cvat_ray.storage.services import lambda_functions
from tests.conftest import Account
from tests.factories import (
    Deferred,
    colour_spec,
    colour_task,
    crashing_spec,
    found,
    label_names,
    marked_scenes,
    poll,
    scenes,
    truth_of,
)

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def registered(db: Database) -> FunctionSpec:
    spec = colour_spec()
    with db.session() as session:
        lambda_functions.register(session, spec, "test")
    return spec


@pytest.fixture
def ray_settings(ray_cluster: None, settings: Settings) -> Settings:
    settings.functions.decode_num_cpus = 0.1
    settings.functions.driver_num_cpus = 0.05
    settings.functions.save_every = 4
    settings.media.worker_num_cpus = 0.1
    return settings


@pytest.fixture
async def deferred(ray_settings: Settings, db: Database, alice: Account) -> Any:
    runs = Deferred(ray_settings, db)
    app = build_app(ray_settings, db, runs)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        headers={"Authorization": f"Token {alice.token}"},
    ) as client:
        yield client, runs


async def test_ray_data_pipeline_with_its_own_actor_pool(
    deferred: Any, db: Database, ray_settings: Settings, registered: FunctionSpec
) -> None:
    api, _runs = deferred
    frames = scenes(10, seed=5)
    task_id = await colour_task(api, [im for im, _ in frames], segment_size=4)
    call = (
        await api.post("/api/lambda/requests", json={"function": registered.id, "task": task_id})
    ).json()
    ray_settings.functions.use_replicas = False
    stats = await asyncio.to_thread(
        run_request, db, ray_settings, call["id"], "test", engine=ray_results
    )
    assert stats is not None and not stats.failed and stats.done == 10
    done = (await api.get(f"/api/lambda/requests/{call['id']}")).json()
    assert done["status"] == "finished", done
    shapes = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
    assert found(shapes, await label_names(api, task_id)) == truth_of(frames)


@pytest.fixture
def serve_up(ray_cluster: None, registered: FunctionSpec) -> Iterator[FunctionSpec]:
    from ray import serve

    serve.start(http_options={"host": "127.0.0.1", "port": runtime.free_port()})
    deploy_function(registered, wait=True)
    try:
        yield registered
    finally:
        delete_function(registered.id)
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]


async def test_function_on_serve_online_and_whole_task(
    deferred: Any, db: Database, ray_settings: Settings, serve_up: FunctionSpec
) -> None:
    runner = ServeRunner(ray_settings)
    frames = scenes(6, seed=9)
    image, truth = frames[0]
    output = await runner.call(serve_up, "detect", image, 0.5, False)
    got = {(o["label"], tuple(round(p) for p in o["points"])) for o in output}
    assert got == {(name, tuple(box)) for name, box in truth}
    # A call the model cannot handle fails readably; the replica keeps serving.
    with pytest.raises(FunctionUnavailable, match="The function 'colour-detector' failed"):
        await runner.call(serve_up, "detect", np.zeros((4,), dtype=np.uint8), 0.5, False)
    assert await runner.call(serve_up, "detect", image, 0.5, False) == output
    # Whole task through the replicas (use_replicas is on by default).
    api, _ = deferred
    task_id = await colour_task(api, [im for im, _ in frames])
    call = (
        await api.post("/api/lambda/requests", json={"function": serve_up.id, "task": task_id})
    ).json()
    stats = await asyncio.to_thread(
        run_request, db, ray_settings, call["id"], "test", engine=ray_results
    )
    assert stats is not None and stats.done == 6 and not stats.failed
    shapes = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
    assert found(shapes, await label_names(api, task_id)) == truth_of(frames)
    # A stored file that no longer decodes: the replica's batch fails, the frame is retried
    # alone and recorded; the other frames of its batch are annotated.
    bad_frames = scenes(5, seed=23)
    bad_task = await colour_task(api, [im for im, _ in bad_frames])
    for path in sorted(ray_settings.media_dir.rglob("scene_003.png")):
        path.write_bytes(b"not an image any more")
    call = (
        await api.post("/api/lambda/requests", json={"function": serve_up.id, "task": bad_task})
    ).json()
    stats = await asyncio.to_thread(
        run_request, db, ray_settings, call["id"], "test", engine=ray_results
    )
    assert stats is not None and stats.done == 5 and [f for f, _ in stats.failed] == [3]
    shapes = (await api.get(f"/api/tasks/{bad_task}/annotations")).json()["shapes"]
    want = {(i, n, tuple(b)) for i, (_, t) in enumerate(bad_frames) if i != 3 for n, b in t}
    assert found(shapes, await label_names(api, bad_task)) == want


def _test_launcher(settings: Settings, db: Database, **env: str) -> RayLauncher:
    """Runners of this test only (own names), on this test's database and data dir."""
    env_vars = {
        "CVAT_RAY_DATA_DIR": str(settings.data_dir),
        "CVAT_RAY_DATABASE__URL": db.url,
        "CVAT_RAY_FUNCTIONS__DECODE_NUM_CPUS": "0.1",
        "CVAT_RAY_FUNCTIONS__DRIVER_NUM_CPUS": "0.05",
        "CVAT_RAY_MEDIA__WORKER_NUM_CPUS": "0.1",
        **env,
    }
    return RayLauncher(
        settings,
        db,
        prefix=f"test-{uuid.uuid4().hex[:8]}-",
        runtime_env={"env_vars": env_vars},
    )


async def test_a_run_on_the_run_driver(
    ray_settings: Settings, db: Database, alice: Account, registered: FunctionSpec
) -> None:
    launcher = _test_launcher(ray_settings, db, CVAT_RAY_FUNCTIONS__USE_REPLICAS="false")
    try:
        app = build_app(ray_settings, db, launcher)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Token {alice.token}"},
        ) as api:
            frames = scenes(4, seed=13)
            task_id = await colour_task(api, [im for im, _ in frames])
            r = await api.post(
                "/api/lambda/requests", json={"function": registered.id, "task": task_id}
            )
            assert r.status_code == 200, r.text
            done = await poll(api, r.json()["id"], timeout=180)
            assert done["status"] == "finished", done
            shapes = (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
            assert found(shapes, await label_names(api, task_id)) == truth_of(frames)
            run = (await api.get(f"/api/requests/{r.json()['id']}")).json()
            assert run["owner"]["username"] == alice.username
        with db.session() as session:
            from cvat_ray.storage.models import BackgroundRequest

            row = session.get(BackgroundRequest, r.json()["id"])
            assert row is not None and row.worker == AUTOANNOTATE.actor_name(0, launcher.prefix)
    finally:
        launcher.kill()
        launcher.close()


async def test_the_driver_killed_mid_run(
    ray_settings: Settings, db: Database, alice: Account
) -> None:
    """The driver's process dies in the middle of a run (the model takes the process down on
    frame 2): the run ends failed with the reason, not queued or started forever, and a new
    run of the same task is accepted (no 409)."""
    spec = crashing_spec("Crasher")
    with db.session() as session:
        lambda_functions.register(session, spec, "test")
    # the local engine: the model runs in the driver's own process
    launcher = _test_launcher(ray_settings, db, CVAT_RAY_FUNCTIONS__ENGINE="local")
    try:
        app = build_app(ray_settings, db, launcher)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers={"Authorization": f"Token {alice.token}"},
        ) as api:
            task_id = await colour_task(api, marked_scenes(4, 2, seed=17))
            body = {"function": spec.id, "task": task_id}
            r = await api.post("/api/lambda/requests", json=body)
            assert r.status_code == 200, r.text
            done = await poll(api, r.json()["id"], timeout=180)
            assert done["status"] == "failed", done
            assert done["exc_info"].startswith("The auto-annotation run's process died"), done
            again = await api.post("/api/lambda/requests", json=body)
            assert again.status_code == 200, again.text
            await api.delete(f"/api/lambda/requests/{again.json()['id']}")
    finally:
        launcher.kill()
        launcher.close()


async def test_dataset_run_resumes(
    deferred: Any,
    db: Database,
    ray_settings: Settings,
    registered: FunctionSpec,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api, _ = deferred
    project = (
        await api.post(
            "/api/projects",
            json={
                "name": "p",
                "labels": [
                    {"name": n, "type": "rectangle"} for n in ("red", "green", "blue", "yellow")
                ],
            },
        )
    ).json()
    task_ids = []
    for seed in (1, 2, 3):
        frames = scenes(3, seed=30 + seed)
        task_ids.append(await colour_task(api, [im for im, _ in frames], project_id=project["id"]))
    monkeypatch.setenv("CVAT_RAY_DATA_DIR", str(ray_settings.data_dir))
    monkeypatch.setenv("CVAT_RAY_DATABASE__URL", db.url)
    monkeypatch.setenv("CVAT_RAY_FUNCTIONS__USE_REPLICAS", "false")
    monkeypatch.setenv("CVAT_RAY_FUNCTIONS__DECODE_NUM_CPUS", "0.1")
    from cvat_ray.cluster.settings import reset_settings_cache

    reset_settings_cache()
    run = f"r-{uuid.uuid4().hex[:6]}"
    # An interrupted first attempt: only the first task got done.
    code = await asyncio.to_thread(
        dataset_run.main, ["--function", registered.id, "--task", str(task_ids[0]), "--run", run]
    )
    assert code == 0
    first = (await api.get(f"/api/tasks/{task_ids[0]}/annotations")).json()["shapes"]
    assert first
    capsys.readouterr()
    code = await asyncio.to_thread(
        dataset_run.main,
        ["--function", registered.id, "--project", str(project["id"]), "--run", run],
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"task {task_ids[0]} (" in out and "skipped, already annotated by this run" in out
    summary = [line for line in out.splitlines() if line.startswith("{")][-1]
    assert '"annotated": 2' in summary and '"skipped": 1' in summary
    again = (await api.get(f"/api/tasks/{task_ids[0]}/annotations")).json()["shapes"]
    assert len(again) == len(first)  # not annotated twice
    for task_id in task_ids[1:]:
        assert (await api.get(f"/api/tasks/{task_id}/annotations")).json()["shapes"]
    reset_settings_cache()


async def test_a_crashing_replica_fails_only_its_call(
    ray_cluster: None, ray_settings: Settings
) -> None:
    from ray import serve

    spec = colour_spec().model_copy(
        update={
            "id": "crasher",
            "runtime": colour_spec().runtime.model_copy(
                update={"class_": "tests.actors.crashing:Crasher", "options": {}}
            ),
            "labels": colour_spec().labels[:1],
        }
    )
    serve.start(http_options={"host": "127.0.0.1", "port": runtime.free_port()})
    deploy_function(spec, wait=True)
    runner = ServeRunner(ray_settings)
    try:
        fine = np.zeros((8, 8, 3), dtype=np.uint8)
        assert await runner.call(spec, "detect", fine, 0.5, False) == []
        deadly = fine.copy()
        deadly[0, 0, 0] = 1
        with pytest.raises(FunctionUnavailable, match=r"The function 'crasher' failed: .+") as err:
            await runner.call(spec, "detect", deadly, 0.5, False)
        assert "\n" not in str(err.value.detail)
        # Serve replaces the replica; calls go on.
        deadline = asyncio.get_running_loop().time() + 90
        while True:
            try:
                assert await runner.call(spec, "detect", fine, 0.5, False) == []
                break
            except FunctionUnavailable:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(1)
    finally:
        delete_function(spec.id)
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]


async def test_a_restarted_driver_fails_the_runs_it_left(
    deferred: Any, ray_settings: Settings, db: Database, registered: FunctionSpec
) -> None:
    """A run the driver's name still holds ``started`` when the driver (re)starts was left
    half done by a process that died: the new process fails it, with a readable reason."""
    import ray

    from cvat_ray.storage.services import requests as request_service

    api, _ = deferred
    task_id = await colour_task(api, [im for im, _ in scenes(1, seed=3)])
    call = (
        await api.post("/api/lambda/requests", json={"function": registered.id, "task": task_id})
    ).json()
    launcher = _test_launcher(ray_settings, db)
    name = AUTOANNOTATE.actor_name(0, launcher.prefix)
    with db.session() as session:
        assert request_service.claim(session, call["id"], name)
    try:
        await asyncio.to_thread(ray.get, launcher.handle(name).ping.remote(), timeout=180)
    finally:
        launcher.kill()
        launcher.close()
    state = (await api.get(f"/api/lambda/requests/{call['id']}")).json()
    assert state["status"] == "failed"
    assert AUTOANNOTATE.lost_reason in state["exc_info"]
