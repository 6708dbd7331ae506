"""``cvat-ray auto-annotate --kubernetes``: the RayJob it builds from the chart's template
(valid for KubeRay's CRD, the same entrypoint as the Jobs API path, the RayService's active
cluster in ``clusterSelector``), how it reads KubeRay's status shapes, and the whole command
against a small local stand-in of the Kubernetes API (the real ``kubernetes`` client, its
paths and bodies; no cluster can run here)."""

from __future__ import annotations

import json
import shlex
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from cvat_ray.actors import kuberay
from cvat_ray.actors.dataset_run import build_parser
from cvat_ray.cli import main
from cvat_ray.storage.services.lambda_runs import dataset_argv
from tests.kuberay.manifests import EXAMPLES, CrdValidator, crd_dir, objects, render

# Status shapes KubeRay 1.7 writes (reference: ray-kuberay.md §1.2, §1.3).
INITIALIZING: dict[str, Any] = {"jobDeploymentStatus": "Initializing", "rayClusterName": "c-1"}
RUNNING: dict[str, Any] = {
    "jobDeploymentStatus": "Running",
    "jobStatus": "RUNNING",
    "jobId": "cvat-run-x",
    "rayClusterName": "c-1",
    "dashboardURL": "c-1-head-svc.annotation.svc.cluster.local:8265",
    "startTime": "2026-12-05T07:00:00Z",
}
COMPLETE = {
    **RUNNING,
    "jobDeploymentStatus": "Complete",
    "jobStatus": "SUCCEEDED",
    "endTime": "2026-12-05T07:10:00Z",
    "succeeded": 1,
}
APP_FAILED = {
    **RUNNING,
    "jobDeploymentStatus": "Failed",
    "jobStatus": "FAILED",
    "reason": "AppFailed",
    "message": "Job entrypoint command failed with exit code 1",
    "failed": 1,
}
DEADLINE = {
    **RUNNING,
    "jobDeploymentStatus": "Failed",
    "reason": "DeadlineExceeded",
    "message": "The RayJob has passed the activeDeadlineSeconds.",
}
VALIDATION = {
    "jobDeploymentStatus": "ValidationFailed",
    "reason": "ValidationFailed",
    "message": "The RayJob spec is invalid: entrypoint is required",
}
RETRYING = {**RUNNING, "jobDeploymentStatus": "Retrying", "jobStatus": "FAILED", "failed": 1}


def _template(example: str) -> tuple[dict[str, Any], str | None]:
    values = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    (configmap,) = [
        o for o in objects(render(values)) if o["metadata"]["name"].endswith("-dataset-run")
    ]
    return kuberay.template_from_configmap(configmap)


@pytest.mark.parametrize(
    ("status", "finished", "succeeded", "summary"),
    [
        ({}, False, False, "Pending / -"),
        (INITIALIZING, False, False, "Initializing / -"),
        (RUNNING, False, False, "Running / RUNNING"),
        (RETRYING, False, False, "Retrying / FAILED"),
        (COMPLETE, True, True, "Complete / SUCCEEDED"),
        (APP_FAILED, True, False, "Failed / FAILED / AppFailed: Job entrypoint command failed"),
        (DEADLINE, True, False, "Failed / RUNNING / DeadlineExceeded: The RayJob has passed"),
        (VALIDATION, True, False, "ValidationFailed / - / ValidationFailed: The RayJob spec"),
    ],
)
def test_status_shapes(
    status: dict[str, Any], finished: bool, succeeded: bool, summary: str
) -> None:
    state = kuberay.parse_status({"metadata": {"name": "r"}, "status": status})
    assert (state.finished, state.succeeded) == (finished, succeeded)
    assert state.summary().startswith(summary)
    assert state.cluster == status.get("rayClusterName")
    assert state.failed == status.get("failed", 0)


def test_the_rayservice_active_cluster() -> None:
    ready = {
        "metadata": {"name": "cvat-cvat-ray"},
        "status": {
            "activeServiceStatus": {
                "rayClusterName": "cvat-cvat-ray-7xk2p",
                "applicationStatuses": {"cvat-api": {"status": "RUNNING"}},
            },
            "pendingServiceStatus": {"rayClusterName": "cvat-cvat-ray-9q4tz"},
            "numServeEndpoints": 2,
        },
    }
    # during a blue/green upgrade the jobs still go to the cluster serving traffic
    assert kuberay.active_cluster(ready) == "cvat-cvat-ray-7xk2p"
    starting = {
        "metadata": {"name": "cvat-cvat-ray"},
        "status": {"pendingServiceStatus": {"rayClusterName": "cvat-cvat-ray-9q4tz"}},
    }
    with pytest.raises(
        kuberay.RayJobError, match=r"no active cluster yet.*9q4tz is still starting"
    ):
        kuberay.active_cluster(starting)
    with pytest.raises(kuberay.RayJobError, match="no active cluster yet"):
        kuberay.active_cluster({"metadata": {"name": "x"}})


@pytest.mark.parametrize("example", ["minimal", "gpu"])
def test_the_rayjob_is_valid_and_runs_the_dataset_run(example: str, crds: CrdValidator) -> None:
    template, rayservice = _template(example)
    argv = dataset_argv("colour-detector", project_id=3, threshold=0.4, run="nightly")
    cluster = "cvat-cvat-ray-7xk2p" if example == "minimal" else None
    job = kuberay.rayjob_manifest(template, argv, cluster=cluster, run="nightly")
    assert crds.errors(job) == []
    spec = job["spec"]
    words = shlex.split(spec["entrypoint"])
    assert words[:3] == ["python", "-m", "cvat_ray.actors.dataset_run"]
    parsed = build_parser().parse_args(words[3:])
    assert (parsed.function, parsed.project, parsed.threshold, parsed.run) == (
        "colour-detector",
        3,
        0.4,
        "nightly",
    )
    assert job["metadata"]["annotations"]["cvat-ray/run"] == "nightly"
    assert job["metadata"]["generateName"] == "cvat-cvat-ray-run-"
    assert spec["activeDeadlineSeconds"] > 0 and spec["entrypointNumCpus"] == 0.05
    if example == "minimal":
        assert rayservice == "cvat-cvat-ray"
        assert spec["clusterSelector"] == {"ray.io/cluster": cluster}
        assert "rayClusterSpec" not in spec and "shutdownAfterJobFinishes" not in spec
    else:
        assert "clusterSelector" not in spec
        assert spec["shutdownAfterJobFinishes"] is True
        assert spec["ttlSecondsAfterFinished"] == 300
    # nothing secret travels in the RayJob
    assert "CVAT_RAY_" not in json.dumps(job)
    # the template is not changed
    assert template["spec"]["entrypoint"] == ""


def test_bad_templates_are_refused() -> None:
    template, _ = _template("minimal")
    with pytest.raises(kuberay.RayJobError, match="existing cluster"):
        kuberay.rayjob_manifest(template, ["--function", "x", "--task", "1"])
    bare = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {}, "spec": {}}
    with pytest.raises(kuberay.RayJobError, match="neither clusterSelector nor rayClusterSpec"):
        kuberay.rayjob_manifest(bare, ["--function", "x", "--task", "1"])
    with pytest.raises(kuberay.RayJobError, match=r"no rayjob\.yaml"):
        kuberay.template_from_configmap({"metadata": {"name": "c"}, "data": {}})


class FakeKubernetes:
    """The few endpoints the command calls, answered as the API server does: ConfigMaps by
    label selector, a RayService with its status, RayJobs created from ``generateName``
    and read back with the next recorded status on each read."""

    def __init__(self, configmap: dict[str, Any], statuses: list[dict[str, Any]]) -> None:
        self.configmap = configmap
        self.statuses = statuses
        self.created: list[dict[str, Any]] = []
        self.reads = 0
        self.selectors: list[str] = []
        self.auth: set[str] = set()
        self.forbid = False

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                fake.auth.add(self.headers.get("Authorization", ""))
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if url.path == "/api/v1/namespaces/annotation/configmaps":
                    selector = parse_qs(url.query)["labelSelector"][0]
                    fake.selectors.append(selector)
                    labels = dict(kv.split("=") for kv in selector.split(","))
                    mine = fake.configmap["metadata"]["labels"]
                    items = [fake.configmap] if labels.items() <= mine.items() else []
                    self._send(200, {"kind": "ConfigMapList", "apiVersion": "v1", "items": items})
                elif parts[:5] == ["apis", "ray.io", "v1", "namespaces", "annotation"]:
                    if parts[5] == "rayservices" and parts[6] == "cvat-cvat-ray":
                        self._send(
                            200,
                            {
                                "apiVersion": "ray.io/v1",
                                "kind": "RayService",
                                "metadata": {"name": "cvat-cvat-ray"},
                                "status": {
                                    "activeServiceStatus": {"rayClusterName": "cvat-cvat-ray-7xk2p"}
                                },
                            },
                        )
                    elif (
                        parts[5] == "rayjobs"
                        and fake.created
                        and parts[6] == fake.created[0]["metadata"]["name"]
                    ):
                        status = fake.statuses[min(fake.reads, len(fake.statuses) - 1)]
                        fake.reads += 1
                        self._send(200, {**fake.created[0], "status": status})
                    else:
                        self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                else:
                    self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.forbid:
                    message = 'rayjobs.ray.io is forbidden: User "me" cannot create resource'
                    self._send(403, {"kind": "Status", "code": 403, "message": message})
                    return
                if self.path != "/apis/ray.io/v1/namespaces/annotation/rayjobs":
                    self._send(404, {"kind": "Status", "code": 404})
                    return
                body["metadata"]["name"] = body["metadata"].pop("generateName") + "q8w2e"
                fake.created.append(body)
                self._send(201, body)

        return Handler


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[FakeKubernetes, Path]]:
    values = yaml.safe_load((EXAMPLES / "minimal.yaml").read_text())
    (configmap,) = [
        o for o in objects(render(values)) if o["metadata"]["name"].endswith("-dataset-run")
    ]
    fake = FakeKubernetes(configmap, [INITIALIZING, RUNNING, RUNNING, APP_FAILED])
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = tmp_path / "kubeconfig"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_port}"},
                    }
                ],
                "users": [{"name": "me", "user": {"token": "kube-token-1"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
                "current-context": "fake",
            }
        )
    )
    try:
        yield fake, config
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_the_command_creates_the_rayjob_and_follows_it(
    kube: tuple[FakeKubernetes, Path],
    crds: CrdValidator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake, config = kube
    code = main(
        [
            "auto-annotate",
            "--kubernetes",
            "--kubeconfig",
            str(config),
            "--namespace",
            "annotation",
            "--release",
            "cvat",
            "--function",
            "colour-detector",
            "--task",
            "4",
            "--task",
            "5",
            "--run",
            "r1",
            "--poll-s",
            "0.01",
        ]
    )
    out = capsys.readouterr().out
    assert code == 1  # the recorded run ends AppFailed
    assert fake.selectors == [
        "app.kubernetes.io/instance=cvat,app.kubernetes.io/component=dataset-run"
    ]
    assert fake.auth == {"Bearer kube-token-1"}
    (job,) = fake.created
    assert crds.errors(job) == []
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "cvat-cvat-ray-7xk2p"}
    assert shlex.split(job["spec"]["entrypoint"])[3:] == [
        "--function",
        "colour-detector",
        "--task",
        "4",
        "--task",
        "5",
        "--run",
        "r1",
    ]
    lines = [line for line in out.splitlines() if line.startswith("RayJob ")]
    assert lines == [
        "RayJob cvat-cvat-ray-run-q8w2e: Initializing / -",
        "RayJob cvat-cvat-ray-run-q8w2e: Running / RUNNING",
        "RayJob cvat-cvat-ray-run-q8w2e: Failed / FAILED / AppFailed: "
        "Job entrypoint command failed with exit code 1",
    ]
    assert (
        "Created RayJob annotation/cvat-cvat-ray-run-q8w2e (on cluster cvat-cvat-ray-7xk2p)" in out
    )
    # a release that is not there: a clear error, nothing created
    code = main(
        [
            "auto-annotate",
            "--kubernetes",
            "--kubeconfig",
            str(config),
            "--namespace",
            "annotation",
            "--release",
            "other",
            "--function",
            "colour-detector",
            "--task",
            "4",
        ]
    )
    assert code == 2 and len(fake.created) == 1
    assert "is the chart installed there?" in capsys.readouterr().err


def test_crds_are_the_reference_ones() -> None:
    if not crd_dir().is_dir():
        pytest.skip("no CRDs")
    kinds = CrdValidator(crd_dir()).kinds()
    assert ("ray.io/v1", "RayJob") in kinds and ("ray.io/v1", "RayService") in kinds


def test_kubernetes_errors_are_readable(
    kube: tuple[FakeKubernetes, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The API server's refusal and an unreachable API server end the command with a
    message, not a traceback; nothing is created."""
    fake, config = kube
    fake.forbid = True
    base = ["auto-annotate", "--kubernetes", "--namespace", "annotation", "--function", "f"]
    assert main([*base, "--kubeconfig", str(config), "--task", "1"]) == 2
    err = capsys.readouterr().err
    assert "the Kubernetes API answered 403: rayjobs.ray.io is forbidden" in err
    assert fake.created == []
    nowhere = tmp_path / "nowhere"
    text = config.read_text()
    nowhere.write_text(text.replace(text.split("server: ")[1].split()[0], "http://127.0.0.1:9"))
    assert main([*base, "--kubeconfig", str(nowhere), "--task", "1"]) == 2
    assert "the Kubernetes API cannot be reached" in capsys.readouterr().err
    assert main([*base, "--kubeconfig", str(tmp_path / "missing"), "--task", "1"]) == 2
    assert "cannot use the kubeconfig" in capsys.readouterr().err
