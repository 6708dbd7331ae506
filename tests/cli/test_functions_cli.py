"""``cvat-ray functions`` and ``auto-annotate --local`` without a running server: specs are
validated and registered, models run in the CLI's process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvat_ray.actors.functions.synthetic import make_scene
from cvat_ray.cli import main
from cvat_ray.cluster.runtime import free_port
from cvat_ray.serve_apps.deploy import builtin_spec_dir
from tests.ray_cluster import RayCluster

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "cvat-ray")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for key in ("CVAT_RAY_DATA_DIR", "RAY_ADDRESS", "CVAT_RAY_DATABASE__URL"):
        monkeypatch.delenv(key, raising=False)
    return str(tmp_path / "data")


def test_deploy_list_invoke_delete(data_dir: str, tmp_path: Path, capsys) -> None:
    spec = builtin_spec_dir() / "colour-detector.yaml"
    assert main(["functions", "deploy", str(spec), "--check", "--data-dir", data_dir]) == 0
    assert "registered; the next `cvat-ray up` deploys it" in capsys.readouterr().out
    assert main(["functions", "list", "--data-dir", data_dir]) == 0
    assert "colour-detector" in capsys.readouterr().out
    assert main(["functions", "list", "--json", "--data-dir", data_dir]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["id"] == "colour-detector" and listed["kind"] == "detector"

    image, truth = make_scene(200, 150, 2, seed=4, sizes=(24, 50))
    path = tmp_path / "scene.png"
    Image.fromarray(image).save(path)
    argv = ["functions", "invoke", "colour-detector", "--image", str(path), "--data-dir", data_dir]
    assert main(argv) == 0
    found = json.loads(capsys.readouterr().out)
    assert {(d["label"], tuple(round(p) for p in d["points"])) for d in found} == {
        (name, tuple(box)) for name, box in truth
    }
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"nope")
    argv[4] = str(bad)
    assert main(argv) == 2
    assert "not an image" in capsys.readouterr().err

    assert main(["functions", "delete", "colour-detector", "--data-dir", data_dir]) == 0
    assert main(["functions", "delete", "colour-detector", "--data-dir", data_dir]) == 1
    assert "no function 'colour-detector'" in capsys.readouterr().err


def test_invalid_spec_is_refused_at_deploy(data_dir: str, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("id: bad\nname: B\nkind: detector\nlabels: []\nruntime: {class: colour}\n")
    assert main(["functions", "deploy", str(spec), "--data-dir", data_dir]) == 2
    assert "bad.yaml: spec: a detector needs at least one label" in capsys.readouterr().err
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"not onnx")
    spec.write_text(
        "id: broken\nname: B\nkind: detector\nlabels: [{name: a}]\nruntime: {onnx: broken.onnx}\n"
    )
    assert main(["functions", "deploy", str(spec), "--check", "--data-dir", data_dir]) == 2
    assert "broken: the model does not load" in capsys.readouterr().err
    assert main(["functions", "list", "--json", "--data-dir", data_dir]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_interactor_invoke(data_dir: str, tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "functions",
                "deploy",
                str(builtin_spec_dir() / "grabcut.yaml"),
                "--data-dir",
                data_dir,
            ]
        )
        == 0
    )
    image = np.full((120, 160, 3), 80, dtype=np.uint8)
    image[30:90, 40:120] = (230, 30, 30)
    path = tmp_path / "obj.png"
    Image.fromarray(image).save(path)
    capsys.readouterr()
    data = json.dumps({"pos_points": [[80, 60]], "obj_bbox": [30, 20, 130, 100]})
    argv = [
        "functions",
        "invoke",
        "grabcut",
        "--image",
        str(path),
        "--data",
        data,
        "--data-dir",
        data_dir,
    ]
    assert main(argv) == 0
    points = np.array(json.loads(capsys.readouterr().out)["points"])
    assert abs(points[:, 0].min() - 40) <= 3 and abs(points[:, 0].max() - 119) <= 3


SPEC = (
    "id: {id}\nname: Colours\nkind: detector\nlabels: [{{name: red}}]\n"
    "runtime: {{class: colour}}\nresources: {{num_cpus: 0.1}}\n"
    "autoscaling: {{min_replicas: 0, max_replicas: 1}}\n"
)


def _cli(cluster: RayCluster, *argv: str) -> subprocess.CompletedProcess[str]:
    """``cvat-ray ARGV`` in a process of its own, joined to the session's Ray cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CVAT_RAY_", "RAY_"))}
    env |= cluster.env() | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([CLI, *argv], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.ray
@pytest.mark.slow
def test_functions_on_a_running_cluster(ray_cluster: RayCluster, tmp_path: Path) -> None:
    """Deploy, list (Serve's plain status names) and delete on a cluster that runs Serve."""
    from ray import serve

    data = str(tmp_path / "data")
    spec = tmp_path / "fn.yaml"
    spec.write_text(SPEC.format(id="cli-colours"))
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    try:
        done = _cli(ray_cluster, "functions", "deploy", str(spec), "--data-dir", data)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Function 'cli-colours' deployed" in done.stdout
        assert "cvat-fn-cli-colours" in serve.status().applications
        listed = _cli(ray_cluster, "functions", "list", "--data-dir", data)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        (row,) = [line for line in listed.stdout.splitlines() if line.startswith("cli-colours")]
        assert row.split()[3] == "RUNNING", listed.stdout
        as_json = _cli(ray_cluster, "functions", "list", "--json", "--data-dir", data)
        assert json.loads(as_json.stdout)[0]["serve"] == "RUNNING"
        deleted = _cli(ray_cluster, "functions", "delete", "cli-colours", "--data-dir", data)
        assert deleted.returncode == 0, deleted.stdout + deleted.stderr
        assert "cvat-fn-cli-colours" not in serve.status().applications
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]


@pytest.mark.ray
@pytest.mark.slow
def test_delete_fails_when_serve_cannot_delete(
    ray_cluster: RayCluster, tmp_path: Path, capsys
) -> None:
    """The cluster it joins runs no Serve: Serve cannot delete the application, so the
    command says so, fails, and the function stays registered."""
    from ray import serve

    with contextlib.suppress(Exception):
        serve.shutdown()  # type: ignore[no-untyped-call]  # (another test's, if left)
    data = str(tmp_path / "data")
    spec = tmp_path / "fn.yaml"
    spec.write_text(SPEC.format(id="kept"))
    assert main(["functions", "deploy", str(spec), "--data-dir", data]) == 0  # registered only
    capsys.readouterr()
    deleted = _cli(ray_cluster, "functions", "delete", "kept", "--data-dir", data)
    assert deleted.returncode == 1, deleted.stdout + deleted.stderr
    assert "Serve could not delete the application 'cvat-fn-kept'" in deleted.stderr
    assert "stays registered" in deleted.stderr and "deleted" not in deleted.stdout
    assert main(["functions", "list", "--json", "--data-dir", data]) == 0
    assert [f["id"] for f in json.loads(capsys.readouterr().out)] == ["kept"]
