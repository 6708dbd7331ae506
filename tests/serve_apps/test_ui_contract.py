"""What CVAT's own web UI asks of the server (2.73, observed in a browser): the calls of
``reference/cvat-ui-calls.md``, with the status and the fields the UI reads.

``test_ui_session`` plays the core workflow the way the UI does it (session cookie and CSRF
header, the chunked upload, drawing and saving a shape, reloading it); the other tests pin
the calls that used to break it: the health check, ``HEAD`` on every ``GET`` route, plugins,
the logo, user agreements, empty previews, guides and quality settings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from cvat_ray.cluster.settings import Settings, UserAgreement
from cvat_ray.serve_apps import health
from cvat_ray.storage.db import Database
from tests.conftest import PASSWORD, Account
from tests.factories import api_routes, images, route_objects, upload, wait
from tests.media_files import image_bytes

LABELS = [{"name": "car", "color": "#ff0000", "attributes": []}]


@pytest.fixture
async def objects(client_for, db: Database, admin: Account) -> dict[str, str]:
    """One object behind each path parameter (as the route-guard walk has)."""
    return await route_objects(client_for, db, admin)


# --------------------------------------------------------------------------- before login


async def test_health_check_answers_the_ui(anon: httpx.AsyncClient) -> None:
    """The UI retries this until it answers 200, and shows nothing else before."""
    for url in ("/api/server/health/?format=json", "/api/server/health?format=json"):
        r = await anon.get(url)
        assert r.status_code == 200, r.text
        assert r.json() == {"DatabaseBackend": "working"}
    r = await anon.get("/api/server/health/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "DatabaseBackend" in r.text and "working" in r.text
    r = await anon.get("/api/server/health/", headers={"Accept": "application/json"})
    assert r.json() == {"DatabaseBackend": "working"}


@pytest.fixture
def redis_settings(settings: Settings) -> Settings:
    settings.cache.backend = "redis"
    settings.cache.redis_url = "redis://127.0.0.1:6379/0"
    settings.redis.url = "redis://127.0.0.1:6379/0"
    return settings


async def test_health_checks_redis_when_configured(
    redis_settings: Settings, anon: httpx.AsyncClient
) -> None:
    r = await anon.get("/api/server/health/?format=json")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "DatabaseBackend": "working",
        "Cache backend: media": "working",
        "Redis": "working",
    }


async def test_failing_checks_give_500_and_no_internals(
    settings: Settings, anon: httpx.AsyncClient, db: Database
) -> None:
    # Nothing listens on port 1: the connection is refused at once.
    settings.redis.url = "redis://127.0.0.1:1/0"
    r = await anon.get("/api/server/health/?format=json")
    assert r.status_code == 500
    assert r.json() == {"DatabaseBackend": "working", "Redis": "unavailable: Redis error"}
    assert "127.0.0.1" not in r.text and "Connection" not in r.text


async def test_database_and_ray_failures_are_reported(tmp_path: Path) -> None:
    broken = Database("postgresql+psycopg2://nobody@127.0.0.1:1/none")
    try:
        found = health.checks(Settings(), broken, in_ray=False)
        assert await health.run_checks(found) == {"DatabaseBackend": "unavailable: database error"}
    finally:
        broken.dispose()
    # Inside Ray the cluster is checked too. This process has no Ray unless the session's
    # test cluster was started earlier in the run (then the check works).
    import ray

    expected = "working" if ray.is_initialized() else "unavailable: Ray cluster error"
    working = Database(f"sqlite:///{tmp_path / 'h.db'}")
    try:
        found = health.checks(Settings(), working, in_ray=True)
        assert await health.run_checks(found) == {
            "DatabaseBackend": "working",
            "RayCluster": expected,
        }
    finally:
        working.dispose()


async def test_about_logo_plugins_and_agreements(
    settings: Settings, anon: httpx.AsyncClient
) -> None:
    about = (await anon.get("/api/server/about")).json()
    assert about["logo_url"] == "http://testserver/static/logo.svg"
    assert about["version"] and about["name"]
    r = await anon.get("/static/logo.svg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert r.content.startswith(b"<svg")
    assert (await anon.get("/static/%2E%2E%2Fcompat.py")).status_code == 404
    assert (await anon.get("/static/nothing.js")).status_code == 404

    r = await anon.get("/api/server/plugins")
    assert r.status_code == 200
    assert r.json() == {"ANALYTICS": True, "MODELS": True}  # the built-in /analytics page

    r = await anon.get("/api/user-agreements")
    assert r.status_code == 200 and r.json() == []
    settings.server.public_url = "https://cvat.example.com/"
    settings.server.user_agreements = [
        UserAgreement(name="terms", url="https://example.com/terms", required=True)
    ]
    assert (await anon.get("/api/server/about")).json()["logo_url"] == (
        "https://cvat.example.com/static/logo.svg"
    )
    assert (await anon.get("/api/user-agreements")).json() == [
        {
            "name": "terms",
            "url": "https://example.com/terms",
            "required": True,
            "textPrefix": "",
            "urlDisplayText": "",
            "value": False,
        }
    ]


# --------------------------------------------------------------------------- HEAD


async def test_head_answers_like_get_on_every_route(
    app, client_for, objects: dict[str, str], admin: Account
) -> None:
    """Django answers HEAD wherever it answers GET; so does every GET route here."""
    api: httpx.AsyncClient = client_for(admin)
    mismatches = []
    gets = [path for method, path, _ in api_routes(app) if method == "GET"]
    assert len(gets) > 30
    for path in gets:
        url = path
        for name, value in objects.items():
            url = url.replace("{" + name + "}", value)
        got, head = await api.get(url), await api.head(url)
        same = (
            head.status_code == got.status_code
            and head.content == b""
            and head.headers.get("content-type") == got.headers.get("content-type")
        )
        if "content-length" in got.headers and got.status_code == 200:
            same = same and head.headers.get("content-length") == got.headers["content-length"]
        if not same:
            mismatches.append(f"{url}: GET {got.status_code}, HEAD {head.status_code}")
    assert not mismatches, mismatches


async def test_head_of_models_and_of_routes_without_get(
    client_for, alice: Account, anon: httpx.AsyncClient
) -> None:
    api = client_for(alice)
    # The UI sends this before listing models: 200, then the GET.
    r = await api.head("/api/lambda/functions")
    assert r.status_code == 200 and r.content == b""
    assert (await api.head("/api/server/health/?format=json")).status_code == 200
    assert (await anon.head("/api/tasks")).status_code == 401
    # HEAD where there is no GET is refused as a GET would be.
    assert (await api.head("/api/auth/login")).status_code == 405


# --------------------------------------------------------------------------- previews


async def test_empty_previews_with_prefer(client_for, alice: Account) -> None:
    api = client_for(alice)
    project = (await api.post("/api/projects", json={"name": "p", "labels": LABELS})).json()
    task = (await api.post("/api/tasks", json={"name": "t", "labels": LABELS})).json()
    prefer = {"Prefer": "handling=empty"}
    for url in (f"/api/projects/{project['id']}/preview", f"/api/tasks/{task['id']}/preview"):
        r = await api.get(url, headers=prefer)
        assert r.status_code == 204 and r.content == b"", url
        assert (await api.get(url)).status_code == 404
    assert (await api.get("/api/projects/999999/preview", headers=prefer)).status_code == 404
    outsider = await api.get(f"/api/projects/{project['id']}/preview")
    assert outsider.status_code == 404


# --------------------------------------------------------------------------- guides


def _png() -> bytes:
    return image_bytes(16, 12, fmt="PNG")


async def test_guides_and_assets(
    client_for, alice: Account, bob: Account, settings: Settings
) -> None:
    api, other = client_for(alice), client_for(bob)
    task = (await api.post("/api/tasks", json={"name": "t", "labels": LABELS})).json()
    assert task["guide_id"] is None
    r = await api.post("/api/guides", json={"task_id": task["id"], "markdown": "# Rules"})
    assert r.status_code == 201, r.text
    guide = r.json()
    assert guide["task_id"] == task["id"] and guide["project_id"] is None
    assert guide["owner"]["username"] == "alice" and guide["markdown"] == "# Rules"
    assert (await api.get(f"/api/tasks/{task['id']}")).json()["guide_id"] == guide["id"]
    job = (await api.get(f"/api/jobs?task_id={task['id']}")).json()["results"]
    assert all(j["guide_id"] == guide["id"] for j in job)
    again = await api.post("/api/guides", json={"task_id": task["id"]})
    assert again.status_code == 400 and "task_id" in again.json()
    both = await api.post("/api/guides", json={"task_id": task["id"], "project_id": 1})
    assert both.status_code == 400

    r = await api.post(
        "/api/assets",
        data={"guide_id": str(guide["id"])},
        files={"file": ("C:\\Users\\a\\rules.png", _png(), "application/octet-stream")},
    )
    assert r.status_code == 201, r.text
    asset = r.json()
    assert asset["filename"] == "rules.png" and asset["guide_id"] == guide["id"]
    r = await api.get(f"/api/assets/{asset['uuid']}")
    assert r.status_code == 200 and r.content == _png()
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-content-type-options"] == "nosniff"
    stored = settings.data_dir.resolve() / "assets" / asset["uuid"]
    assert stored.read_bytes() == _png()

    # Not an image (an SVG can carry scripts), too big, no guide, not allowed.
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    for name, data, guide_id, status in [
        ("x.svg", svg, guide["id"], 400),
        ("x.png", b"\x89PNG\r\n\x1a\n" + b"0" * (10 * 2**20), guide["id"], 413),
        ("x.png", _png(), 999999, 404),
    ]:
        r = await api.post(
            "/api/assets", data={"guide_id": str(guide_id)}, files={"file": (name, data)}
        )
        assert r.status_code == status, (name, r.text[:200])
    r = await other.post(
        "/api/assets", data={"guide_id": str(guide["id"])}, files={"file": ("x.png", _png())}
    )
    assert r.status_code == 403
    assert (await other.get(f"/api/guides/{guide['id']}")).status_code == 403
    assert (await other.get(f"/api/assets/{asset['uuid']}")).status_code == 403
    assert (await api.get("/api/assets/../../etc/passwd")).status_code == 404
    assert (await api.get("/api/assets/not-a-uuid")).status_code == 404

    # Saving text that links the image keeps it; text without it deletes it.
    link = f"![rules](/api/assets/{asset['uuid']})"
    r = await api.patch(f"/api/guides/{guide['id']}", json={"markdown": f"# Rules\n{link}"})
    assert r.status_code == 200 and link in r.json()["markdown"]
    assert (await api.get(f"/api/assets/{asset['uuid']}")).status_code == 200
    r = await api.patch(f"/api/guides/{guide['id']}", json={"markdown": "# Rules"})
    assert (await api.get(f"/api/assets/{asset['uuid']}")).status_code == 404
    assert not stored.exists()

    project = (await api.post("/api/projects", json={"name": "p", "labels": LABELS})).json()
    r = await api.post("/api/guides", json={"project_id": project["id"], "markdown": "p"})
    assert r.status_code == 201
    assert (await api.get(f"/api/projects/{project['id']}")).json()["guide_id"] == r.json()["id"]
    second = (
        await api.post(
            "/api/assets", data={"guide_id": str(r.json()["id"])}, files={"file": ("a", _png())}
        )
    ).json()
    assert (await api.delete(f"/api/guides/{r.json()['id']}")).status_code == 204
    assert not (settings.data_dir.resolve() / "assets" / second["uuid"]).exists()
    assert (await api.get(f"/api/projects/{project['id']}")).json()["guide_id"] is None


async def test_guide_readable_by_job_assignee(client_for, alice: Account, bob: Account) -> None:
    api, worker = client_for(alice), client_for(bob)
    task = (await api.post("/api/tasks", json={"name": "t", "labels": LABELS})).json()
    guide = (await api.post("/api/guides", json={"task_id": task["id"], "markdown": "x"})).json()
    assert (await worker.get(f"/api/guides/{guide['id']}")).status_code == 403
    await upload_and_wait(api, task["id"])
    job = (await api.get(f"/api/jobs?task_id={task['id']}")).json()["results"][0]
    assert (await api.patch(f"/api/jobs/{job['id']}", json={"assignee": bob.id})).status_code == 200
    assert (await worker.get(f"/api/guides/{guide['id']}")).status_code == 200
    r = await worker.patch(f"/api/guides/{guide['id']}", json={"markdown": "y"})
    assert r.status_code == 403


# --------------------------------------------------------------------------- quality


async def test_quality_settings(client_for, alice: Account, bob: Account) -> None:
    api = client_for(alice)
    project = (await api.post("/api/projects", json={"name": "p", "labels": LABELS})).json()
    task = (await api.post("/api/tasks", json={"name": "t", "project_id": project["id"]})).json()
    r = await api.get(f"/api/quality/settings?task_id={task['id']}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 1
    settings = body["results"][0]
    assert settings["task_id"] == task["id"] and settings["project_id"] is None
    assert settings["target_metric"] == "accuracy" and settings["iou_threshold"] == 0.4
    assert settings["inherit"] is True and settings["empty_is_annotated"] is False
    again = (await api.get(f"/api/quality/settings?task_id={task['id']}")).json()
    assert again["results"][0]["id"] == settings["id"]

    url = f"/api/quality/settings/{settings['id']}"
    r = await api.patch(
        url, json={"iou_threshold": 0.6, "inherit": False, "target_metric": "recall"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["iou_threshold"] == 0.6 and r.json()["inherit"] is False
    assert (await api.get(url)).json()["target_metric"] == "recall"
    for bad in (
        {"iou_threshold": 2},
        {"target_metric": "f1"},
        {"job_filter": "not json"},
        {"job_filter": json.dumps({"==": [{"var": "password"}, 1]})},
    ):
        r = await api.patch(url, json=bad)
        assert r.status_code == 400, (bad, r.text)
    assert (await api.get(url)).json()["iou_threshold"] == 0.6
    good_filter = json.dumps({"==": [{"var": "stage"}, "annotation"]})
    assert (await api.patch(url, json={"job_filter": good_filter})).status_code == 200

    aggregate = await api.get(f"/api/quality/settings?project_id={project['id']}")
    assert {(s["task_id"], s["project_id"]) for s in aggregate.json()["results"]} == {
        (None, project["id"]),
        (task["id"], None),
    }
    only = await api.get(f"/api/quality/settings?project_id={project['id']}&parent_type=project")
    assert [s["project_id"] for s in only.json()["results"]] == [project["id"]]
    assert (await api.get("/api/quality/settings?inherit=false")).json()["count"] == 1

    # The Quality page shows each field's help from the schema, by CVAT's component name.
    schema = (await api.get("/api/schema/?scheme=json")).json()
    fields = schema["components"]["schemas"]["QualitySettings"]["properties"]
    assert fields["iou_threshold"]["description"] and fields["job_filter"]["description"]

    stranger = client_for(bob)
    assert (await stranger.get(url)).status_code == 403
    assert (await stranger.patch(url, json={"iou_threshold": 0.1})).status_code == 403
    assert (await stranger.get(f"/api/quality/settings?task_id={task['id']}")).status_code == 403
    assert (await stranger.get("/api/quality/settings")).json()["count"] == 0


# --------------------------------------------------------------------------- the workflow


async def upload_and_wait(api: httpx.AsyncClient, task_id: int) -> None:
    r = await upload(api, task_id, images(3))
    assert r.status_code == 202, r.text
    assert (await wait(api, r.json()["rq_id"]))["status"] == "finished"


def _has(body: dict[str, Any], *fields: str) -> None:
    missing = [f for f in fields if f not in body]
    assert not missing, missing


async def test_ui_session(anon: httpx.AsyncClient, alice: Account, tmp_path: Path) -> None:
    """Log in, create a project and a task with data, open the job, draw, save, reload,
    finish the job, edit it, delete: the calls and fields CVAT's UI makes and reads."""
    ui = anon
    assert (await ui.get("/api/server/health/?format=json")).status_code == 200
    r = await ui.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 200, r.text
    ui.headers["X-CSRFToken"] = r.cookies["csrftoken"]

    me = (await ui.get("/api/users/self")).json()
    _has(me, "id", "username", "first_name", "last_name", "email", "groups", "is_superuser")
    assert (await ui.get("/api/server/plugins")).status_code == 200
    assert (await ui.head("/api/lambda/functions")).status_code == 200
    assert isinstance((await ui.get("/api/lambda/functions")).json(), list)
    pending = {
        "and": [
            {"==": [{"var": "user_id"}, str(me["id"])]},
            {"==": [{"var": "accepted"}, False]},
        ]
    }
    r = await ui.get("/api/invitations?page=1&page_size=11&filter=" + json.dumps(pending))
    assert r.status_code == 200 and r.json()["count"] == 0
    for url in ("/api/organizations", "/api/projects?page=1&page_size=12", "/api/requests"):
        r = await ui.get(url)
        assert r.status_code == 200, (url, r.text)

    project = await ui.post("/api/projects", json={"name": "cars", "labels": LABELS})
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    r = await ui.get(f"/api/projects/{project_id}/preview", headers={"Prefer": "handling=empty"})
    assert r.status_code == 204
    r = await ui.post("/api/tasks", json={"name": "street", "project_id": project_id})
    assert r.status_code == 201, r.text
    task = r.json()
    await upload_and_wait(ui, task["id"])

    task = (await ui.get(f"/api/tasks/{task['id']}")).json()
    _has(task, "id", "name", "size", "jobs", "labels", "guide_id", "project_id", "status")
    assert task["size"] == 3
    assert (await ui.get(f"/api/tasks/{task['id']}/preview")).status_code == 200
    quality = await ui.get(f"/api/quality/settings?task_id={task['id']}")
    assert quality.status_code == 200 and quality.json()["count"] == 1
    job = (await ui.get(f"/api/jobs?task_id={task['id']}&org=")).json()["results"][0]
    job_id = job["id"]
    _has(job, "id", "task_id", "start_frame", "stop_frame", "state", "stage", "guide_id")
    meta = (await ui.get(f"/api/jobs/{job_id}/data/meta")).json()
    _has(meta, "chunk_size", "size", "frames", "deleted_frames", "start_frame", "stop_frame")
    r = await ui.get(f"/api/jobs/{job_id}/data?type=chunk&index=0&quality=compressed")
    assert r.status_code == 200 and r.content
    label_id = (await ui.get(f"/api/labels?job_id={job_id}")).json()["results"][0]["id"]

    annotations = (await ui.get(f"/api/jobs/{job_id}/annotations")).json()
    _has(annotations, "version", "tags", "shapes", "tracks")
    box = {
        "type": "rectangle",
        "frame": 0,
        "label_id": label_id,
        "points": [10.5, 10, 40, 30],
        "occluded": False,
        "z_order": 0,
        "rotation": 0,
        "attributes": [],
        "group": 0,
        "source": "manual",
    }
    r = await ui.patch(
        f"/api/jobs/{job_id}/annotations?action=create",
        json={"version": annotations["version"], "tags": [], "shapes": [box], "tracks": []},
    )
    assert r.status_code == 200, r.text
    saved = r.json()["shapes"][0]
    assert saved["id"] and saved["points"] == box["points"]
    reloaded = (await ui.get(f"/api/jobs/{job_id}/annotations")).json()
    assert [(s["id"], s["points"]) for s in reloaded["shapes"]] == [(saved["id"], box["points"])]

    for change in ({"state": "completed"}, {"stage": "acceptance"}, {"assignee": me["id"]}):
        r = await ui.patch(f"/api/jobs/{job_id}", json=change)
        assert r.status_code == 200, (change, r.text)
    assert (await ui.get(f"/api/jobs/{job_id}")).json()["stage"] == "acceptance"
    r = await ui.patch(f"/api/tasks/{task['id']}", json={"name": "renamed"})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    assert (await ui.get("/api/auth/access_tokens?sort=-created_date")).status_code == 200

    assert (await ui.delete(f"/api/tasks/{task['id']}")).status_code == 204
    assert (await ui.delete(f"/api/projects/{project_id}")).status_code == 204
    assert (await ui.post("/api/auth/logout")).status_code == 200
    assert (await ui.get("/api/users/self")).status_code == 401
