"""CVAT wire quirks, translated in one place so handlers stay single-purpose.

CVAT's routes mix trailing slashes (``/api/tasks/{id}/data/``, ``/api/tasks/{id}/annotations/``,
``/api/schema/``) with routes without them (``/api/tasks``, ``/api/tasks/{id}/data/meta``),
and clients use both forms exactly. Our routes are registered without trailing slashes and
this middleware strips one from any ``/api/...`` path, so both spellings reach the same
handler without redirects (clients must not depend on 307s).
"""

from __future__ import annotations

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
