"""The ``cvat-ray`` CLI: migrate, createsuperuser, and the real ``up`` on a local Ray head."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from cvat_sdk import make_client
from PIL import Image
from sqlalchemy import select

from cvat_ray.cli import main
from cvat_ray.cluster.runtime import free_port
from cvat_ray.storage.db import Database
from cvat_ray.storage.migrate import head_revision
from cvat_ray.storage.models import User

CLI = str(Path(sys.executable).parent / "cvat-ray")
SECRET = "bind-Secret-never-shown"


def test_help_everywhere() -> None:
    for args in ([], ["up"], ["migrate"], ["createsuperuser"], ["status"], ["serve-config"]):
        out = subprocess.run([CLI, *args, "--help"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "usage: cvat-ray" in out.stdout


def test_migrate_and_createsuperuser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.delenv("CVAT_RAY_DATA_DIR", raising=False)
    data = tmp_path / "data"
    assert main(["migrate", "--data-dir", str(data)]) == 0
    assert main(["migrate", "--data-dir", str(data)]) == 0  # idempotent
    assert f"revision {head_revision()}" in capsys.readouterr().out
    args = [
        "createsuperuser",
        "--data-dir",
        str(data),
        "--username",
        "boss",
        "--password",
        "Very-secret-1",
        "--no-input",
    ]
    assert main(args) == 0
    assert main(args) == 1  # taken
    assert "already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "createsuperuser",
                "--data-dir",
                str(data),
                "--username",
                "x",
                "--password",
                "short",
                "--no-input",
            ]
        )
        == 1
    )
    db = Database(f"sqlite:///{data / 'cvat.db'}")
    with db.session() as session:
        boss = session.scalar(select(User).where(User.username == "boss"))
        assert boss is not None and boss.is_superuser
    db.dispose()


def test_status_when_not_running(tmp_path: Path) -> None:
    assert main(["status", "--data-dir", str(tmp_path)]) == 3


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.ray
@pytest.mark.slow
def test_up_serves_the_sdk_and_stops_cleanly(tmp_path: Path) -> None:
    port, dashboard = free_port(), free_port()
    temp = Path("/tmp") / f"cvr-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "CVAT_RAY_RAY__DASHBOARD_PORT": str(dashboard),
        "CVAT_RAY_RAY__TEMP_DIR": str(temp),
        "CVAT_RAY_RAY__NUM_CPUS": "2",
        "HOME": str(tmp_path),
        # a secret setting (LDAP is off): no Ray job may show it
        "CVAT_RAY_LDAP__BIND_PASSWORD": SECRET,
    }
    env.pop("CVAT_RAY_ADMIN_PASSWORD", None)
    env.pop("CVAT_RAY_DATABASE__URL", None)
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [CLI, "up", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    state_file = tmp_path / "data" / "server.json"
    try:
        deadline = time.monotonic() + 240
        # The CLI sees the server as soon as its API answers (the state file is there, so
        # e.g. `functions deploy` deploys instead of only registering).
        while not _answers(f"http://127.0.0.1:{port}/api/server/about"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert state_file.exists(), log.read_text()
        assert json.loads(state_file.read_text())["pid"] == proc.pid
        while "cvat-ray is up" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        text = log.read_text()
        password = re.search(r"Log in as 'admin' with password '([^']+)'", text)
        assert password, text
        assert f"http://127.0.0.1:{dashboard}" in text

        # Through the Serve proxy every response carries one X-Request-Id, the client's own
        # when it sent one.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/server/about", headers={"X-Request-Id": "abc-42"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.headers.get_all("X-Request-Id") == ["abc-42"]
            assert response.headers["Server-Timing"].startswith("app;dur=")
        # CVAT's UI: the health check (the Ray cluster is checked inside a Serve replica) and
        # HEAD, over real HTTP through the Serve proxy.
        health = f"http://127.0.0.1:{port}/api/server/health/?format=json"
        with urllib.request.urlopen(health, timeout=30) as response:
            assert json.load(response) == {"DatabaseBackend": "working", "RayCluster": "working"}
        head = urllib.request.Request(f"http://127.0.0.1:{port}/static/logo.svg", method="HEAD")
        with urllib.request.urlopen(head, timeout=30) as response:
            assert response.status == 200 and response.read() == b""
            assert response.headers["Content-Type"] == "image/svg+xml"

        status = subprocess.run(
            [CLI, "status", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "cvat-ray is running" in status.stdout
        assert "RUNNING" in status.stdout and "1 running replica" in status.stdout

        with make_client(
            f"http://127.0.0.1:{port}", credentials=("admin", password.group(1))
        ) as client:
            project = client.projects.create({"name": "via serve", "labels": [{"name": "cat"}]})
            task = client.tasks.create({"name": "t", "labels": [{"name": "dog"}]})
            assert {t.id for t in client.tasks.list()} == {task.id}
            assert client.projects.retrieve(project.id).name == "via serve"
            # task data goes through the Ray media worker actors
            images = tmp_path / "imgs"
            images.mkdir()
            for i in range(3):
                Image.new("RGB", (40, 30), (i * 80, 0, 0)).save(images / f"{i}.png")
            client.config.status_check_period = 0.2
            with_data = client.tasks.create_from_data(
                spec={"name": "with data", "labels": [{"name": "cat"}]},
                resources=sorted(images.iterdir()),
            )
            assert with_data.size == 3
            frame = with_data.get_frame(2, quality="original").read()
            assert frame == (images / "2.png").read_bytes()
            _auto_annotate(
                f"http://127.0.0.1:{port}",
                ("admin", password.group(1)),
                tmp_path,
                f"http://127.0.0.1:{dashboard}",
            )
            functions = subprocess.run(
                [CLI, "functions", "list", "--data-dir", str(tmp_path / "data")],
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            assert functions.returncode == 0, functions.stdout + functions.stderr
            (row,) = [
                ln for ln in functions.stdout.splitlines() if ln.startswith("colour-detector")
            ]
            assert row.split()[3] == "RUNNING", functions.stdout  # not ApplicationStatus.RUNNING
            with_data.remove()
            task.remove()
            project.remove()
            assert client.tasks.list() == []
        tree = _descendants(proc.pid)
        assert tree, "up should have started Ray processes"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log.read_text()[-3000:]
    assert "Stopped." in log.read_text()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.5)
    leftovers = [p for p in tree if _alive(p)]
    assert not leftovers, f"Ray processes left behind: {leftovers}"
    assert not state_file.exists()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _auto_annotate(base: str, auth: tuple[str, str], tmp_path: Path, dashboard: str) -> None:
    """The built-in functions are deployed by ``up``: an online call wakes a replica from
    zero, and a whole-task request runs in its own actor as a Ray Data pipeline."""
    import httpx

    from cvat_ray.actors.functions.synthetic import COLOURS, make_scene

    with httpx.Client(base_url=base, auth=auth, timeout=120) as api:
        functions = {f["id"] for f in api.get("/api/lambda/functions").json()}
        assert {"colour-detector", "grabcut", "mil-tracker"} <= functions
        labels = [{"name": n, "type": "rectangle"} for n in COLOURS]
        task = api.post("/api/tasks", json={"name": "auto", "labels": labels}).json()
        scenes = [make_scene(160, 120, 2, seed=i, sizes=(20, 40)) for i in range(4)]
        folder = tmp_path / "scenes"
        folder.mkdir()
        files = {}
        for i, (image, _) in enumerate(scenes):
            Image.fromarray(image).save(folder / f"{i}.png")
            files[f"client_files[{i}]"] = (f"{i}.png", (folder / f"{i}.png").read_bytes())
        rq = api.post(f"/api/tasks/{task['id']}/data", files=files, data={"image_quality": "70"})
        assert rq.status_code == 202, rq.text
        _wait(lambda: api.get(f"/api/requests/{rq.json()['rq_id']}").json()["status"] == "finished")
        names = {
            lb["id"]: lb["name"]
            for lb in api.get(f"/api/labels?task_id={task['id']}").json()["results"]
        }
        online = api.post(
            "/api/lambda/functions/colour-detector", json={"task": task["id"], "frame": 1}
        )
        assert online.status_code == 200, online.text
        got = {
            (names[s["label_id"]], tuple(round(p) for p in s["points"]))
            for s in online.json()["shapes"]
        }
        assert got == {(n, tuple(b)) for n, b in scenes[1][1]}
        run = api.post(
            "/api/lambda/requests", json={"function": "colour-detector", "task": task["id"]}
        )
        assert run.status_code == 200, run.text
        _wait(
            lambda: (
                api.get(f"/api/lambda/requests/{run.json()['id']}").json()["status"]
                in ("finished", "failed")
            )
        )
        done = api.get(f"/api/lambda/requests/{run.json()['id']}").json()
        assert done["status"] == "finished", done
        shapes = api.get(f"/api/tasks/{task['id']}/annotations").json()["shapes"]
        assert len(shapes) == sum(len(t) for _, t in scenes)
        # A dataset run: a Ray job submitted by the API replica through the Jobs API.
        body = {"function": "colour-detector", "tasks": [task["id"]], "cleanup": True}
        submitted = api.post("/api/lambda/runs", json=body)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        assert job_id, submitted.json()
        token = (tmp_path / "data" / "ray" / "auth_token").read_text().strip()
        jobs = httpx.Client(base_url=dashboard, headers={"Authorization": f"Bearer {token}"})

        def job_status() -> str:
            return str(jobs.get(f"/api/jobs/{job_id}").json()["status"])

        _wait(lambda: job_status() in ("SUCCEEDED", "FAILED", "STOPPED"))
        logs = jobs.get(f"/api/jobs/{job_id}/logs").json()["logs"]
        assert job_status() == "SUCCEEDED", logs[-3000:]
        assert '"annotated": 1' in logs, logs[-3000:]
        # the job read its settings from its own environment: its entrypoint and runtime
        # env, which the Jobs API shows, hold no secret
        job = jobs.get(f"/api/jobs/{job_id}").json()
        assert SECRET not in json.dumps(job), job
        assert set(job["runtime_env"].get("env_vars", {})) <= {"CVAT_RAY_RAY__ADDRESS"}, job
        again = api.get(f"/api/tasks/{task['id']}/annotations").json()["shapes"]
        assert len(again) == len(shapes)  # cleanup: replaced, not doubled
        api.delete(f"/api/tasks/{task['id']}")


def _wait(ready: Any, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
