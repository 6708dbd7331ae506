"""``cvat-cli task auto-annotate`` with a small local detection function: it reads the task's
chunks and writes the detections back with ``PATCH /api/tasks/{id}/annotations/``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cvat_sdk import Client, Config, models

from tests.compat.conftest import LiveServer
from tests.media_files import write_images

pytestmark = pytest.mark.compat

FUNCTION = textwrap.dedent(
    """
    import cvat_sdk.auto_annotation as cvataa

    spec = cvataa.DetectionFunctionSpec(labels=[cvataa.label_spec("cat", 0)])

    def detect(context, image):
        width, height = image.size
        return [cvataa.rectangle(0, [1, 1, width - 1, height - 1])]
    """
)


def test_cli_auto_annotate(live_server: LiveServer, tmp_path: Path) -> None:
    files = write_images(tmp_path / "imgs", 5)
    client = Client(
        live_server.url,
        config=Config(cache_dir=tmp_path / "cache", status_check_period=0.1),
    )
    client.login((live_server.user.username, live_server.password))
    with client:
        task = client.tasks.create_from_data(
            spec=models.TaskWriteRequest(
                name="auto", labels=[models.PatchedLabelRequest(name="cat")]
            ),
            resources=files,
            data_params={"chunk_size": 2},
        )
    function = tmp_path / "detector.py"
    function.write_text(FUNCTION)
    cli = Path(sys.executable).parent / "cvat-cli"
    out = subprocess.run(
        [
            str(cli),
            "--server-host",
            live_server.url,
            "--auth",
            f"{live_server.user.username}:{live_server.password}",
            "task",
            "auto-annotate",
            str(task.id),
            "--function-file",
            str(function),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    with client:
        client.login((live_server.user.username, live_server.password))
        annotations = client.tasks.retrieve(task.id).get_annotations()
    assert sorted(s.frame for s in annotations.shapes) == [0, 1, 2, 3, 4]
    assert {s.source for s in annotations.shapes} == {"auto"}
