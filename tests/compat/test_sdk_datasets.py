"""cvat-sdk / cvat-cli 2.80 dataset flows against our server: task, job and project
exports (with and without images), and annotation imports (the SDK's TUS upload)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cvat_sdk import Client, Config, models

from tests.compat.conftest import LiveServer
from tests.media_files import write_images

pytestmark = pytest.mark.compat


def _client(server: LiveServer, tmp_path: Path) -> Client:
    client = Client(
        server.url, config=Config(cache_dir=tmp_path / "cache", status_check_period=0.1)
    )
    client.login((server.user.username, server.password))
    return client


def _task(client: Client, tmp_path: Path, name: str, **spec: object) -> object:
    files = write_images(tmp_path / name, 3)
    labels = {} if "project_id" in spec else {"labels": [models.PatchedLabelRequest(name="cat")]}
    return client.tasks.create_from_data(
        spec=models.TaskWriteRequest(name=name, **labels, **spec),  # type: ignore[arg-type]
        resources=files,
    )


def _annotate(task: object) -> None:
    cat = task.get_labels()[0].id  # type: ignore[attr-defined]
    task.set_annotations(  # type: ignore[attr-defined]
        models.LabeledDataRequest(
            shapes=[
                models.LabeledShapeRequest(
                    type="rectangle", frame=0, label_id=cat, points=[1, 2, 9, 9]
                ),
                models.LabeledShapeRequest(
                    type="polygon", frame=1, label_id=cat, points=[1, 1, 8, 1, 8, 8]
                ),
            ],
            tracks=[
                models.LabeledTrackRequest(
                    frame=0,
                    label_id=cat,
                    shapes=[
                        models.TrackedShapeRequest(type="rectangle", frame=0, points=[0, 0, 4, 4]),
                        models.TrackedShapeRequest(type="rectangle", frame=2, points=[2, 2, 6, 6]),
                    ],
                )
            ],
        )
    )


def test_sdk_export_and_import(live_server: LiveServer, tmp_path: Path) -> None:
    with _client(live_server, tmp_path) as client:
        task = _task(client, tmp_path, "source")
        _annotate(task)
        coco = tmp_path / "coco.zip"
        task.export_dataset("COCO 1.0", coco, include_images=True)  # type: ignore[attr-defined]
        with zipfile.ZipFile(coco) as zf:
            names = set(zf.namelist())
        assert "annotations/instances_default.json" in names
        assert sum(n.startswith("images/default/") for n in names) == 3
        video = tmp_path / "video.zip"
        task.export_dataset("CVAT for video 1.1", video, include_images=False)  # type: ignore[attr-defined]
        fresh = _task(client, tmp_path, "target")
        fresh.import_annotations("CVAT 1.1", video)  # type: ignore[attr-defined]
        got = fresh.get_annotations()  # type: ignore[attr-defined]
        # the track, and each plain shape as a one-frame track
        assert len(got.tracks) == 3
        keys = sorted(
            (s.frame, tuple(s.points)) for t in got.tracks for s in t.shapes if not s.outside
        )
        assert (0, (0.0, 0.0, 4.0, 4.0)) in keys and (2, (2.0, 2.0, 6.0, 6.0)) in keys
        job = task.get_jobs()[0]  # type: ignore[attr-defined]
        job_file = tmp_path / "job.zip"
        client.jobs.retrieve(job.id).export_dataset("YOLO 1.1", job_file, include_images=False)
        with zipfile.ZipFile(job_file) as zf:
            assert zf.read("obj.names") == b"cat\n"


def test_sdk_project_export(live_server: LiveServer, tmp_path: Path) -> None:
    with _client(live_server, tmp_path) as client:
        project = client.projects.create(
            models.ProjectWriteRequest(name="p", labels=[models.PatchedLabelRequest(name="cat")])
        )
        task = _task(client, tmp_path, "in-project", project_id=project.id)
        _annotate(task)
        out = tmp_path / "project.zip"
        project.export_dataset("CVAT for images 1.1", out, include_images=True)
        with zipfile.ZipFile(out) as zf:
            xml = zf.read("annotations.xml").decode()
            assert sum(n.startswith("images/") for n in zf.namelist()) == 3
        assert '<box label="cat"' in xml and '<polygon label="cat"' in xml


def test_cli_export_and_import_dataset(live_server: LiveServer, tmp_path: Path) -> None:
    with _client(live_server, tmp_path) as client:
        source = _task(client, tmp_path, "cli-source")
        _annotate(source)
        target = _task(client, tmp_path, "cli-target")
    cli = Path(sys.executable).parent / "cvat-cli"
    base = [str(cli), "--server-host", live_server.url,
            "--auth", f"{live_server.user.username}:{live_server.password}"]  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path)}
    outdir = tmp_path / "cli-out"
    outdir.mkdir()
    out = subprocess.run(
        [*base, "task", "export-dataset", str(source.id), str(outdir),  # type: ignore[attr-defined]
         "--format", "CVAT for images 1.1", "--completion_verification_period", "0.1"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (exported,) = list(outdir.iterdir())  # named by Content-Disposition
    assert exported.suffix == ".zip"
    out = subprocess.run(
        [*base, "task", "import-dataset", str(target.id), str(exported), "--format", "CVAT 1.1"],  # type: ignore[attr-defined]
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    with _client(live_server, tmp_path) as client:
        got = client.tasks.retrieve(target.id).get_annotations()  # type: ignore[attr-defined]
    # 2 shapes + the track's shape on 3 frames, as plain shapes (CVAT for images)
    assert len(got.shapes) == 5
