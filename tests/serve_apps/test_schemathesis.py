"""Property-based fuzzing of the served OpenAPI with schemathesis: every operation in
``/api/schema`` is exercised, and no request produces a server error (5xx).

Each operation gets generated requests (schemathesis, bounded by ``EXAMPLES``), half of
them with path ids that name real objects of a seeded world (organization, project, tasks
with and without data, job, label, issue, comment, guide, asset, access token, member,
invitation, cloud storage on an S3 emulator, function, background requests, a TUS upload),
so that requests get past the 404 of a random id; and one example built from the same world,
as an OpenAPI ``example`` would be, for operations whose bodies name other objects (an
issue's job, a login's password), which generated data cannot guess. An operation counts as
exercised when at least one of its requests succeeded (2xx/3xx). Writes run against a fresh
world each, so that a deleted object does not starve the operations after it; generated ids
that happen to name the caller or the shared task with frames are pointed at the world's own
objects instead.
"""

from __future__ import annotations

import base64
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck
from hypothesis import strategies as st

from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app
from cvat_ray.serve_apps.deploy import builtin_spec_dir
from cvat_ray.storage.db import Database
from cvat_ray.storage.functions.spec import load_spec_file
from cvat_ray.storage.models import User
from cvat_ray.storage.services import lambda_functions
from cvat_ray.storage.services.authn import start_session
from tests.cloud_servers import StorageServer, put_object
from tests.conftest import PASSWORD, Account, make_account
from tests.factories import LABELS, Deferred, add_frames, images
from tests.media_files import image_bytes

# Generated requests per operation (half with seeded path ids): enough to reach each
# operation's branches, few enough for a 2-core CI box.
EXAMPLES = 10
# Annotation bodies (LabeledData: shapes, tracks, their elements) are slow to generate; their
# validation is tested case by case in test_annotations.py.
FEWER = {
    f"{method} /api/{kind}/{{{kind[:-1]}_id}}/annotations": 4
    for method in ("PUT", "PATCH")
    for kind in ("jobs", "tasks")
}
READS = frozenset({"GET", "HEAD", "OPTIONS"})
# operations that end the caller's session(s): each of their requests gets a new one
ENDS_SESSIONS = frozenset({"POST /api/auth/logout", "POST /api/auth/password/change"})
FUNCTION = "colour-detector"
_names = itertools.count()
# TUS PATCH bodies are raw bytes, sent as schemathesis sends application/octet-stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


def _ok(response: Any, what: str) -> Any:
    assert response.status_code < 300, f"{what}: {response.status_code} {response.text[:300]}"
    return response.json() if response.content else None


@dataclass
class Seeder:
    """Makes objects through the API as the admin: the shared ones that are costly to make
    (a project with a task with uploaded frames) once, worlds (:class:`World`) on demand."""

    client: TestClient
    db: Database
    admin: Account
    s3: StorageServer
    shared: dict[str, Any] = field(default_factory=dict)
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def new_session(self) -> None:
        # a password change ends the admin's other sessions: each world starts a new one
        self.token = _fresh_token(self.db, self.admin.id)

    def post(self, url: str, what: str, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        return _ok(self.client.post(url, headers={**self.auth, **(headers or {})}, **kw), what)

    def get(self, url: str, what: str) -> Any:
        return _ok(self.client.get(url, headers=self.auth), what)

    def first(self, url: str, what: str) -> Any:
        return self.get(url, what)["results"][0]

    def seed_shared(self) -> None:
        self.new_session()
        project = self.post(
            "/api/projects", "project", json={"name": "d", "labels": [{"name": "red"}]}
        )
        task = self.post("/api/tasks", "task", json={"name": "data", "project_id": project["id"]})
        url = f"/api/tasks/{task['id']}/data"
        self.post(url, "upload start", headers={"Upload-Start": ""})
        files = {f"client_files[{i}]": (n, b) for i, (n, b) in enumerate(images(3).items())}
        self.post(url, "upload", headers={"Upload-Multiple": ""}, files=files)
        rq = self.post(url, "upload finish", headers={"Upload-Finish": ""}, json={})
        self.wait(rq["rq_id"])
        put_object(self.s3, "fuzz/a.jpg", image_bytes(32, 24))  # for storage previews
        self.shared = {
            "data_project": project["id"],
            "data_task": task["id"],
            "data_job": self.first(f"/api/jobs?task_id={task['id']}", "jobs")["id"],
            "data_label": self.first(f"/api/labels?project_id={project['id']}", "labels")["id"],
            "rq_id": rq["rq_id"],
        }

    def wait(self, rq_id: str) -> None:
        deadline = time.monotonic() + 60
        while (status := self.get(f"/api/requests/{rq_id}", "request")["status"]) not in (
            "finished",
            "failed",
        ):
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        assert status == "finished", status

    def storage_body(self) -> dict[str, str]:
        return {
            "provider_type": self.s3.provider,
            "resource": self.s3.bucket,
            "display_name": f"bucket {next(_names)}",
            **self.s3.fields,
        }

    def world(self) -> World:
        self.new_session()
        return World(self, next(_names))


class World:
    """Real objects behind the path parameters (and what examples name), each made through
    the API the first time something asks for it: ``world["task_id"]``."""

    def __init__(self, seeder: Seeder, n: int) -> None:
        self.seeder = seeder
        self.n = n
        self.made: dict[str, Any] = {"func_id": FUNCTION}
        self.makers: dict[str, Callable[[], dict[str, Any]]] = {}
        for maker, names in (
            (self._victim, ("victim", "user_id")),
            (self._org, ("org_id", "slug", "membership_id")),
            (self._invitation, ("key", "invitee")),
            (self._project, ("project_id", "label_id")),
            (self._task, ("task_id", "job_id")),
            (self._bare_task, ("bare_task",)),
            (self._issue, ("issue_id", "comment_id")),
            (self._guide, ("guide_id",)),
            (self._asset, ("uuid", "png")),
            (self._token, ("token_id", "token_value")),
            (self._quality, ("settings_id",)),
            (self._storage, ("storage_id",)),
            (self._lambda_request, ("request_id",)),
            (self._upload, ("upload_id",)),
            (self._webhook, ("webhook_id", "webhook_body")),
            (self._delivery, ("delivery_id",)),
            (self._task_backup, ("task_backup_rq", "task_zip")),
            (self._project_backup, ("project_backup_rq", "project_zip")),
            (self._backup_uploads, ("task_backup_upload", "project_backup_upload")),
            (self._dataset_exports, ("task_export_rq", "job_export_rq", "project_export_rq")),
            (self._dataset_uploads, ("task_import_upload", "job_import_upload")),
            (self._project_import_upload, ("project_import_upload",)),
            (self._events_export, ("events_rq",)),
        ):
            self.makers.update(dict.fromkeys(names, maker))

    def __getitem__(self, name: str) -> Any:
        if name not in self.made:
            self.made.update(self.makers[name]())
        return self.made[name]

    def _victim(self) -> dict[str, Any]:
        # the user that user and membership operations act on (never the caller)
        victim = make_account(self.seeder.db, f"victim{self.n}")
        return {"victim": victim, "user_id": victim.id}

    def _org(self) -> dict[str, Any]:
        s, slug, victim = self.seeder, f"org{self.n}", self["victim"]
        org = s.post("/api/organizations", "org", json={"slug": slug})
        invitation = s.post(
            f"/api/invitations?org={slug}",
            "invitation",
            json={"role": "worker", "email": f"{victim.username}@example.com"},
        )
        accept = f"/api/invitations/{invitation['key']}/accept"
        _ok(s.client.post(accept, headers={"Authorization": f"Token {victim.token}"}), "join")
        member = s.first(f"/api/memberships?org={slug}&user={victim.username}", "members")
        return {"org_id": org["id"], "slug": slug, "membership_id": member["id"]}

    def _invitation(self) -> dict[str, Any]:
        invitee = make_account(self.seeder.db, f"invitee{self.n}")
        invitation = self.seeder.post(
            f"/api/invitations?org={self['slug']}",
            "invitation",
            json={"role": "worker", "email": f"{invitee.username}@example.com"},
        )
        return {"key": invitation["key"], "invitee": invitee}

    def _project(self) -> dict[str, Any]:
        s = self.seeder
        project = s.post("/api/projects", "project", json={"name": "p", "labels": LABELS})
        label = s.first(f"/api/labels?project_id={project['id']}", "labels")
        return {"project_id": project["id"], "label_id": label["id"]}

    def _task(self) -> dict[str, Any]:
        s = self.seeder
        task = s.post("/api/tasks", "task", json={"name": "t", "project_id": self["project_id"]})
        add_frames(s.db, task["id"], 2)
        return {
            "task_id": task["id"],
            "job_id": s.first(f"/api/jobs?task_id={task['id']}", "j")["id"],
        }

    def _bare_task(self) -> dict[str, Any]:
        task = self.seeder.post("/api/tasks", "task", json={"name": "b", "labels": LABELS})
        return {"bare_task": task["id"]}

    def _issue(self) -> dict[str, Any]:
        s = self.seeder
        issue = s.post(
            "/api/issues",
            "issue",
            json={"job": self["job_id"], "frame": 0, "position": [1, 2], "message": "m"},
        )
        comment = s.first(f"/api/comments?issue_id={issue['id']}", "comments")
        return {"issue_id": issue["id"], "comment_id": comment["id"]}

    def _guide(self) -> dict[str, Any]:
        body = {"task_id": self["task_id"], "markdown": "m"}
        return {"guide_id": self.seeder.post("/api/guides", "guide", json=body)["id"]}

    def _asset(self) -> dict[str, Any]:
        png = image_bytes(8, 8, fmt="PNG")
        asset = self.seeder.post(
            "/api/assets",
            "asset",
            data={"guide_id": str(self["guide_id"])},
            files={"file": ("a.png", png, "image/png")},
        )
        return {"uuid": asset["uuid"], "png": png}

    def _token(self) -> dict[str, Any]:
        token = self.seeder.post("/api/auth/access_tokens", "token", json={"name": "t"})
        return {"token_id": token["id"], "token_value": token["value"]}

    def _quality(self) -> dict[str, Any]:
        url = f"/api/quality/settings?task_id={self['task_id']}"
        return {"settings_id": self.seeder.first(url, "quality")["id"]}

    def _storage(self) -> dict[str, Any]:
        s = self.seeder
        return {"storage_id": s.post("/api/cloudstorages", "storage", json=s.storage_body())["id"]}

    def _lambda_request(self) -> dict[str, Any]:
        # queued for good: the app's launcher defers auto-annotation runs
        body = {"function": FUNCTION, "task": self["task_id"], "mapping": {"red": {"name": "cat"}}}
        return {"request_id": self.seeder.post("/api/lambda/requests", "run", json=body)["id"]}

    def _upload(self) -> dict[str, Any]:
        s = self.seeder
        url = f"/api/tasks/{self['bare_task']}/data"
        s.post(url, "upload start", headers={"Upload-Start": ""})
        response = s.client.post(
            url,
            headers={
                **s.auth,
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "100",
                "Upload-Metadata": f"filename {base64.b64encode(b'a.jpg').decode()}",
            },
        )
        _ok(response, "tus create")
        return {"upload_id": response.headers["Location"].rstrip("/").rsplit("/", 1)[1]}

    def _webhook(self) -> dict[str, Any]:
        s = self.seeder
        events = s.get("/api/webhooks/events?type=project", "events")["events"]
        body = {
            "target_url": "http://x.test/hook",  # .test never resolves: deliveries fail fast
            "type": "project",
            "project_id": self["project_id"],
            "events": [events[0]["key"]],
        }
        return {
            "webhook_id": s.post("/api/webhooks", "webhook", json=body)["id"],
            "webhook_body": body,
        }

    def _delivery(self) -> dict[str, Any]:
        ping = self.seeder.post(f"/api/webhooks/{self['webhook_id']}/ping", "ping")
        return {"delivery_id": ping["id"]}

    def _backup(self, kind: str, object_id: int) -> tuple[str, bytes]:
        s = self.seeder
        rq = s.post(f"/api/{kind}s/{object_id}/backup/export", "backup export")["rq_id"]
        s.wait(rq)
        url = f"/api/{kind}s/{object_id}/backup/download?rq_id={rq}"
        response = s.client.get(url, headers=s.auth)
        assert response.status_code == 200, response.text[:300]
        return rq, response.content

    def _task_backup(self) -> dict[str, Any]:
        rq, zipped = self._backup("task", self.seeder.shared["data_task"])
        return {"task_backup_rq": rq, "task_zip": zipped}

    def _project_backup(self) -> dict[str, Any]:
        rq, zipped = self._backup("project", self.seeder.shared["data_project"])
        return {"project_backup_rq": rq, "project_zip": zipped}

    def _dataset_exports(self) -> dict[str, Any]:
        s, made = self.seeder, {}
        for kind in ("task", "job", "project"):
            url = f"/api/{kind}s/{s.shared[f'data_{kind}']}/dataset/export?format={EXPORT_FORMAT}"
            rq = s.post(url, "dataset export")["rq_id"]
            s.wait(rq)
            made[f"{kind}_export_rq"] = rq
        return made

    def _events_export(self) -> dict[str, Any]:
        rq = self.seeder.post("/api/events/export", "events export")["rq_id"]
        self.seeder.wait(rq)
        return {"events_rq": rq}

    def _import_upload(self, url: str) -> str:
        s = self.seeder
        s.post(url, "import upload start", headers={"Upload-Start": ""})
        response = s.client.post(
            url,
            headers={
                **s.auth,
                "Tus-Resumable": "1.0.0",
                "Upload-Length": "100",
                "Upload-Metadata": f"filename {base64.b64encode(b'a.xml').decode()}",
            },
        )
        _ok(response, "import tus create")
        return str(response.headers["Location"].rstrip("/").rsplit("/", 1)[1])

    def _dataset_uploads(self) -> dict[str, Any]:
        query = f"?format={IMPORT_FORMAT}"
        return {
            "task_import_upload": self._import_upload(
                f"/api/tasks/{self['task_id']}/annotations{query}"
            ),
            "job_import_upload": self._import_upload(
                f"/api/jobs/{self['job_id']}/annotations{query}"
            ),
        }

    def _project_import_upload(self) -> dict[str, Any]:
        url = f"/api/projects/{self['project_id']}/dataset?format={IMPORT_FORMAT}"
        return {"project_import_upload": self._import_upload(url)}

    def _backup_uploads(self) -> dict[str, Any]:
        s, made = self.seeder, {}
        for kind in ("task", "project"):
            url = f"/api/{kind}s/backup"
            s.post(url, "backup upload start", headers={"Upload-Start": ""})
            response = s.client.post(
                url,
                headers={
                    **s.auth,
                    "Tus-Resumable": "1.0.0",
                    "Upload-Length": "100",
                    "Upload-Metadata": f"filename {base64.b64encode(b'b.zip').decode()}",
                },
            )
            _ok(response, "backup tus create")
            upload = response.headers["Location"].rstrip("/").rsplit("/", 1)[1]
            made[f"{kind}_backup_upload"] = upload
        return made


EXPORT_FORMAT = "CVAT for images 1.1"
IMPORT_FORMAT = "CVAT 1.1"
ANNOTATIONS_XML = b"<annotations><version>1.1</version></annotations>"
Example = dict[str, Any]
Shared = dict[str, Any]

# One request per operation whose body names objects of the world (what generated data
# cannot guess), or whose path must name the shared task with frames; path ids not given
# here come from the world too.
EXPLICIT: dict[str, Callable[[World, Shared], Example]] = {
    "GET /api/auth/access_tokens/self": lambda w, _: {
        "authorization": f"Bearer {w['token_value']}"
    },
    "GET /api/jobs/{job_id}/data": lambda _, s: {
        "path_parameters": {"job_id": s["data_job"]},
        "query": {"type": "frame", "number": 0},
    },
    "GET /api/jobs/{job_id}/preview": lambda _, s: {"path_parameters": {"job_id": s["data_job"]}},
    "GET /api/projects/{project_id}/preview": lambda _, s: {
        "path_parameters": {"project_id": s["data_project"]}
    },
    "GET /api/requests/{request_id}": lambda _, s: {"path_parameters": {"request_id": s["rq_id"]}},
    "GET /api/tasks/{task_id}/data": lambda _, s: {
        "path_parameters": {"task_id": s["data_task"]},
        "query": {"type": "frame", "number": 0},
    },
    "GET /api/tasks/{task_id}/preview": lambda _, s: {
        "path_parameters": {"task_id": s["data_task"]}
    },
    "POST /api/auth/login": lambda w, _: {
        "body": {"username": w["victim"].username, "password": PASSWORD}
    },
    "POST /api/auth/password/change": lambda *_: {
        "body": {"old_password": PASSWORD, "new_password1": PASSWORD, "new_password2": PASSWORD}
    },
    "POST /api/auth/register": lambda w, _: {
        "body": {
            "username": f"new{w.n}",
            "email": f"new{w.n}@example.com",
            "password1": PASSWORD,
            "password2": PASSWORD,
        }
    },
    "POST /api/projects": lambda *_: {"body": {"name": "p", "labels": [{"name": "a"}]}},
    "POST /api/tasks": lambda *_: {"body": {"name": "t", "labels": [{"name": "a"}]}},
    "POST /api/organizations": lambda w, _: {"body": {"slug": f"new{w.n}"}},
    "POST /api/issues": lambda w, _: {
        "body": {"job": w["job_id"], "frame": 0, "position": [1, 2], "message": "m"}
    },
    "POST /api/comments": lambda w, _: {"body": {"issue": w["issue_id"], "message": "m"}},
    "POST /api/guides": lambda w, _: {"body": {"task_id": w["bare_task"], "markdown": "m"}},
    "POST /api/assets": lambda w, _: {
        "body": {"file": image_bytes(8, 8, fmt="PNG"), "guide_id": w["guide_id"]},
        "media_type": "multipart/form-data",
    },
    "POST /api/invitations": lambda w, _: {
        "body": {"role": "worker", "email": f"{w['invitee'].username}@example.com"},
        "headers": {"X-Organization": w["slug"]},
    },
    "PATCH /api/memberships/{membership_id}": lambda *_: {"body": {"role": "supervisor"}},
    "POST /api/cloudstorages": lambda w, _: {"body": w.seeder.storage_body()},
    "PATCH /api/cloudstorages/{storage_id}": lambda *_: {"body": {"display_name": "renamed"}},
    "POST /api/lambda/functions/{func_id}": lambda _, s: {
        "body": {"task": s["data_task"], "frame": 0}
    },
    # the world's own task: the shared one may hold a run (one per task) from another operation
    "POST /api/lambda/requests": lambda w, _: {
        "body": {"function": FUNCTION, "task": w["task_id"], "mapping": {"red": {"name": "cat"}}}
    },
    "POST /api/lambda/runs": lambda _, s: {
        "body": {"function": FUNCTION, "tasks": [s["data_task"]]}
    },
    "POST /api/tasks/{task_id}/data": lambda w, _: {
        "path_parameters": {"task_id": w["bare_task"]},
        "headers": {"Upload-Start": ""},
    },
    "PATCH /api/tasks/{task_id}/data/{upload_id}": lambda w, _: {
        "path_parameters": {"task_id": w["bare_task"], "upload_id": w["upload_id"]},
        "headers": {"Upload-Offset": "0", "Tus-Resumable": "1.0.0"},
        "body": b"x" * 10,
        "media_type": "application/offset+octet-stream",
    },
    "HEAD /api/tasks/{task_id}/data/{upload_id}": lambda w, _: {
        "path_parameters": {"task_id": w["bare_task"], "upload_id": w["upload_id"]}
    },
    "PATCH /api/tasks/backup/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["task_backup_upload"]},
        "headers": {"Upload-Offset": "0", "Tus-Resumable": "1.0.0"},
        "body": b"x" * 10,
        "media_type": "application/offset+octet-stream",
    },
    "HEAD /api/tasks/backup/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["task_backup_upload"]}
    },
    "GET /api/tasks/{task_id}/backup/download": lambda w, s: {
        "path_parameters": {"task_id": s["data_task"]},
        "query": {"rq_id": w["task_backup_rq"]},
    },
    "POST /api/tasks/backup": lambda w, _: {
        "body": {"task_file": w["task_zip"]},
        "media_type": "multipart/form-data",
    },
    "PATCH /api/projects/backup/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["project_backup_upload"]},
        "headers": {"Upload-Offset": "0", "Tus-Resumable": "1.0.0"},
        "body": b"x" * 10,
        "media_type": "application/offset+octet-stream",
    },
    "HEAD /api/projects/backup/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["project_backup_upload"]}
    },
    "GET /api/projects/{project_id}/backup/download": lambda w, s: {
        "path_parameters": {"project_id": s["data_project"]},
        "query": {"rq_id": w["project_backup_rq"]},
    },
    "POST /api/projects/backup": lambda w, _: {
        "body": {"project_file": w["project_zip"]},
        "media_type": "multipart/form-data",
    },
    "POST /api/tasks/{task_id}/dataset/export": lambda *_: {"query": {"format": EXPORT_FORMAT}},
    "GET /api/tasks/{task_id}/dataset/download": lambda w, s: {
        "path_parameters": {"task_id": s["data_task"]},
        "query": {"rq_id": w["task_export_rq"]},
    },
    "POST /api/tasks/{task_id}/annotations": lambda *_: {
        "query": {"format": IMPORT_FORMAT},
        "body": {"annotation_file": ANNOTATIONS_XML},
        "media_type": "multipart/form-data",
    },
    "PATCH /api/tasks/{task_id}/annotations/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["task_import_upload"]},
        "headers": {"Upload-Offset": "0", "Tus-Resumable": "1.0.0"},
        "body": b"x" * 10,
        "media_type": "application/offset+octet-stream",
    },
    "HEAD /api/tasks/{task_id}/annotations/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["task_import_upload"]}
    },
    "POST /api/jobs/{job_id}/dataset/export": lambda *_: {"query": {"format": EXPORT_FORMAT}},
    "GET /api/jobs/{job_id}/dataset/download": lambda w, s: {
        "path_parameters": {"job_id": s["data_job"]},
        "query": {"rq_id": w["job_export_rq"]},
    },
    "POST /api/jobs/{job_id}/annotations": lambda *_: {
        "query": {"format": IMPORT_FORMAT},
        "body": {"annotation_file": ANNOTATIONS_XML},
        "media_type": "multipart/form-data",
    },
    "PATCH /api/jobs/{job_id}/annotations/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["job_import_upload"]},
        "headers": {"Upload-Offset": "0", "Tus-Resumable": "1.0.0"},
        "body": b"x" * 10,
        "media_type": "application/offset+octet-stream",
    },
    "HEAD /api/jobs/{job_id}/annotations/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["job_import_upload"]}
    },
    "POST /api/projects/{project_id}/dataset/export": lambda *_: {
        "query": {"format": EXPORT_FORMAT}
    },
    "GET /api/projects/{project_id}/dataset/download": lambda w, s: {
        "path_parameters": {"project_id": s["data_project"]},
        "query": {"rq_id": w["project_export_rq"]},
    },
    "POST /api/projects/{project_id}/dataset": lambda *_: {
        "query": {"format": IMPORT_FORMAT},
        "body": {"dataset_file": ANNOTATIONS_XML},
        "media_type": "multipart/form-data",
    },
    "PATCH /api/projects/{project_id}/dataset/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["project_import_upload"]},
        "headers": {"Upload-Offset": "0", "Tus-Resumable": "1.0.0"},
        "body": b"x" * 10,
        "media_type": "application/offset+octet-stream",
    },
    "HEAD /api/projects/{project_id}/dataset/{upload_id}": lambda w, _: {
        "path_parameters": {"upload_id": w["project_import_upload"]}
    },
    "GET /api/events/download": lambda w, _: {"query": {"rq_id": w["events_rq"]}},
    "POST /api/invitations/{key}/accept": lambda w, _: {"as": w["invitee"]},
    "POST /api/invitations/{key}/decline": lambda w, _: {"as": w["invitee"]},
    "POST /api/webhooks": lambda w, _: {"body": w["webhook_body"]},
    "PUT /api/webhooks/{webhook_id}": lambda w, _: {"body": w["webhook_body"]},
    "PATCH /api/jobs/{job_id}/annotations": lambda *_: {"query": {"action": "create"}, "body": {}},
    "PATCH /api/tasks/{task_id}/annotations": lambda *_: {
        "query": {"action": "create"},
        "body": {},
    },
}


def _fresh_token(db: Database, user_id: int) -> str:
    with db.session() as session:
        user = session.get(User, user_id)
        assert user is not None
        return start_session(session, user, 600, "token").key


@dataclass
class Tally:
    exercised: set[str] = field(default_factory=set)
    by_generation: set[str] = field(default_factory=set)
    failures: list[str] = field(default_factory=list)
    # what the explicit example of an operation that was never exercised got
    refused: dict[str, str] = field(default_factory=dict)


class Drained(Deferred):
    """Auto-annotation requests stay queued (so that they can be read and cancelled); the
    rest of the background work (task data, dataset runs) runs on threads that the test lets
    finish after each operation, so that no operation races the work of the one before."""

    def drain(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:  # made again on next use
            pool.shutdown(wait=True)


@pytest.fixture
def launcher(settings: Settings, db: Database) -> Drained:
    return Drained(settings, db)


@pytest.fixture
def fuzz_app(
    settings: Settings, db: Database, s3_server: StorageServer, launcher: Drained
) -> Iterator[FastAPI]:
    settings.media.remote_allowlist = "127.0.0.1/32"
    with db.session() as session:
        spec = load_spec_file(builtin_spec_dir() / f"{FUNCTION}.yaml")
        lambda_functions.register(session, spec, "builtin")
    yield build_app(settings, db, launcher)


def test_every_operation_without_server_errors(
    fuzz_app: FastAPI, launcher: Drained, db: Database, admin: Account, s3_server: StorageServer
) -> None:
    tally = Tally()
    with TestClient(fuzz_app) as client:
        seeder = Seeder(client, db, admin, s3_server)
        seeder.seed_shared()
        shared_world = seeder.world()
        schema = schemathesis.openapi.from_asgi("/api/schema", fuzz_app)
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        # reads first, on one world; each write on a world of its own
        operations.sort(key=lambda op: op.method.upper() not in READS)
        for operation in operations:
            method = operation.method.upper()
            world = shared_world if method in READS else seeder.world()
            _fuzz(operation, world, seeder, tally)
            launcher.drain()
    total = len(operations)
    print(
        f"\nschemathesis: {len(tally.exercised)}/{total} operations exercised, "
        f"{len(tally.failures)} server errors "
        f"({len(tally.by_generation)} by generated requests alone)"
    )
    assert not tally.failures, "\n".join(tally.failures[:20])
    missing = sorted(
        f"{op.method.upper()} {op.path}" for op in operations if _key(op) not in tally.exercised
    )
    assert not missing, "operations never answered 2xx/3xx: " + "; ".join(
        f"{m} (example: {tally.refused.get(m, 'none')})" for m in missing
    )


def _key(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


def _fuzz(operation: Any, world: World, seeder: Seeder, tally: Tally) -> None:
    key = _key(operation)
    names = [p.name for p in operation.path_parameters]
    explicit = EXPLICIT.get(key)
    example = explicit(world, seeder.shared) if explicit is not None else None
    given = (example or {}).get("path_parameters", {})
    seeded = {name: given[name] if name in given else world[name] for name in names}

    # what generated ids must not touch: the caller, and the objects all worlds share
    spared = {
        "user_id": seeder.admin.id,
        "project_id": seeder.shared["data_project"],
        "task_id": seeder.shared["data_task"],
        "job_id": seeder.shared["data_job"],
        "label_id": seeder.shared["data_label"],
    }

    session = _fresh_token(seeder.db, seeder.admin.id)

    def send(
        case: schemathesis.Case, caller: Account, generated: bool, authorization: str = ""
    ) -> None:
        for name, kept in spared.items():
            if generated and case.path_parameters and case.path_parameters.get(name) == kept:
                case.path_parameters[name] = world[name]
        if not authorization:
            if key in ENDS_SESSIONS or caller is not seeder.admin:
                authorization = f"Token {_fresh_token(seeder.db, caller.id)}"
            else:
                authorization = f"Token {session}"
        try:
            response = case.call(headers={"Authorization": authorization})
        except Exception as exc:  # the test client re-raises what the app did not handle
            tally.failures.append(f"{case.method} {case.formatted_path} -> {exc!r}"[:500])
            return
        if response.status_code >= 500:
            tally.failures.append(
                f"{case.method} {case.formatted_path} query={case.query} -> "
                f"{response.status_code}: {response.text[:300]}"
            )
        elif response.status_code < 400:
            tally.exercised.add(key)
            if generated:
                tally.by_generation.add(key)
        elif not generated:
            tally.refused[key] = f"{response.status_code} {response.text[:200]}"

    # the example first, on the untouched world
    if example is not None:
        example = dict(example)
        caller: Account = example.pop("as", seeder.admin)
        authorization: str = example.pop("authorization", "")
        example["path_parameters"] = seeded
        if "body" in example:
            example.setdefault("media_type", "application/json")
        send(operation.Case(**example), caller, generated=False, authorization=authorization)

    strategy = (
        st.one_of(operation.as_strategy(), operation.as_strategy(path_parameters=seeded))
        if names
        else operation.as_strategy()
    )

    @hypothesis.settings(
        max_examples=FEWER.get(key, EXAMPLES),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.generate],  # nothing raises, so nothing to shrink
    )
    @hypothesis.given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        send(case, seeder.admin, generated=True)

    run()
    if key not in tally.exercised and example is None:
        # the world's own objects, with the schema's defaults everywhere else
        send(operation.Case(path_parameters=seeded), seeder.admin, generated=False)
