"""The registry of background work, without a cluster (threads) unless marked ``ray``: one
sweep covers every registered operation type; a dataset run whose process died leaves no
task blocked; a dataset run annotates only the tasks authorized when it was planned; and its
Ray job carries no secret."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from cvat_ray.actors import dataset_run
from cvat_ray.actors.functions.synthetic import COLOURS
from cvat_ray.actors.jobs import dataset_job
from cvat_ray.actors.launcher import ThreadLauncher
from cvat_ray.actors.registry import AUTOANNOTATE, default_registry
from cvat_ray.actors.sweep import sweep, thread_worker
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import BackgroundRequest, utcnow
from cvat_ray.storage.services import backups, datasets, lambda_functions
from cvat_ray.storage.services.data_upload import CREATE_TASK, upload_area
from tests.conftest import Account
from tests.factories import (
    add_frames,
    colour_spec,
    colour_task,
    crashing_spec,
    marked_scenes,
    new_task,
    scenes,
)
from tests.media_files import image_bytes

ROOT = Path(__file__).resolve().parents[2]


class Recording(ThreadLauncher):
    """The in-process launcher, except that it only records what it is given: the test
    runs it (task data is processed as usual)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        super().__init__(settings, db)
        self.runs: list[str] = []
        self.datasets: list[list[str]] = []

    def submit(self, request_id: str, operation_type: str) -> None:
        if operation_type == lambda_functions.OPERATION:
            self.runs.append(request_id)
        else:
            super().submit(request_id, operation_type)

    def submit_dataset(self, argv: list[str]) -> str | None:
        self.datasets.append(argv)
        return None


@pytest.fixture
def recording(settings: Settings, db: Database) -> Recording:
    return Recording(settings, db)


@pytest.fixture
def app(settings: Settings, db: Database, recording: Recording):  # type: ignore[no-untyped-def]
    return build_app(settings, db, recording)


@pytest.fixture
def colour(db: Database) -> str:
    spec = colour_spec()
    with db.session() as session:
        lambda_functions.register(session, spec, "test")
    return spec.id


def _row(db: Database, request_id: str) -> BackgroundRequest:
    with db.session() as session:
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        session.expunge(row)
        return row


def _age(db: Database, request_id: str, seconds: float = 3600) -> None:
    with db.session() as session:
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        row.created_date = utcnow() - timedelta(seconds=seconds)


def _started_by(db: Database, request_id: str, worker: str) -> None:
    with db.session() as session:
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        row.status, row.worker, row.started_date = "started", worker, utcnow()


def _dead_worker() -> str:
    """The ``worker`` of a process of this host that has exited."""
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return thread_worker().rpartition(":")[0] + ":" + proc.stdout.strip()


async def _create_task_request(api: httpx.AsyncClient, db: Database, settings: Settings) -> str:
    """A queued ``create:task`` row for a task with an uploaded file."""
    from cvat_ray.storage.services import requests as request_service

    task_id = await new_task(api)
    area = upload_area(settings, task_id)
    area.start()
    (area.files / "a.jpg").write_bytes(image_bytes())
    with db.session() as session:
        row = request_service.add_request(
            session,
            CREATE_TASK,
            "task",
            owner_id=None,
            organization_id=None,
            task_id=task_id,
            params={"source": "local", "data": {"image_quality": 70}},
        )
        return row.id


async def _autoannotate_request(api: httpx.AsyncClient, db: Database, settings: Settings) -> str:
    """A queued ``autoannotate:task`` row (the recording launcher keeps it)."""
    task_id = await colour_task(api, [im for im, _ in scenes(2, seed=7)])
    r = await api.post(
        "/api/lambda/requests", json={"function": "colour-detector", "task": task_id}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


async def _export_backup_request(api: httpx.AsyncClient, db: Database, settings: Settings) -> str:
    """A queued ``export:backup`` row of a task."""
    from cvat_ray.storage.services import requests as request_service

    task_id = await new_task(api)
    with db.session() as session:
        row = request_service.add_request(
            session,
            backups.EXPORT,
            "task",
            owner_id=None,
            organization_id=None,
            task_id=task_id,
            params={"filename": "t.zip", "base_url": "http://testserver"},
        )
        return row.id


async def _export_events_request(api: httpx.AsyncClient, db: Database, settings: Settings) -> str:
    """A queued ``export:events`` row (an export of everything, into the embedded store)."""
    from cvat_ray.storage.services import requests as request_service
    from cvat_ray.storage.services.events import EXPORT_EVENTS

    with db.session() as session:
        row = request_service.add_request(
            session,
            EXPORT_EVENTS,
            "events",
            owner_id=None,
            organization_id=None,
            params={
                "filter": {"from_ms": 0, "to_ms": 2**41},
                "filename": "events.csv",
                "base_url": "http://testserver",
            },
        )
        return row.id


async def _import_backup_request(api: httpx.AsyncClient, db: Database, settings: Settings) -> str:
    """A queued ``import:backup`` row with its uploaded zip in place."""
    from cvat_ray.storage.services import requests as request_service

    with db.session() as session:
        row = request_service.add_request(
            session, backups.IMPORT, "task", owner_id=None, organization_id=None
        )
        request_id = row.id
    path = backups.restores_dir(settings) / f"{request_id}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("task.json", json.dumps({"name": "t", "version": "1.0", "labels": []}))
        zf.writestr("annotations.json", "[]")
    return request_id


def _dataset_request(
    operation: str,
) -> Callable[[httpx.AsyncClient, Database, Settings], Awaitable[str]]:
    """A queued export or import row for a task with frames (an import's file in place)."""

    async def make(api: httpx.AsyncClient, db: Database, settings: Settings) -> str:
        from cvat_ray.storage.services import requests as request_service

        task_id = await new_task(api)
        add_frames(db, task_id, 2)
        importing = operation.startswith("import:")
        with db.session() as session:
            row = request_service.add_request(
                session,
                operation,
                "project" if operation == datasets.IMPORT_DATASET else "task",
                owner_id=None,
                organization_id=None,
                task_id=task_id,
                format="CVAT 1.1" if importing else "COCO 1.0",
                params={"file": "a.xml"} if importing else {"location": "local"},
            )
            if operation == datasets.IMPORT_DATASET:
                from cvat_ray.storage.models import Task

                task = session.get(Task, task_id)
                assert task is not None
                project = await_project(session, task)
                row.project_id = project
            rid = row.id
        if importing:
            folder = settings.imports_dir / rid
            folder.mkdir(parents=True)
            (folder / "a.xml").write_bytes(
                b"<annotations><image id='0' name='img_000.jpg'><tag label='cat'/></image>"
                b"</annotations>"
            )
        return rid

    return make


def await_project(session: Any, task: Any) -> int:
    """Put the task into a new project with its labels (a project import's target)."""
    from cvat_ray.storage.models import Label, Project

    project = Project(name="p", owner_id=task.owner_id)
    session.add(project)
    session.flush()
    task.project_id = project.id
    for label in session.scalars(select(Label).where(Label.task_id == task.id)):
        label.task_id, label.project_id = None, project.id
    return project.id


# How to make a queued request of each registered type: adding a type means adding it here.
NEW_REQUEST: dict[str, Callable[[httpx.AsyncClient, Database, Settings], Awaitable[str]]] = {
    CREATE_TASK: _create_task_request,
    lambda_functions.OPERATION: _autoannotate_request,
    backups.EXPORT: _export_backup_request,
    backups.IMPORT: _import_backup_request,
    **{op: _dataset_request(op) for op in (*datasets.EXPORTS, *datasets.IMPORTS)},
    "export:events": _export_events_request,
}


def test_every_registered_type_is_swept_here() -> None:
    assert set(NEW_REQUEST) == set(default_registry().types())


@pytest.mark.parametrize("operation_type", sorted(NEW_REQUEST))
async def test_the_sweep_mends_lost_requests_of_every_type(
    client_for: Any,
    alice: Account,
    db: Database,
    settings: Settings,
    colour: str,
    operation_type: str,
) -> None:
    """A queued row whose hand-over was lost is run; a started row whose runner died is
    failed with its family's reason; a young queued row and a row of a live runner are left
    alone."""
    api = client_for(alice)
    make = NEW_REQUEST[operation_type]
    lost, young, dead, live = [await make(api, db, settings) for _ in range(4)]
    _age(db, lost)
    _started_by(db, dead, _dead_worker())
    runners = ThreadLauncher(settings, db)
    _started_by(db, live, runners.worker)
    registry = default_registry()
    report = await asyncio.to_thread(sweep, db, settings, registry, runners)
    assert report.requeued == [lost] and report.failed == [dead]
    family = registry.operation(operation_type).family
    assert _row(db, dead).status == "failed" and _row(db, dead).message == family.lost_reason
    assert _row(db, young).status == "queued" and _row(db, live).status == "started"
    deadline = time.monotonic() + 60
    while _row(db, lost).status not in ("finished", "failed"):
        assert time.monotonic() < deadline, _row(db, lost).status
        await asyncio.sleep(0.1)
    assert _row(db, lost).status == "finished", _row(db, lost).message
    assert _row(db, lost).worker == runners.worker
    # held (on its way in the launcher): not handed over twice
    _age(db, young)
    runners.held = lambda: {young}  # type: ignore[method-assign]
    report = await asyncio.to_thread(sweep, db, settings, registry, runners)
    assert report.requeued == [] and _row(db, young).status == "queued"
    runners.close()


async def test_a_dataset_run_whose_process_died_blocks_nothing(
    client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    """``cvat-ray auto-annotate --local`` (the dataset run in its own process) dies mid-task:
    the sweep fails the task's row with the reason, and a new run of the task is accepted
    instead of refused with 409."""
    spec = crashing_spec("Crasher")
    with db.session() as session:
        lambda_functions.register(session, spec, "test")
    api = client_for(alice)
    task_id = await colour_task(api, marked_scenes(3, 1, seed=9))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CVAT_RAY_DATA_DIR": str(settings.data_dir),
        "CVAT_RAY_DATABASE__URL": db.url,
    }
    argv = ["--function", spec.id, "--task", str(task_id), "--engine", "local"]
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cvat_ray.actors.dataset_run", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # os._exit(1) in the model
    with db.session() as session:
        (row,) = session.scalars(
            select(BackgroundRequest).where(
                BackgroundRequest.task_id == task_id,
                BackgroundRequest.operation_type == lambda_functions.OPERATION,
            )
        )
        request_id, status = row.id, row.status
    assert status == "started"
    body = {"function": spec.id, "task": task_id}
    assert (await api.post("/api/lambda/requests", json=body)).status_code == 409
    runners = ThreadLauncher(settings, db)
    report = await asyncio.to_thread(sweep, db, settings, default_registry(), runners)
    assert report.failed == [request_id]
    assert _row(db, request_id).message == AUTOANNOTATE.lost_reason
    assert (await api.post("/api/lambda/requests", json=body)).status_code == 200
    runners.close()


async def test_a_dataset_run_annotates_only_the_tasks_authorized(
    client_for: Any,
    alice: Account,
    db: Database,
    settings: Settings,
    recording: Recording,
    colour: str,
) -> None:
    """The run is authorized task by task when it is planned; a task added to the project
    before the job runs is not annotated (nobody checked it)."""
    api = client_for(alice)
    labels = [{"name": n, "type": "rectangle"} for n in COLOURS]
    project = (await api.post("/api/projects", json={"name": "p", "labels": labels})).json()
    first = await colour_task(api, [im for im, _ in scenes(2, seed=51)], project_id=project["id"])
    r = await api.post("/api/lambda/runs", json={"function": colour, "project": project["id"]})
    assert r.status_code == 202, r.text
    assert r.json()["tasks"] == 1
    (argv,) = recording.datasets
    later = await colour_task(api, [im for im, _ in scenes(2, seed=52)], project_id=project["id"])
    args = dataset_run.build_parser().parse_args([*argv, "--engine", "local"])
    code = await asyncio.to_thread(dataset_run.execute, args, settings, db)
    assert code == 0
    assert (await api.get(f"/api/tasks/{first}/annotations")).json()["shapes"]
    assert (await api.get(f"/api/tasks/{later}/annotations")).json()["shapes"] == []
    with db.session() as session:
        annotated = set(
            session.scalars(
                select(BackgroundRequest.task_id).where(
                    BackgroundRequest.operation_type == lambda_functions.OPERATION
                )
            )
        )
    assert annotated == {first}
    # submitting the same scope again resumes the same run (its name comes from the scope)
    r = await api.post("/api/lambda/runs", json={"function": colour, "project": project["id"]})
    assert r.json()["run"] == args.run and r.json()["to_annotate"] == 1  # the later task


SECRETS = {
    "CVAT_RAY_DATABASE__URL": "postgresql+psycopg2://cvat:db-Secret-1@db:5432/cvat",
    "CVAT_RAY_CLOUD__CREDENTIALS_KEY": "cloud-Secret-2",
    "CVAT_RAY_LDAP__BIND_PASSWORD": "ldap-Secret-3",
    "CVAT_RAY_ADMIN_PASSWORD": "admin-Secret-4",
}


async def test_a_dataset_job_carries_no_secret(
    client_for: Any,
    alice: Account,
    recording: Recording,
    colour: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``POST /api/lambda/runs`` submits to the Jobs API (entrypoint, runtime env,
    metadata: all shown by the dashboard) holds none of the process's secret settings; the
    job reads them from its own environment."""
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    api = client_for(alice)
    task_id = await colour_task(api, [im for im, _ in scenes(1, seed=61)])
    r = await api.post("/api/lambda/runs", json={"function": colour, "tasks": [task_id]})
    assert r.status_code == 202, r.text
    (argv,) = recording.datasets
    job = dataset_job(argv, python=sys.executable, gcs_address="10.0.0.5:6379")
    shown = json.dumps(job)
    leaked = [key for key, value in SECRETS.items() if value in shown or "Secret-" in shown]
    assert not leaked, shown
    assert job["runtime_env"] == {"env_vars": {"CVAT_RAY_RAY__ADDRESS": "10.0.0.5:6379"}}


@pytest.mark.ray
@pytest.mark.slow
async def test_a_dataset_job_killed_mid_run(
    ray_cluster: None, client_for: Any, alice: Account, db: Database, settings: Settings
) -> None:
    """A dataset run's Ray job (its driver) is killed while a task runs: its lease actor dies
    with it, and the sweep fails the task's row instead of leaving it started."""
    import ray

    from cvat_ray.actors.runners import RayLauncher

    spec = crashing_spec("Staller")  # hangs on the marked frame: mid-run for sure
    spec = spec.model_copy(
        update={"resources": spec.resources.model_copy(update={"num_cpus": 0.1})}
    )
    with db.session() as session:
        lambda_functions.register(session, spec, "test")
    api = client_for(alice)
    task_id = await colour_task(api, marked_scenes(3, 1, seed=71))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CVAT_RAY_DATA_DIR": str(settings.data_dir),
        "CVAT_RAY_DATABASE__URL": db.url,
        "CVAT_RAY_RAY__ADDRESS": ray.get_runtime_context().gcs_address,
        "CVAT_RAY_FUNCTIONS__USE_REPLICAS": "false",
        "CVAT_RAY_FUNCTIONS__DECODE_NUM_CPUS": "0.1",
    }
    run = f"killed-{uuid.uuid4().hex[:6]}"
    argv = ["--function", spec.id, "--task", str(task_id), "--run", run]
    proc = subprocess.Popen(
        [sys.executable, "-m", "cvat_ray.actors.dataset_run", *argv],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            with db.session() as session:
                row = session.scalar(
                    select(BackgroundRequest)
                    .where(BackgroundRequest.task_id == task_id)
                    .where(BackgroundRequest.operation_type == lambda_functions.OPERATION)
                )
                started = (
                    (row.id, row.worker) if row is not None and row.status == "started" else None
                )
            if started:
                break
            assert proc.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.2)
        request_id, worker = started
        assert worker is not None and worker.startswith(f"dataset-run-{run}-")
        await asyncio.sleep(2)  # the pipeline is on its way to the marked frame
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    runners = RayLauncher(settings, db, prefix=f"test-{uuid.uuid4().hex[:8]}-")
    try:
        deadline = time.monotonic() + 120
        while _row(db, request_id).status == "started":  # until Ray has ended the lease
            assert time.monotonic() < deadline
            await asyncio.to_thread(sweep, db, settings, default_registry(), runners)
            await asyncio.sleep(1)
    finally:
        runners.close()
    assert _row(db, request_id).status == "failed"
    assert _row(db, request_id).message == AUTOANNOTATE.lost_reason


def test_default_actors_leave_room_for_a_run_on_two_cpus() -> None:
    """`cvat-ray up` on a 2-CPU head (the default local cluster here) must start every
    runner and service and still schedule a whole-task run: one function replica and its two
    decode tasks. Every new family or service takes its CPUs from this budget (adding four of
    them at 0.1-0.5 each once made `up` wait forever for its actors)."""
    settings = Settings()
    registry = default_registry()
    reserved = settings.api.num_cpus + settings.functions.driver_num_cpus
    reserved += sum(f.count(settings) * f.num_cpus(settings) for f in registry.families())
    reserved += sum(s.num_cpus(settings) for s in registry.services())
    run = 0.25 + 2 * settings.functions.decode_num_cpus  # a built-in replica and its decoding
    assert reserved + run <= 2.0, (reserved, run)
