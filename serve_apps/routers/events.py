"""``/api/events``: CVAT's client events, working time and the events CSV export, and the
built-in analytics page's data (``/api/analytics/dashboard``)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.background import BackgroundTask

from cvat_ray.cluster.errors import InvalidInput, Unavailable
from cvat_ray.serve_apps.bodies import body_rule, described_body, json_model
from cvat_ray.serve_apps.deps import Call, LauncherDep, SettingsDep
from cvat_ray.storage.schemas.events import ClientEventsWrite, ExportParams
from cvat_ray.storage.services import events as service

router = APIRouter(tags=["events"])

# CVAT deprecated the GET export flow on 2025-03-17 (RFC 9745: "@<unix time>").
DEPRECATION = "@1742169600"
# A client batch may hold many events (the UI sends every 90 s; bulk loaders more).
EVENTS_BODY_MB = 64
_IDS = ("org_id", "project_id", "task_id", "job_id", "user_id", "cloud_storage_id")


def _int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise InvalidInput("A valid integer is required.", field=name) from None
    if not 0 <= number <= 2**63 - 1:
        raise InvalidInput("A valid integer is required.", field=name)
    return number


def _time(name: str, value: str) -> datetime:
    """An ISO 8601 time (a ``+`` of the offset arrives as a space when not escaped); naive
    times are UTC, the server's zone."""
    text = value.strip().replace("Z", "+00:00")
    for candidate in (text, "+".join(text.rsplit(" ", 1))):
        try:
            when = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    raise InvalidInput("An ISO 8601 date and time is required.", field=name)


def export_params(request: Request) -> ExportParams:
    """The export's query parameters (both flows), 400 for a malformed one."""
    q = request.query_params
    values: dict[str, Any] = {n: _int(n, q[n]) for n in _IDS if q.get(n)}
    for name, key in (("from", "from_"), ("to", "to")):
        if q.get(name):
            values[key] = _time(name, q[name])
    if q.get("filename"):
        values["filename"] = q["filename"]
    if q.get("location"):
        if q["location"] not in ("local", "cloud_storage"):
            raise InvalidInput('"location" is "local" or "cloud_storage".', field="location")
        values["location"] = q["location"]
    return ExportParams.model_validate(values)


@router.post(
    "/api/events",
    status_code=201,
    response_model=None,
    openapi_extra=described_body({"application/json": ClientEventsWrite}),
)
@body_rule(lambda s: EVENTS_BODY_MB * 2**20)
async def send_events(
    body: Annotated[ClientEventsWrite, Depends(json_model(ClientEventsWrite))], call: Call
) -> Response:
    """CVAT ``POST /api/events``: client events (whitelisted scopes), working time. The body
    is validated straight from its bytes and echoed as bytes (batches hold thousands)."""
    content = await call(service.post_events, body)
    return Response(content, status_code=201, media_type="application/json")


@router.post("/api/events/export", status_code=202)
async def export_events(request: Request, call: Call, launcher: LauncherDep) -> dict[str, str]:
    """CVAT ``POST /api/events/export``: ``{"rq_id"}``; poll ``/api/requests/{rq_id}`` for
    its ``result_url``."""
    params = export_params(request)
    rq_id = await call(service.start_export, params, launcher.submit)
    return {"rq_id": rq_id}


@router.get("/api/events/download", response_model=None)
async def download_events(request: Request, call: Call, settings: SettingsDep) -> FileResponse:
    """CVAT ``GET /api/events/download?rq_id=``: the finished export's CSV."""
    rq_id = request.query_params.get("rq_id")
    if not rq_id:
        raise InvalidInput("This field is required.", field="rq_id")
    path, name = await call(service.download_export, rq_id[:128], settings)
    return FileResponse(path, media_type="text/csv", filename=name)


@router.get("/api/events", response_model=None)
async def legacy_export(
    request: Request, call: Call, settings: SettingsDep, launcher: LauncherDep
) -> Response:
    """CVAT's deprecated ``GET /api/events?query_id=&action=download`` export flow: 202 while
    it runs, 201 when ready, 200 with the file for ``action=download`` (then forgotten),
    500 when it failed; a ``Deprecation`` header on every answer."""
    q = request.query_params
    params = export_params(request)
    code, body, path, name = await call(
        service.legacy_export,
        params,
        (q.get("query_id") or None) and q["query_id"][:128],
        q.get("action"),
        settings,
        launcher.submit,
    )
    headers = {"Deprecation": DEPRECATION}
    if path is not None:
        return FileResponse(
            path,
            media_type="text/csv",
            filename=name,
            headers=headers,
            background=BackgroundTask(path.unlink, missing_ok=True),
        )
    return JSONResponse(body, status_code=code, headers=headers)


@router.get("/api/analytics/dashboard")
async def dashboard(request: Request, call: Call, launcher: LauncherDep) -> dict[str, Any]:
    """Ours: the built-in analytics page's data (admins and users with analytics access)."""
    params = await call(service.dashboard_filter, dict(request.query_params))
    try:
        answer: dict[str, Any] = await asyncio.to_thread(
            launcher.query, "analytics", "dashboard", params
        )
    except Exception as exc:
        raise Unavailable(f"The analytics store is unavailable: {exc}"[:500]) from exc
    return answer


@router.get("/analytics", response_model=None, include_in_schema=False)
async def analytics_page(call: Call) -> HTMLResponse:
    """Ours (CVAT proxies Grafana here): the built-in analytics page. Anyone gets its sign-in
    form; a signed-in user without analytics access gets 403."""
    allowed = await call.optional(service.page_access)
    page = resources.files("cvat_ray.serve_apps").joinpath("static", "analytics.html").read_text()
    return HTMLResponse(
        page, status_code=403 if allowed is False else 200, headers={"Cache-Control": "no-store"}
    )
