"""Request bodies are read only after the caller is authenticated, and never past the
endpoint's cap: driven as raw ASGI, counting the bytes the ``receive`` callable hands out."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cvat_ray.storage.db import Database
from tests.conftest import PASSWORD, Account
from tests.factories import new_task

MIB = 1024 * 1024
BLOCK = 256 * 1024


@dataclass
class Exchange:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    handed_out: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


async def send_raw(
    app: FastAPI,
    method: str,
    path: str,
    *,
    size: int,
    declare: bool = True,
    headers: dict[str, str] | None = None,
) -> Exchange:
    """Send ``size`` bytes of body in blocks, handed out only when the app asks for them;
    ``declare=False`` sends it chunked (no Content-Length)."""
    out = Exchange()
    sent = 0
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if declare:
        raw_headers.append((b"content-length", str(size).encode()))
    else:
        raw_headers.append((b"transfer-encoding", b"chunked"))
    raw_headers.append((b"content-type", b"application/json"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent >= size:
            return {"type": "http.disconnect"}
        block = min(BLOCK, size - sent)
        sent += block
        out.handed_out = sent
        return {"type": "http.request", "body": b" " * block, "more_body": sent < size}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out.status = message["status"]
            out.headers = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            out.body += message.get("body", b"")

    await app(scope, receive, send)
    return out


BIG = 64 * MIB  # under the 1 GiB annotation cap: only authentication can stop it


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/jobs/1/annotations"),
        ("PATCH", "/api/tasks/1/annotations/"),
        ("POST", "/api/projects"),
        ("POST", "/api/lambda/requests"),
        ("POST", "/api/lambda/runs"),
        ("POST", "/api/lambda/functions/colour-detector"),
        ("POST", "/api/cloudstorages"),
        ("PATCH", "/api/cloudstorages/1"),
        ("POST", "/api/assets"),
        ("POST", "/api/tasks/1/data"),
        ("POST", "/api/invitations"),
    ],
)
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
async def test_anonymous_bodies_are_not_read(
    app: FastAPI, method: str, path: str, declare: bool
) -> None:
    # Declared lengths under every cap here (a larger one is a 413 before anything else).
    r = await send_raw(app, method, path, size=BIG if not declare else 200 * 1024, declare=declare)
    assert r.status == 401, r.body
    assert r.handed_out == 0
    assert r.json() == {"detail": "Authentication credentials were not provided."}
    assert r.headers["x-request-id"]


async def test_bad_or_throttled_credentials_are_refused_before_reading(
    app: FastAPI, alice: Account
) -> None:
    r = await send_raw(
        app, "PUT", "/api/jobs/1/annotations", size=BIG, headers={"Authorization": "Token nope"}
    )
    assert (r.status, r.handed_out) == (401, 0)
    app.state.throttle.store.add(
        [("a:127.0.0.1", lambda _: 300.0)] * 100, app.state.throttle.clock()
    )
    r = await send_raw(
        app, "PUT", "/api/jobs/1/annotations", size=BIG, headers={"Authorization": "Token nope"}
    )
    assert (r.status, r.handed_out) == (429, 0)
    assert int(r.headers["retry-after"]) >= 1


async def test_a_declared_length_over_the_cap_is_a_413_before_anything(app: FastAPI) -> None:
    r = await send_raw(app, "PUT", "/api/jobs/1/annotations", size=2048 * MIB)
    assert (r.status, r.handed_out) == (413, 0)
    assert r.json() == {
        "detail": "The request body is larger than 1024 MiB, the limit of this endpoint."
    }


async def test_authenticated_bodies_are_capped_per_endpoint(app: FastAPI, alice: Account) -> None:
    app.state.settings.api.max_body_mb = 1
    auth = {"Authorization": f"Token {alice.token}"}
    r = await send_raw(app, "POST", "/api/projects", size=2 * MIB, headers=auth)
    assert (r.status, r.handed_out) == (413, 0)
    assert "larger than 1 MiB" in r.json()["detail"]
    # Chunked (or a Content-Length that lies): reading stops right past the cap.
    r = await send_raw(app, "POST", "/api/projects", size=64 * MIB, declare=False, headers=auth)
    assert r.status == 413 and "larger than 1 MiB" in r.json()["detail"]
    assert MIB < r.handed_out <= MIB + BLOCK
    # Cloud storages have 256 KiB, whatever the default.
    app.state.settings.api.max_body_mb = 16
    r = await send_raw(app, "POST", "/api/cloudstorages", size=300 * 1024, headers=auth)
    assert (r.status, r.handed_out) == (413, 0)
    assert "larger than 256 KiB" in r.json()["detail"]
    r = await send_raw(
        app, "PATCH", "/api/cloudstorages/1", size=4 * MIB, declare=False, headers=auth
    )
    assert r.status == 413 and r.handed_out <= 256 * 1024 + BLOCK
    # Guide assets: an image of up to 10 MiB and the form around it.
    r = await send_raw(app, "POST", "/api/assets", size=12 * MIB, headers=auth)
    assert (r.status, r.handed_out) == (413, 0)
    assert "larger than 11 MiB" in r.json()["detail"]


async def test_public_endpoints_have_a_small_cap(app: FastAPI) -> None:
    for path in ("/api/auth/login", "/api/auth/register", "/api/auth/logout"):
        r = await send_raw(app, "POST", path, size=BIG)
        assert (r.status, r.handed_out) == (413, 0), path
    for path in ("/api/auth/login", "/api/auth/register"):
        r = await send_raw(app, "POST", path, size=BIG, declare=False)
        assert r.status == 413 and r.handed_out <= 64 * 1024 + BLOCK, path


async def test_csrf_is_checked_before_the_body(
    app: FastAPI, anon: httpx.AsyncClient, alice: Account
) -> None:
    r = await anon.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    cookie = f"sessionid={r.cookies['sessionid']}; csrftoken={r.cookies['csrftoken']}"
    r2 = await send_raw(app, "POST", "/api/projects", size=MIB, headers={"Cookie": cookie})
    assert (r2.status, r2.handed_out) == (403, 0)
    assert "CSRF" in r2.json()["detail"]


async def test_bodies_under_the_cap_work_and_uploads_stream_past_it(
    app: FastAPI, client_for, db: Database, alice: Account
) -> None:
    app.state.settings.api.max_body_mb = 1
    api: httpx.AsyncClient = client_for(alice)
    task_id = await new_task(api)
    url = f"/api/tasks/{task_id}/data/"
    assert (await api.post(url, headers={"Upload-Start": ""})).status_code == 202
    # A 2 MiB file through Upload-Multiple: multipart goes to disk under the upload quotas.
    parts = {"client_files[0]": ("/x/big.bin", b"\0" * (2 * MIB), "application/octet-stream")}
    r = await api.post(url, headers={"Upload-Multiple": ""}, files=parts)
    assert r.status_code == 200, r.text
    # The same endpoint's JSON body is held to the default cap.
    r = await api.post(url, json={"server_files": ["x" * 100] * 20_000})
    assert r.status_code == 413
