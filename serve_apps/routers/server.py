"""``/api/server`` (about, health, plugins), ``/api/user-agreements`` and ``/static/``: the
public answers CVAT's UI needs before anyone logs in."""

from __future__ import annotations

import html
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from cvat_ray.actors.launcher import in_ray_worker
from cvat_ray.cluster.errors import NotFound
from cvat_ray.serve_apps import health
from cvat_ray.serve_apps.deps import Call, DbDep, SettingsDep
from cvat_ray.storage.schemas.server import About, Plugins, UserAgreementRead
from cvat_ray.storage.services import datasets as datasets_service

router = APIRouter(tags=["server"])

VERSION = "2.80.0"

# Files under /static/ that the UI loads from the server (CVAT serves its logo there).
_STATIC = {"logo.svg": "image/svg+xml"}


@router.get("/api/server/about", response_model=About)
async def about(request: Request, settings: SettingsDep) -> About:
    """CVAT ``GET /api/server/about``: public; cvat-sdk checks ``version`` before logging in,
    the UI shows ``logo_url`` in its header."""
    base_url = (settings.server.public_url or str(request.base_url)).rstrip("/")
    return About(
        name="cvat-ray",
        description="A CVAT-compatible annotation server running on Ray",
        version=VERSION,
        logo_url=f"{base_url}/static/logo.svg",
        subtitle="CVAT 2.80 API on Ray Serve",
    )


@router.get("/api/server/annotation/formats")
async def annotation_formats(call: Call) -> dict[str, list[dict[str, object]]]:
    """CVAT ``GET /api/server/annotation/formats`` (signed-in users): every format CVAT
    lists, importers and exporters, with ``enabled: false`` for those not built here."""
    return await call(datasets_service.formats)


@router.get("/api/server/health", response_model=None)
async def health_check(
    request: Request,
    settings: SettingsDep,
    db: DbDep,
    format: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    """CVAT ``GET /api/server/health/``: each check's name and ``"working"`` or why it fails;
    500 when one fails. JSON with ``?format=json`` or ``Accept: application/json``, a small
    HTML page otherwise (as django-health-check does)."""
    found = health.checks(settings, db, in_ray=in_ray_worker())
    results = await health.run_checks(found)
    status = 200 if all(v == health.WORKING for v in results.values()) else 500
    if format == "json" or "application/json" in request.headers.get("accept", ""):
        return JSONResponse(results, status_code=status)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{html.escape(value)}</td></tr>"
        for name, value in results.items()
    )
    page = (
        "<!doctype html><html><head><title>cvat-ray health</title></head><body>"
        f"<table><tr><th>check</th><th>status</th></tr>{rows}</table></body></html>"
    )
    return HTMLResponse(page, status_code=status)


@router.get("/api/server/plugins", response_model=Plugins)
async def plugins(settings: SettingsDep) -> Plugins:
    """CVAT ``GET /api/server/plugins``: which optional parts run. The UI shows the analytics
    link (to ``/analytics``, the built-in page) when ``ANALYTICS`` is on; models
    (``/api/lambda``) are always served here."""
    return Plugins(ANALYTICS=settings.analytics.enabled, MODELS=True)


@router.get("/api/user-agreements", response_model=list[UserAgreementRead])
async def user_agreements(settings: SettingsDep) -> list[UserAgreementRead]:
    """CVAT ``GET /api/user-agreements``: what a new user accepts when registering
    (``server.user_agreements``; none by default)."""
    return [
        UserAgreementRead.model_validate(a.model_dump()) for a in settings.server.user_agreements
    ]


@router.get("/static/{name}", response_model=None, include_in_schema=False)
async def static_file(name: str) -> Response:
    """The few static files the UI loads from the server (the header logo)."""
    media_type = _STATIC.get(name)
    if media_type is None:
        raise NotFound()
    body = resources.files("cvat_ray.serve_apps").joinpath("static", name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "public, max-age=86400"})
