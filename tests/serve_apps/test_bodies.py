"""Request bodies: ``/api/schema`` describes every body (typed parameters, and the bodies
endpoints read themselves through ``openapi_extra``), and a body that does not validate gets
CVAT's 400 (``{"field.path": ["message"]}``, never FastAPI's 422)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from cvat_ray.serve_apps import bodies
from cvat_ray.serve_apps.bodies import add_described_schemas, described_body
from tests.conftest import Account
from tests.factories import new_task
from tests.media_files import image_bytes

# Operations that take no body at all (CVAT's clients send none).
NO_BODY = {
    "POST /api/auth/logout",
    "POST /api/invitations/{key}/accept",
    "POST /api/invitations/{key}/decline",
    "POST /api/invitations/{key}/resend",
    "POST /api/requests/{request_id}/cancel",
    "POST /api/webhooks/{webhook_id}/ping",
    "POST /api/webhooks/{webhook_id}/deliveries/{delivery_id}/redelivery",
    # exports take their options in the query, as CVAT's
    "POST /api/tasks/{task_id}/backup/export",
    "POST /api/projects/{project_id}/backup/export",
    "POST /api/tasks/{task_id}/dataset/export",
    "POST /api/jobs/{job_id}/dataset/export",
    "POST /api/projects/{project_id}/dataset/export",
    "POST /api/events/export",
}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _schema(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def test_every_write_body_is_described(app: FastAPI) -> None:
    schema = _schema(app)
    missing = []
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            key = f"{method.upper()} {path}"
            if method in ("post", "put", "patch") and key not in NO_BODY:
                if not operation.get("requestBody", {}).get("content"):
                    missing.append(key)
    assert not missing, missing
    # Every reference resolves, the models of the bodies read by hand included.
    components = schema["components"]["schemas"]
    unresolved = {r for r in _refs(schema) if r.split("/")[-1] not in components}
    assert not unresolved, unresolved
    content = schema["paths"]["/api/jobs/{job_id}/annotations"]["put"]["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/LabeledData"}
    shape = components["LabeledShape"]
    assert {"type", "points", "label_id", "frame", "elements"} <= set(shape["properties"])
    data = schema["paths"]["/api/tasks/{task_id}/data"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(data)
    tus = schema["paths"]["/api/tasks/{task_id}/data/{upload_id}"]["patch"]["requestBody"]
    assert "application/offset+octet-stream" in tus["content"]
    storage = schema["paths"]["/api/cloudstorages"]["post"]["requestBody"]["content"]
    assert storage["multipart/form-data"]["schema"]["$ref"].endswith("/CloudStorageWrite")
    # Query parameters and headers that used to be read by hand are declared too.
    patch = schema["paths"]["/api/tasks/{task_id}/annotations"]["patch"]
    action = next(p for p in patch["parameters"] if p["name"] == "action")
    assert action["required"] and set(action["schema"]["enum"]) == {"create", "update", "delete"}
    post_data = schema["paths"]["/api/tasks/{task_id}/data"]["post"]["parameters"]
    assert {"upload-start", "upload-multiple", "upload-finish", "upload-length"} <= {
        p["name"] for p in post_data
    }


def test_a_described_name_is_never_two_schemas() -> None:
    class Clash(BaseModel):
        a: int

    described_body({"application/json": Clash})
    try:
        openapi: dict[str, Any] = {"components": {"schemas": {"Clash": {"type": "string"}}}}
        with pytest.raises(RuntimeError, match="Clash"):
            add_described_schemas(openapi)
    finally:
        bodies._MODELS.pop("Clash")


def _fields(response: httpx.Response) -> dict[str, list[str]]:
    assert response.status_code == 400, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body, dict)
    for key, messages in body.items():
        assert isinstance(key, str)
        assert isinstance(messages, list) and all(isinstance(m, str) for m in messages), body
    return body  # type: ignore[no-any-return]


async def test_typed_bodies_answer_cvat_400s(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    body = _fields(await api.post("/api/lambda/requests", json={"task": "x"}))
    assert set(body) == {"function", "task"}
    body = _fields(await api.post("/api/lambda/requests", json=["not", "an", "object"]))
    assert list(body) == ["non_field_errors"]
    r = await api.post(
        "/api/lambda/requests", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("JSON parse error")
    body = _fields(
        await api.post("/api/lambda/functions/colour-detector", json={"pos_points": [[1, "a"]]})
    )
    assert list(body) == ["pos_points[0][1]"]
    # Every field of an online call has a default: no body is a call with defaults (which
    # gets as far as looking the function up).
    r = await api.post("/api/lambda/functions/nope")
    assert r.status_code == 404, r.text
    body = _fields(await api.post("/api/lambda/runs", json={"function": "f"}))
    assert body == {
        "non_field_errors": ["Give exactly one of 'tasks', 'project' or 'organization'."]
    }
    body = _fields(
        await api.post("/api/lambda/runs", json={"function": "f", "tasks": [1], "run": "-x"})
    )
    assert list(body) == ["run"]


async def test_form_bodies_answer_cvat_400s(client_for, alice: Account) -> None:
    api: httpx.AsyncClient = client_for(alice)
    # A cloud storage as a form (how CVAT clients send a key file) validates as JSON does.
    body = _fields(
        await api.post(
            "/api/cloudstorages",
            data={"resource": "b", "display_name": "d"},
            files={"key_file": ("key.json", b"{}")},
        )
    )
    assert set(body) == {"provider_type", "credentials_type"}
    body = _fields(
        await api.post("/api/cloudstorages", json={"provider_type": "FTP", "resource": ""})
    )
    assert {"provider_type", "resource", "display_name", "credentials_type"} <= set(body)
    png = image_bytes(8, 8, fmt="PNG")
    body = _fields(await api.post("/api/assets", data={"guide_id": "1"}))
    assert list(body) == ["file"]
    body = _fields(
        await api.post("/api/assets", data={"guide_id": "x"}, files={"file": ("a.png", png)})
    )
    assert list(body) == ["guide_id"]
    body = _fields(
        await api.post("/api/assets", data={"guide_id": str(2**40)}, files={"file": ("a.png", png)})
    )
    assert list(body) == ["guide_id"]


async def test_streamed_bodies_and_their_parameters_answer_cvat_400s(
    client_for, alice: Account
) -> None:
    api: httpx.AsyncClient = client_for(alice)
    task_id = await new_task(api)
    body = _fields(await api.patch(f"/api/tasks/{task_id}/annotations?action=replace", json={}))
    assert list(body) == ["action"]
    body = _fields(await api.patch(f"/api/tasks/{task_id}/annotations", json={}))
    assert list(body) == ["action"]
    body = _fields(
        await api.put(f"/api/tasks/{task_id}/annotations", json={"shapes": [{"frame": -1}]})
    )
    assert any(key.startswith("shapes[0]") for key in body), body
    r = await api.post(
        f"/api/tasks/{task_id}/data",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": "many"},
    )
    assert list(_fields(r)) == ["upload-length"]
    body = _fields(await api.post(f"/api/tasks/{task_id}/data", json={"image_quality": 0}))
    assert list(body) == ["image_quality"]
