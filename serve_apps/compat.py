"""CVAT wire quirks, translated in one place so handlers stay single-purpose.

CVAT's routes mix trailing slashes (``/api/tasks/{id}/data/``, ``/api/tasks/{id}/annotations/``,
``/api/schema/``) with routes without them (``/api/tasks``, ``/api/tasks/{id}/data/meta``),
and clients use both forms exactly. Our routes are registered without trailing slashes and
this middleware strips one from any ``/api/...`` path, so both spellings reach the same
handler without redirects (clients must not depend on 307s).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send


class TrailingSlashMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/") and path.startswith("/api/"):
                scope = dict(scope)
                scope["path"] = path.rstrip("/")
                raw = scope.get("raw_path")
                if isinstance(raw, bytes) and raw.endswith(b"/"):
                    scope["raw_path"] = raw.rstrip(b"/")
        await self.app(scope, receive, send)


def parse_bool(value: str | None, default: bool = False) -> bool:
    """Query booleans arrive as ``True``/``False`` (Python) or ``true``/``false``."""
    if value is None or value == "":
        return default
    return value.strip().lower() in ("true", "1", "yes", "on")


def upload_action(headers: Mapping[str, str], content_type: str) -> str:
    """Which step of CVAT's overloaded ``POST /api/tasks/{id}/data/`` a request is:
    ``tus-create``, ``start``, ``multiple``, ``finish``, ``multipart`` (files and fields in
    one request) or ``json`` (share, URL or cloud files)."""
    lower = {k.lower() for k in headers}
    if "tus-resumable" in lower and "upload-length" in lower:
        return "tus-create"
    if "upload-start" in lower and "upload-finish" not in lower:
        return "start"
    if "upload-multiple" in lower:
        return "multiple"
    if "upload-finish" in lower:
        return "finish"
    if content_type.startswith("multipart/form-data"):
        return "multipart"
    return "json"
