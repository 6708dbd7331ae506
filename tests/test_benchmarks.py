"""The benchmarks that need hardware CI lacks still run, at tiny sizes, so they keep working.

``bench/gpu_end_to_end.py --device cpu`` drives the real ``cvat-ray up`` (a local Ray head)
through everything its GPU run measures: generated frames and video, the heavy TorchScript
detector and the colour detector as functions, image and video tasks, whole-task requests,
online calls, the model alone and a dataset run as a Ray job. Its figures mean nothing here;
that every step runs and every object is found does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.ray
@pytest.mark.slow
def test_gpu_end_to_end_bench_runs_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAT_RAY_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench/gpu_end_to_end.py"), "--device=cpu", f"--json={out}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    figures = json.loads(out.read_text())
    heavy, colour = figures["heavy-detector"], figures["colour-detector-gpu"]
    for result in (heavy, colour):
        expected, found, saved = result["objects"]
        assert expected > 0 and found == expected == saved
        assert result["a_fps"] > 0 and result["b_fps"] > 0 and result["c_infer_fps"] > 0
    assert heavy["video_objects"][0] == heavy["video_objects"][1] > 0
    summary = heavy["d_summary"]
    assert summary["tasks"] == summary["annotated"] == 2 and summary["failed"] == 0
    assert summary["objects"] == 2 * heavy["objects"][0]
    assert "ratio (a)/(b)" in done.stdout and "ratio (a)/(c)" in done.stdout


@pytest.mark.slow
def test_export_bench_runs_small(tmp_path: Path) -> None:
    """``bench/export.py`` at a tiny scale on SQLite: every variant runs and writes output."""
    out = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CVAT_RAY_")}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/export.py"),
            "--scale=0.001",
            "--sqlite",
            f"--json={out}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    figures = json.loads(out.read_text())
    for variant in ("coco", "cvat", "baseline", "import"):
        assert figures[variant]["seconds"] > 0 and figures[variant]["bytes"] > 0
    # the import is measured in rounds (ours, then datumaro's where given), the median kept
    assert len(figures["import_rounds"]) == 3
    assert figures["import"] in [ours for ours, _ in figures["import_rounds"]]
    assert "COCO vs baseline" in done.stdout
