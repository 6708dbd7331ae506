"""What the chart runs, run on this machine: a Ray cluster of a head and two worker nodes
started the way KubeRay starts its pods, serving the chart's own ``serveConfigV2``.

From the chart rendered for a GPU-worker setup (``workers.gpu.enabled``), with the database,
Redis and data dir of this machine as values:

- the settings ConfigMap and Secret become every node's environment (``envFrom``), plus what
  the operator injects (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN`` from the token Secret);
- the migration Job's command runs first (``cvat-ray migrate --ensure-admin``);
- ``ray start`` for the head with its ``rayStartParams`` (``num-cpus: 0``: nothing runs on the
  head) and for one node of each worker group: ``cpu-workers``, and ``gpu-workers`` with a
  custom resource standing in for ``nvidia.com/gpu`` (no GPU here);
- the ``serveConfigV2`` goes to the dashboard's Serve REST API with the token, as the operator
  sends it (``PUT /api/serve/applications/``);
- cvat-sdk logs in, creates a task with data (a background request on Ray), calls a function
  online and runs it over the whole task;
- the dataset run's RayJob entrypoint (built by ``auto-annotate --kubernetes``'s code from the
  chart's template) goes through the Jobs REST API, as the operator's HTTPMode submits it;
- the worker node running that run is killed mid-run: the API keeps answering, the Ray job
  fails, the sweep fails its unfinished request with a readable reason, and the same run,
  submitted again once the node is back, resumes (the tasks done before are skipped).

What differs from Kubernetes, because the three nodes share one machine: each node gets its own
ports and the cluster one temp dir; Serve's proxy runs on the head only (three proxies cannot
bind one port here; a pod each can); and the run's driver is pinned to the killed node by the
stand-in resource. ``CVAT_RAY_RAY__ADDRESS`` names the cluster in each node's environment,
because other Ray clusters run on this machine (one per pod network on Kubernetes).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from cvat_sdk import Client, Config, models

from cvat_ray.actors import kuberay
from cvat_ray.actors.functions.synthetic import make_scene
from cvat_ray.cluster.runtime import free_port
from cvat_ray.storage.services.lambda_runs import dataset_argv
from tests.conftest import drop_pg_database, new_pg_database
from tests.kuberay.manifests import ROOT, objects, render, serve_config_of, validate_serve_config

pytestmark = [pytest.mark.ray, pytest.mark.slow]

T = TypeVar("T")
BIN = Path(sys.executable).parent
STAND_IN = "accelerator_stand_in"  # nvidia.com/gpu on Kubernetes
PASSWORD = "Kube-Ray-Admin-1"
COLOURS = ["red", "green", "blue", "yellow"]
FRAMES = 24
DATASET_TASKS = 4


def wait_for(check: Callable[[], T | None], timeout: float, what: str, step: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


@dataclass
class Node:
    """One ``ray start --block`` (a pod): ended by killing its whole process tree."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tree(self) -> list[int]:
        """The node's processes: ``ray start`` and everything under it (raylet, agents,
        workers), read from /proc."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(stat.parent.name))
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    def _signal(self, pids: list[int], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """What a deleted pod does to Ray: every process of the node gone at once."""
        self._signal(self.tree(), signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        pids = self.tree()
        self._signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.2)
        self._signal(pids, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@dataclass
class Cluster:
    temp: Path
    logs: Path
    env: dict[str, str]
    gcs: str
    dashboard: str
    token: str
    nodes: dict[str, Node] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, name: str, args: list[str]) -> Node:
        ports = [
            "--node-manager-port",
            str(free_port()),
            "--object-manager-port",
            str(free_port()),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--dashboard-agent-grpc-port",
            str(free_port()),
            "--runtime-env-agent-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
        ]
        log = self.logs / f"{name}-{len(self.nodes)}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(BIN / "ray"), "start", "--block", "--disable-usage-stats", *ports, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        node = Node(name, proc, log)
        self.nodes[name] = node
        return node

    def alive_node_ids(self) -> set[str]:
        reply = httpx.get(f"{self.dashboard}/nodes?view=summary", headers=self.headers, timeout=10)
        reply.raise_for_status()
        summary = reply.json()["data"]["summary"]
        return {n["raylet"]["nodeId"] for n in summary if n["raylet"]["state"] == "ALIVE"}

    def join_worker(self, group: str, start_params: dict[str, str], extra: list[str]) -> Node:
        """Start a worker node and wait until a node that was not alive before is alive.

        Node ids, not a count: a killed node stays ALIVE in the GCS until its health checks
        run out, so a count taken then can go down and up again and never grow."""
        before = self.alive_node_ids()
        args = [f"--address={self.gcs}", *_start_flags(start_params), *extra]
        for attempt in range(2):
            node = self.start(group, args)

            def joined(node: Node = node) -> str | None:
                if self.alive_node_ids() - before:
                    return "joined"
                if node.proc.poll() is not None:
                    return "exited"  # `ray start` gave up (a port taken meanwhile): start again
                return None

            if wait_for(joined, 120, f"{group} to join\n{node.tail()}") == "joined":
                return node
            assert attempt == 0, f"{group} exited twice before joining\n{node.tail()}"
        raise AssertionError("unreachable")


def _start_flags(params: dict[str, str]) -> list[str]:
    """rayStartParams as ``ray start`` flags (KubeRay turns each key into ``--key=value``)."""
    return [f"--{key}={value}" for key, value in params.items()]


def _values(data_dir: Path, database_url: str, prefix: str) -> dict[str, Any]:
    return {
        "dataDir": str(data_dir),
        "admin": {"password": PASSWORD},
        "database": {"url": database_url},
        "redis": {"url": "redis://127.0.0.1:6379/0"},
        "workers": {"gpu": {"enabled": True}},
        "settings": {
            "CVAT_RAY_CACHE__REDIS_PREFIX": prefix,
            "CVAT_RAY_MEDIA__WORKERS": "1",
            "CVAT_RAY_MEDIA__WORKER_NUM_CPUS": "0.25",
            "CVAT_RAY_BACKGROUND__SWEEP_INTERVAL_S": "2",
            "CVAT_RAY_LOG_LEVEL": "WARNING",
        },
        "rayEnv": {"RAY_num_workers_soft_limit": "4"},
    }


def _pod_env(objs: list[dict[str, Any]], token: str) -> dict[str, str]:
    """A Ray pod's environment: the settings ConfigMap and Secret (envFrom), what KubeRay adds
    for token auth, and this checkout on the path (the image has cvat-ray installed)."""
    (config,) = [
        o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-settings")
    ]
    (secret,) = [
        o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-settings")
    ]
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(config["data"])
    env.update(secret["stringData"])
    env |= {
        # the image's Python (with cvat-ray) is the `python` of the RayJob's entrypoint
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "PYTHONPATH": str(ROOT),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    return env


@pytest.fixture
def database(pg_server_url: str) -> Iterator[str]:
    url = new_pg_database(pg_server_url)
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def rendered(tmp_path: Path, database: str) -> list[dict[str, Any]]:
    prefix = f"cvat-ray-kuberay-{uuid.uuid4().hex[:6]}:"
    return objects(render(_values(tmp_path / "data", database, prefix)))


@pytest.fixture
def cluster(rendered: list[dict[str, Any]], tmp_path: Path) -> Iterator[Cluster]:
    (service,) = [o for o in rendered if o["kind"] == "RayService"]
    (token_secret,) = [o for o in rendered if o["metadata"]["name"].endswith("-ray-token")]
    import base64

    token = base64.b64decode(token_secret["data"]["auth_token"]).decode()
    env = _pod_env(rendered, token)
    Path(env["CVAT_RAY_DATA_DIR"]).mkdir(parents=True)
    # the migration Job (a pre-install hook) before any Ray pod
    (job,) = [
        o for o in rendered if o["kind"] == "Job" and o["metadata"]["name"].endswith("-migrate")
    ]
    pod = job["spec"]["template"]["spec"]
    command = pod["containers"][0]["command"]
    assert command[:3] == ["cvat-ray", "migrate", "--functions-from"]
    assert "--ensure-admin" in command
    # its ConfigMap volumes, as the kubelet mounts them
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    configmaps = {o["metadata"]["name"]: o for o in rendered if o["kind"] == "ConfigMap"}
    for volume in pod["volumes"]:
        if "configMap" in volume:
            folder = Path(env["CVAT_RAY_DATA_DIR"]).parent / volume["name"]
            folder.mkdir()
            for key, text in configmaps[volume["configMap"]["name"]]["data"].items():
                (folder / key).write_text(text)
            command = [c.replace(mounts[volume["name"]], str(folder)) for c in command]
    done = subprocess.run(
        [str(BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Functions of the Serve config registered: colour-detector" in done.stdout

    temp = Path("/tmp") / f"cvr-k-{uuid.uuid4().hex[:6]}"
    gcs_port, dashboard_port = free_port(), free_port()
    gcs = f"127.0.0.1:{gcs_port}"
    env["CVAT_RAY_RAY__ADDRESS"] = gcs
    env["RAY_ADDRESS"] = gcs  # the `ray start` of the workers and the drivers of this cluster
    state = Cluster(temp, tmp_path, env, gcs, f"http://127.0.0.1:{dashboard_port}", token)
    head_params = dict(service["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParams"])
    assert head_params["num-cpus"] == "0"
    head_params["dashboard-host"] = "127.0.0.1"  # loopback only on a shared machine
    try:
        head = state.start(
            "head",
            [
                "--head",
                f"--port={gcs_port}",
                f"--dashboard-port={dashboard_port}",
                f"--ray-client-server-port={free_port()}",
                f"--temp-dir={temp}",
                "--object-store-memory=150000000",
                *_start_flags(head_params),
            ],
        )

        def head_up() -> bool:
            try:
                return (
                    httpx.get(
                        f"{state.dashboard}/api/version", headers=state.headers, timeout=5
                    ).status_code
                    == 200
                )
            except httpx.HTTPError:
                return False

        wait_for(head_up, 120, f"the head's dashboard\n{head.tail()}")
        # without the token the dashboard refuses (token auth, as authOptions asks)
        assert httpx.get(f"{state.dashboard}/api/version", timeout=5).status_code == 401
        yield state
    finally:
        for name in [n for n in state.nodes if n != "head"] + ["head"]:
            if name in state.nodes:
                state.nodes[name].stop()
        shutil.rmtree(temp, ignore_errors=True)


def _scene_files(
    folder: Path, count: int, seed: int
) -> tuple[list[Path], dict[int, set[tuple[str, tuple[int, ...]]]]]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    files, truth = [], {}
    for i in range(count):
        image, objects_ = make_scene(160, 120, 2, seed=seed * 1000 + i, sizes=(20, 40))
        path = folder / f"{i:03d}.png"
        Image.fromarray(image).save(path)
        files.append(path)
        truth[i] = {(label, tuple(box)) for label, box in objects_}
    return files, truth


def _found(client: Client, task_id: int) -> dict[int, set[tuple[str, tuple[int, ...]]]]:
    task = client.tasks.retrieve(task_id)
    names = {label.id: label.name for label in task.get_labels()}
    found: dict[int, set[tuple[str, tuple[int, ...]]]] = {}
    for shape in task.get_annotations().shapes:
        box = tuple(round(p) for p in shape.points)
        found.setdefault(shape.frame, set()).add((names[shape.label_id], box))
    return found


def _online_call(api: str, body: dict[str, Any]) -> Any:
    """CVAT's online function call (the UI's request; cvat-sdk has no typed body for it)."""
    reply = httpx.post(
        f"{api}/api/lambda/functions/colour-detector",
        json=body,
        auth=("admin", PASSWORD),
        timeout=180,
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def _lambda_requests(client: Client, tasks: set[int]) -> dict[int, Any]:
    """The whole-task requests of ``tasks`` by task (cvat-sdk's lambda API)."""
    rows, _ = client.api_client.lambda_api.list_requests()
    return {r.function.task: r for r in rows if r.function.task in tasks}


def _new_task(client: Client, name: str, files: list[Path]) -> int:
    task = client.tasks.create_from_data(
        spec=models.TaskWriteRequest(
            name=name, labels=[models.PatchedLabelRequest(name=c) for c in COLOURS]
        ),
        resources=files,
        data_params={"chunk_size": 8, "image_quality": 100},
    )
    return int(task.id)


def test_the_chart_on_a_multi_node_ray_cluster(
    cluster: Cluster, rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    started = time.monotonic()

    def mark(what: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {what}", flush=True)

    (service,) = [o for o in rendered if o["kind"] == "RayService"]
    groups = {g["groupName"]: g for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    gpu_limit = groups["gpu-workers"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu_limit["nvidia.com/gpu"] == "1"
    # KubeRay gives a worker num-cpus from its container's CPU limit; here small numbers
    cluster.join_worker(
        "cpu-workers",
        groups["cpu-workers"]["rayStartParams"],
        ["--num-cpus=2", "--object-store-memory=150000000"],
    )

    # --- the RayService's serveConfigV2, deployed as the operator deploys it
    config = serve_config_of(service)
    validate_serve_config(config)
    serve_port = free_port()
    config["http_options"] = {**config["http_options"], "host": "127.0.0.1", "port": serve_port}
    config["proxy_location"] = "HeadOnly"
    reply = httpx.put(
        f"{cluster.dashboard}/api/serve/applications/",
        json=config,
        headers=cluster.headers,
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    names = [a["name"] for a in config["applications"]]

    def serving() -> bool:
        reply = httpx.get(
            f"{cluster.dashboard}/api/serve/applications/", headers=cluster.headers, timeout=30
        )
        apps = reply.json().get("applications", {})
        failed = {
            n: a.get("message") for n, a in apps.items() if a.get("status") == "DEPLOY_FAILED"
        }
        assert not failed, failed
        return set(apps) == set(names) and all(a["status"] == "RUNNING" for a in apps.values())

    wait_for(serving, 240, f"{names} to run\n{cluster.nodes['head'].tail()}", step=2)
    mark(f"serveConfigV2 deployed through the Serve REST API: {len(names)} applications RUNNING")
    # the accelerator node joins after the API is placed (the API must outlive its loss)
    cluster.join_worker(
        "gpu-workers",
        groups["gpu-workers"]["rayStartParams"],
        [
            "--num-cpus=2",
            "--object-store-memory=150000000",
            "--resources=" + json.dumps({STAND_IN: 1}),
        ],
    )
    api = f"http://127.0.0.1:{serve_port}"

    # --- cvat-sdk: login, a task with data, an online call, a whole-task run
    client = Client(api, config=Config(cache_dir=tmp_path / "sdk-cache", status_check_period=0.5))
    client.login(("admin", PASSWORD))
    files, truth = _scene_files(tmp_path / "t0", 6, seed=1)
    task_id = _new_task(client, "online", files)
    detections = _online_call(api, {"task": task_id, "frame": 2})
    labels = {label.id: label.name for label in client.tasks.retrieve(task_id).get_labels()}
    assert {s["frame"] for s in detections["shapes"]} == {2}
    found = {
        (labels[s["label_id"]], tuple(round(p) for p in s["points"])) for s in detections["shapes"]
    }
    assert found == truth[2]
    call, _ = client.api_client.lambda_api.create_requests(
        models.FunctionCallRequest(function="colour-detector", task=task_id, cleanup=True)
    )

    def whole_task_done() -> Any:
        row, _ = client.api_client.lambda_api.retrieve_requests(call.id)
        assert row.status != "failed", row
        return row if row.status == "finished" else None

    wait_for(whole_task_done, 180, "the whole-task run")
    assert _found(client, task_id) == truth
    mark("cvat-sdk: task with data, online call, whole-task run: annotations equal the truth")

    # --- the dataset run: the RayJob's entrypoint through the Jobs API, on the accelerator node
    (template_cm,) = [o for o in rendered if o["metadata"]["name"].endswith("-dataset-run")]
    template, _ = kuberay.template_from_configmap(template_cm)
    run_truth: dict[int, dict[int, set[tuple[str, tuple[int, ...]]]]] = {}
    for i in range(DATASET_TASKS):
        files, scene_truth = _scene_files(tmp_path / f"d{i}", FRAMES, seed=10 + i)
        run_truth[_new_task(client, f"dataset-{i}", files)] = scene_truth
    argv = dataset_argv("colour-detector", task_ids=sorted(run_truth), run="kuberay-run")
    rayjob = kuberay.rayjob_manifest(template, argv, cluster="local", run="kuberay-run")
    jobs = f"{cluster.dashboard}/api/jobs/"

    def submit(submission_id: str) -> str:
        reply = httpx.post(
            jobs,
            headers=cluster.headers,
            timeout=60,
            json={
                "entrypoint": rayjob["spec"]["entrypoint"],
                "submission_id": submission_id,
                "entrypoint_num_cpus": rayjob["spec"]["entrypointNumCpus"],
                "entrypoint_resources": {STAND_IN: 1},
                "metadata": rayjob["spec"]["metadata"],
            },
        )
        assert reply.status_code == 200, reply.text
        return str(reply.json()["submission_id"])

    def job(submission_id: str) -> dict[str, Any]:
        reply = httpx.get(f"{jobs}{submission_id}", headers=cluster.headers, timeout=30)
        reply.raise_for_status()
        data: dict[str, Any] = reply.json()
        return data

    def ended(submission_id: str, *statuses: str) -> dict[str, Any] | None:
        state = job(submission_id)
        return state if state["status"] in statuses else None

    def logs(submission_id: str) -> str:
        reply = httpx.get(f"{jobs}{submission_id}/logs", headers=cluster.headers, timeout=30)
        return str(reply.json().get("logs", "")) if reply.status_code == 200 else ""

    first = submit(f"kuberay-run-1-{uuid.uuid4().hex[:4]}")

    def one_task_done() -> str | None:
        state = job(first)
        assert state["status"] not in ("FAILED", "SUCCEEDED"), (state, logs(first))
        text = logs(first)
        return text if ": finished," in text else None

    text = wait_for(one_task_done, 240, "the dataset run's first task", step=0.5)
    # --- a worker node dies mid-run (its pod is deleted): the run's driver with it
    cluster.nodes["gpu-workers"].kill()
    mark("killed the gpu-workers node (the run's driver) after its first finished task")
    killed_at = time.monotonic()
    answered = 0
    while time.monotonic() - killed_at < 8:
        assert httpx.get(f"{api}/api/server/about", timeout=10).status_code == 200
        answered += 1
        time.sleep(0.5)
    assert answered >= 5
    state = wait_for(lambda: ended(first, "FAILED", "STOPPED"), 120, "the job to fail")
    assert state["message"], state
    # the API stays up and the unfinished task's request is failed by the sweep, readably
    tasks = set(run_truth)

    def swept() -> dict[int, Any] | None:
        now = _lambda_requests(client, tasks)
        return now if all(r.status in ("finished", "failed") for r in now.values()) else None

    rows = wait_for(swept, 120, "the sweep to fail the lost request", step=1)
    finished_before = sorted(t for t, r in rows.items() if r.status == "finished")
    failed_rows = [r for r in rows.values() if r.status == "failed"]
    assert finished_before and len(finished_before) < DATASET_TASKS, (rows, text)
    assert failed_rows and all("died" in (r.exc_info or "") for r in failed_rows), failed_rows
    assert len(client.tasks.list()) == DATASET_TASKS + 1
    mark(
        f"API answered {answered} times during the loss; job {state['status']} "
        f"({state['message'][:90]!r}); "
        f"{len(finished_before)} task(s) finished before, {len(failed_rows)} failed by the sweep"
    )

    # --- the node comes back (the pod restarts); the same run resumes
    cluster.join_worker(
        "gpu-workers",
        groups["gpu-workers"]["rayStartParams"],
        [
            "--num-cpus=2",
            "--object-store-memory=150000000",
            "--resources=" + json.dumps({STAND_IN: 1}),
        ],
    )
    second = submit(f"kuberay-run-2-{uuid.uuid4().hex[:4]}")
    state = wait_for(
        lambda: ended(second, "FAILED", "SUCCEEDED", "STOPPED"), 300, "the resumed run"
    )
    out = logs(second)
    assert state["status"] == "SUCCEEDED", (state, out)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["run"] == "kuberay-run"
    assert summary["skipped"] == len(finished_before), out
    assert summary["annotated"] == DATASET_TASKS - len(finished_before)
    assert summary["failed"] == 0
    for task, scene_truth in run_truth.items():
        assert _found(client, task) == scene_truth, task
    mark(f"resumed run SUCCEEDED: {summary}")
