"""cvat-sdk / cvat-cli 2.80 against our server: login, version check, projects, tasks, jobs,
labels (the core platform's part of the client contract)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cvat_sdk import Client, Config, make_client

from tests.compat.conftest import LiveServer
from tests.factories import LABELS, add_frames

pytestmark = pytest.mark.compat


def _client(server: LiveServer, tmp_path: Path) -> Client:
    # allow_unsupported_server=False turns a version mismatch into an exception.
    client = Client(
        server.url,
        config=Config(
            allow_unsupported_server=False, cache_dir=tmp_path / "cache", status_check_period=0.1
        ),
    )
    client.login((server.user.username, server.password))
    return client


def test_password_login_without_version_warning(
    live_server: LiveServer, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    with make_client(
        live_server.url, credentials=(live_server.user.username, live_server.password)
    ) as client:
        assert client.api_client.configuration.api_key["csrfHeaderAuth"]
        assert str(client.get_server_version()) == "2.80.0"
        user, _ = client.api_client.users_api.retrieve_self()
        assert user.username == live_server.user.username
        client.logout()
    assert not [r for r in caplog.records if "not compatible" in r.getMessage()]
    client = _client(live_server, tmp_path)
    client.check_server_version(fail_if_unsupported=True)


def test_access_token_login(live_server: LiveServer, tmp_path: Path) -> None:
    with _client(live_server, tmp_path) as client:
        token, _ = client.api_client.auth_api.create_access_tokens({"name": "sdk"})
        value = token.value
    with make_client(live_server.url, access_token=value) as client:
        user, _ = client.api_client.users_api.retrieve_self()
        assert user.username == live_server.user.username
        current, _ = client.api_client.auth_api.retrieve_access_tokens_self()
        assert current.name == "sdk"


def test_projects_tasks_labels_jobs(live_server: LiveServer, tmp_path: Path) -> None:
    with _client(live_server, tmp_path) as client:
        project = client.projects.create({"name": "sdk project", "labels": LABELS})
        assert project.id and project.name == "sdk project"
        task = client.tasks.create(
            {"name": "sdk task", "project_id": project.id, "segment_size": 5}
        )
        own = client.tasks.create({"name": "own labels", "labels": LABELS})
        assert {t.id for t in client.tasks.list()} >= {task.id, own.id}
        assert [t.id for t in project.get_tasks()] == [task.id]
        labels = task.get_labels()
        assert [lbl.name for lbl in labels] == ["cat", "dog", "person"]
        dog = labels[1]
        assert str(dog.attributes[0].input_type) == "select" and dog.attributes[0].values == [
            "a",
            "b",
        ]
        assert [s.name for s in labels[2].sublabels] == ["head", "hand"]

        add_frames(live_server.db, task.id, 12)
        task.fetch()
        assert task.size == 12 and task.data_chunk_size > 0
        jobs = task.get_jobs()
        assert sorted((j.start_frame, j.stop_frame) for j in jobs) == [(0, 4), (5, 9), (10, 11)]
        job = client.jobs.retrieve(jobs[0].id)
        job.update({"stage": "validation", "state": "in progress"})
        assert client.jobs.retrieve(job.id).stage == "validation"
        assert [lbl.name for lbl in job.get_labels()] == ["cat", "dog", "person"]

        task.update({"name": "renamed task"})
        assert client.tasks.retrieve(task.id).name == "renamed task"
        project.update({"name": "renamed project"})
        assert client.projects.retrieve(project.id).name == "renamed project"
        own.remove()
        project.remove()
        remaining = {t.id for t in client.tasks.list()}
        assert task.id not in remaining and own.id not in remaining
        client.tasks.remove_by_ids([task.id])  # already gone: a 404, tolerated by the SDK


def test_cli_task_ls_and_delete(live_server: LiveServer, tmp_path: Path) -> None:
    with _client(live_server, tmp_path) as client:
        task = client.tasks.create({"name": "cli task", "labels": [{"name": "a"}]})
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
        [*base, "task", "ls", "--json"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert task.id in [t["id"] for t in json.loads(out.stdout)]
    out = subprocess.run(
        [*base, "project", "ls"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    out = subprocess.run(
        [*base, "task", "delete", str(task.id)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    with _client(live_server, tmp_path) as client:
        assert task.id not in {t.id for t in client.tasks.list()}
