"""cvat-sdk / cvat-cli 2.80 task data: create_from_data with images, a zip and a video (and
share and URL resources), download_frames, TaskDataset, cvat-cli task create and frames."""

from __future__ import annotations

import http.server
import io
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from cvat_sdk import Client, Config, models
from cvat_sdk.core.proxies.tasks import ResourceType
from cvat_sdk.datasets import TaskDataset
from PIL import Image

from tests.compat.conftest import LiveServer
from tests.media_files import write_images, write_video

pytestmark = pytest.mark.compat

LABELS = [models.PatchedLabelRequest(name="cat")]


def _client(server: LiveServer, tmp_path: Path) -> Client:
    client = Client(
        server.url,
        config=Config(
            allow_unsupported_server=False, cache_dir=tmp_path / "cache", status_check_period=0.1
        ),
    )
    client.login((server.user.username, server.password))
    return client


def test_create_from_images_download_frames_and_dataset(
    live_server: LiveServer, tmp_path: Path
) -> None:
    files = write_images(tmp_path / "imgs", 7, width=80, height=60)
    with _client(live_server, tmp_path) as client:
        task = client.tasks.create_from_data(
            spec=models.TaskWriteRequest(name="images", labels=LABELS, segment_size=4),
            resources=files,
            data_params={"chunk_size": 3, "image_quality": 80},
        )
        assert task.size == 7 and task.data_chunk_size == 3
        assert task.data_original_chunk_type == "imageset"
        assert [f.name for f in task.get_frames_info()] == [p.name for p in files]
        assert len(task.get_jobs()) == 2
        out = tmp_path / "frames"
        task.download_frames([0, 6], outdir=out, quality="original")
        saved = sorted(out.iterdir())
        assert [p.name for p in saved] == ["frame_000000.jpg", "frame_000006.jpg"]
        # download_frames re-encodes what it gets; the original frame arrives unchanged
        assert task.get_frame(6, quality="original").read() == files[6].read_bytes()
        assert Image.open(saved[1]).size == (80, 60)
        task.download_frames([2], outdir=out, quality="compressed")
        assert Image.open(task.get_preview()).size[0] <= 256

        dataset = TaskDataset(client, task.id, load_annotations=False)
        assert len(dataset.samples) == 7
        for sample, path in zip(dataset.samples, files, strict=True):
            assert sample.frame_name == path.name
            image = sample.media.load_image()
            assert image.size == (80, 60)
            assert image.getpixel((60, 40)) == Image.open(path).convert("RGB").getpixel((60, 40))

        task.remove_frames_by_ids([1])
        dataset = TaskDataset(client, task.id, load_annotations=False)
        assert [s.frame_index for s in dataset.samples] == [0, 2, 3, 4, 5, 6]


def test_create_from_zip_and_video(live_server: LiveServer, tmp_path: Path) -> None:
    images = write_images(tmp_path / "imgs", 4)
    archive = tmp_path / "set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in images:
            zf.write(p, f"inner/{p.name}")
    clip = write_video(tmp_path / "clip.mp4", 25)
    with _client(live_server, tmp_path) as client:
        zipped = client.tasks.create_from_data(
            spec=models.TaskWriteRequest(name="zip", labels=LABELS), resources=[archive]
        )
        assert zipped.size == 4
        assert zipped.get_frames_info()[0].name == "inner/img_000.jpg"
        frame = Image.open(zipped.get_frame(3, quality="original"))
        assert frame.size == (64, 48)

        video = client.tasks.create_from_data(
            spec=models.TaskWriteRequest(name="video", labels=LABELS),
            resources=[clip],
            data_params={"frame_step": 2},
        )
        assert video.size == 13 and video.data_original_chunk_type == "video"
        assert video.mode == "interpolation"
        assert video.get_frames_info()[0].name == "clip.mp4"
        out = tmp_path / "vframes"
        video.download_frames([12], outdir=out)
        (saved,) = out.iterdir()
        assert Image.open(saved).size == (64, 48)
        chunk = io.BytesIO()
        video.download_chunk(0, chunk, quality="compressed")
        assert chunk.getvalue()[4:8] == b"ftyp"  # an MP4


def test_share_and_remote_resources(live_server: LiveServer, tmp_path: Path) -> None:
    share = live_server.settings.media.share_root
    assert share is not None
    write_images(share / "sdk", 3)
    served = write_images(tmp_path / "served", 2)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, directory=str(tmp_path / "served"), **kwargs)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with _client(live_server, tmp_path) as client:
            shared = client.tasks.create_from_data(
                spec=models.TaskWriteRequest(name="share", labels=LABELS),
                resource_type=ResourceType.SHARE,
                resources=["sdk/"],
            )
            assert shared.size == 3
            frame = Image.open(shared.get_frame(0, quality="original"))
            assert frame.size == (64, 48)
            base = f"http://127.0.0.1:{httpd.server_address[1]}"
            remote = client.tasks.create_from_data(
                spec=models.TaskWriteRequest(name="remote", labels=LABELS),
                resource_type=ResourceType.REMOTE,
                resources=[f"{base}/{p.name}" for p in served],
            )
            assert remote.size == 2
            assert remote.get_frame(1, quality="original").read() == served[1].read_bytes()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_cli_task_create_and_frames(live_server: LiveServer, tmp_path: Path) -> None:
    files = write_images(tmp_path / "imgs", 3)
    cli = Path(sys.executable).parent / "cvat-cli"
    base = [
        str(cli),
        "--server-host",
        live_server.url,
        "--auth",
        f"{live_server.user.username}:{live_server.password}",
    ]
    env = {**os.environ, "HOME": str(tmp_path)}
    out = subprocess.run(
        [
            *base,
            "task",
            "create",
            "cli data",
            "local",
            *map(str, files),
            "--labels",
            '[{"name":"cat"}]',
            "--completion_verification_period",
            "0.1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    task_id = int(out.stdout.strip().splitlines()[-1])
    outdir = tmp_path / "out"
    out = subprocess.run(
        [*base, "task", "frames", str(task_id), "0", "2", "--outdir", str(outdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    saved = sorted(p.name for p in outdir.iterdir())
    assert saved == [f"task_{task_id}_frame_000000.jpg", f"task_{task_id}_frame_000002.jpg"]
    assert Image.open(outdir / saved[1]).size == Image.open(files[2]).size
