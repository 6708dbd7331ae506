"""cvat-sdk / cvat-cli 2.80 backups: ``cvat-cli task backup`` / ``task create-from-backup``,
``project.download_backup`` / ``projects.create_from_backup``, and a cloud-backed task's
backup, lightweight and not, written to and restored from an S3 bucket (moto)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from cvat_sdk import Client, Config, models
from cvat_sdk.core.proxies.types import Location

from tests.cloud_servers import StorageServer, put_object
from tests.compat.conftest import LiveServer
from tests.media_files import image_bytes, write_images

pytestmark = pytest.mark.compat

LABELS = [
    models.PatchedLabelRequest(name="cat"),
    models.PatchedLabelRequest(
        name="dog",
        attributes=[
            models.AttributeRequest(
                name="size", mutable=True, input_type="select", values=["s", "l"],
                default_value="s",
            )
        ],
    ),
]  # fmt: skip


def _client(server: LiveServer, tmp_path: Path) -> Client:
    client = Client(
        server.url,
        config=Config(
            allow_unsupported_server=False, cache_dir=tmp_path / "cache", status_check_period=0.1
        ),
    )
    client.login((server.user.username, server.password))
    return client


def _http(server: LiveServer) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, auth=(server.user.username, server.password), timeout=60
    )


def _annotate(server: LiveServer, task_id: int) -> None:
    with _http(server) as api:
        labels = {
            lbl["name"]: lbl
            for lbl in api.get(f"/api/labels?task_id={task_id}&org=").json()["results"]
        }
        dog = labels["dog"]
        r = api.put(
            f"/api/tasks/{task_id}/annotations",
            json={
                "tags": [{"frame": 0, "label_id": labels["cat"]["id"]}],
                "shapes": [
                    {"type": "rectangle", "frame": 1, "label_id": dog["id"],
                     "points": [1, 2, 3, 4],
                     "attributes": [{"spec_id": dog["attributes"][0]["id"], "value": "l"}]},
                ],
                "tracks": [
                    {"frame": 0, "label_id": labels["cat"]["id"],
                     "shapes": [{"type": "points", "frame": 0, "points": [5, 5]}]},
                ],
            },
        )  # fmt: skip
        assert r.status_code == 200, r.text


def _state(client: Client, task_id: int) -> dict[str, Any]:
    """What must survive a backup: frames, their names, jobs, annotations by label name."""
    task = client.tasks.retrieve(task_id)
    names = {lbl.id: lbl.name for lbl in task.get_labels()}
    ann = task.get_annotations()
    return {
        "name": task.name,
        "size": task.size,
        "frames": [f.name for f in task.get_frames_info()],
        "bytes": [task.get_frame(i, quality="original").read() for i in range(task.size)],
        "jobs": [(j.start_frame, j.stop_frame, j.status) for j in task.get_jobs()],
        "tags": sorted((t.frame, names[t.label_id]) for t in ann.tags),
        "shapes": sorted(
            (s.frame, names[s.label_id], tuple(s.points), tuple(a.value for a in s.attributes))
            for s in ann.shapes
        ),
        "tracks": sorted((t.frame, names[t.label_id], len(t.shapes)) for t in ann.tracks),
    }


def _cli(server: LiveServer, tmp_path: Path, *args: str) -> str:
    cli = Path(sys.executable).parent / "cvat-cli"
    out = subprocess.run(
        [
            str(cli), "--server-host", server.url,
            "--auth", f"{server.user.username}:{server.password}", *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_cli_task_backup_and_create_from_backup(live_server: LiveServer, tmp_path: Path) -> None:
    files = write_images(tmp_path / "imgs", 5, width=50, height=40)
    with _client(live_server, tmp_path) as client:
        task = client.tasks.create_from_data(
            spec=models.TaskWriteRequest(name="cli backup", labels=LABELS, segment_size=2),
            resources=files,
        )
        _annotate(live_server, task.id)
        before = _state(client, task.id)
        out_dir = tmp_path / "backups"
        out_dir.mkdir()
        # no FILE: the server's name (Content-Disposition) in the current directory
        _cli(
            live_server,
            out_dir,
            "task",
            "backup",
            str(task.id),
            "--completion_verification_period",
            "0.1",
        )
        saved = list(out_dir.glob("*.zip"))
        assert len(saved) == 1, list(out_dir.iterdir())
        with zipfile.ZipFile(saved[0]) as zf:
            assert json.loads(zf.read("task.json"))["version"] == "1.0"
        printed = _cli(
            live_server, tmp_path, "task", "create-from-backup", str(saved[0]),
            "--completion_verification_period", "0.1",
        )  # fmt: skip
        new_id = int(printed.strip().splitlines()[-1])
        assert new_id != task.id
        after = _state(client, new_id)
        assert after == before
        # and the SDK's own calls
        path = tmp_path / "sdk.zip"
        task.download_backup(path)
        again = client.tasks.create_from_backup(path)
        assert _state(client, again.id) == before


def test_project_download_and_create_from_backup(live_server: LiveServer, tmp_path: Path) -> None:
    files = write_images(tmp_path / "imgs", 3, width=40, height=30)
    with _client(live_server, tmp_path) as client:
        project = client.projects.create(models.ProjectWriteRequest(name="p", labels=LABELS))
        tasks = [
            client.tasks.create_from_data(
                spec=models.TaskWriteRequest(name=f"t{i}", project_id=project.id),
                resources=files,
            )
            for i in range(2)
        ]
        for task in tasks:
            _annotate(live_server, task.id)
        before = [_state(client, t.id) for t in tasks]
        path = tmp_path / "project.zip"
        project.download_backup(path)
        restored = client.projects.create_from_backup(path)
        assert restored.id != project.id and restored.name == "p"
        assert sorted(lbl.name for lbl in restored.get_labels()) == ["cat", "dog"]
        new_tasks = sorted(restored.get_tasks(), key=lambda t: t.id)
        assert [_state(client, t.id) for t in new_tasks] == before


def _wait(api: httpx.Client, rq_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        body: dict[str, Any] = api.get(f"/api/requests/{rq_id}").json()
        if body["status"] in ("finished", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


@pytest.mark.parametrize("lightweight", [True, False])
def test_cloud_task_backup_to_and_from_s3(
    live_server: LiveServer, s3_server: StorageServer, tmp_path: Path, lightweight: bool
) -> None:
    live_server.settings.media.remote_allowlist = "127.0.0.1/32"
    prefix = uuid.uuid4().hex[:8]
    media = {f"{prefix}/img_{i}.jpg": image_bytes(48, 32, (i * 60, 10, 10)) for i in range(3)}
    for key, data in media.items():
        put_object(s3_server, key, data)
    with _client(live_server, tmp_path) as client, _http(live_server) as api:
        r = api.post(
            "/api/cloudstorages",
            json={"provider_type": s3_server.provider, "resource": s3_server.bucket,
                  "display_name": "bucket", **s3_server.fields},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        storage_id = r.json()["id"]
        task = client.tasks.create(models.TaskWriteRequest(name="cloud", labels=LABELS))
        r = api.post(
            f"/api/tasks/{task.id}/data/",
            json={"cloud_storage_id": storage_id, "server_files": [f"{prefix}/"],
                  "image_quality": 70},
        )  # fmt: skip
        assert r.status_code == 202, r.text
        assert _wait(api, r.json()["rq_id"])["status"] == "finished"
        _annotate(live_server, task.id)
        before = _state(client, task.id)
        key = f"backups/{prefix}-{lightweight}.zip"
        task.download_backup(
            key, location=Location.CLOUD_STORAGE, cloud_storage_id=storage_id,
            lightweight=lightweight,
        )  # fmt: skip
        import boto3

        s3 = boto3.client(
            "s3", endpoint_url=s3_server.endpoint, aws_access_key_id="testing",
            aws_secret_access_key="testing", region_name="us-east-1",
        )  # fmt: skip
        backup = s3.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
        with zipfile.ZipFile(io.BytesIO(backup)) as zf:
            manifest = json.loads(zf.read("task.json"))
            media_members = [n for n in zf.namelist() if n.endswith(".jpg")]
        assert manifest["data"]["storage"] == ("cloud_storage" if lightweight else "local")
        assert len(media_members) == (0 if lightweight else 3)
        r = api.post(
            "/api/tasks/backup/",
            params={"location": "cloud_storage", "cloud_storage_id": storage_id, "filename": key},
        )
        assert r.status_code == 202, r.text
        done = _wait(api, r.json()["rq_id"])
        assert done["status"] == "finished", done
        restored = client.tasks.retrieve(done["result_id"])
        assert [f.name for f in restored.get_frames_info()] == before["frames"]
        if not lightweight:
            # the media travelled inside the backup: the copy stands alone
            assert _state(client, restored.id) == before
        else:
            after = _state_without_frames(client, restored.id)
            assert after == {k: v for k, v in before.items() if k != "bytes"}


def _state_without_frames(client: Client, task_id: int) -> dict[str, Any]:
    """A lightweight restore is not attached to any cloud storage (as in CVAT): its frames
    cannot be read until one is attached, everything else is there."""
    task = client.tasks.retrieve(task_id)
    names = {lbl.id: lbl.name for lbl in task.get_labels()}
    ann = task.get_annotations()
    return {
        "name": task.name,
        "size": task.size,
        "frames": [f.name for f in task.get_frames_info()],
        "jobs": [(j.start_frame, j.stop_frame, j.status) for j in task.get_jobs()],
        "tags": sorted((t.frame, names[t.label_id]) for t in ann.tags),
        "shapes": sorted(
            (s.frame, names[s.label_id], tuple(s.points), tuple(a.value for a in s.attributes))
            for s in ann.shapes
        ),
        "tracks": sorted((t.frame, names[t.label_id], len(t.shapes)) for t in ann.tracks),
    }
