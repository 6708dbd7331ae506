"""CVAT wire quirks, translated in one place so handlers stay single-purpose.

CVAT's routes mix trailing slashes (``/api/tasks/{id}/data/``, ``/api/tasks/{id}/annotations/``,
``/api/schema/``) with routes without them (``/api/tasks``, ``/api/tasks/{id}/data/meta``),
and clients use both forms exactly. Our routes are registered without trailing slashes and
this middleware strips one from any ``/api/...`` path, so both spellings reach the same
handler without redirects (clients must not depend on 307s).

Django answers ``HEAD`` wherever it answers ``GET`` (CVAT's UI sends ``HEAD
/api/lambda/functions`` before listing models); FastAPI routes do not, so
:class:`HeadAsGetMiddleware` runs a ``HEAD`` as the ``GET`` of the same path and sends its
status and headers without the body.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.storage.services.data_access import NoMedia

T = TypeVar("T")


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


class HeadAsGetMiddleware:
    """``HEAD`` is the ``GET`` of the same path without its body, on every route (one rule,
    not one handler per route), as Django decides: by path first. When a ``GET`` route
    takes the path, the request runs as that ``GET`` and its status, ``Content-Type`` and
    ``Content-Length`` are sent without the body; otherwise it goes on as ``HEAD`` (a
    ``HEAD`` handler of its own, as TUS has, or the 405 a ``GET`` would get)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = dict(scope)
        as_get["method"] = "GET"
        routes = scope["app"].router.routes if "app" in scope else []
        if not any(route.matches(as_get)[0] == Match.FULL for route in routes):
            await self.app(scope, receive, functools.partial(_without_body, send))
            return
        finished = False

        async def send_without_body(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.start":
                await send(message)
            elif message["type"] == "http.response.body" and not finished:
                # The GET's body is produced (as Django does for HEAD) but never sent; the
                # first body message ends the response, later ones are dropped.
                finished = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await self.app(as_get, receive, send_without_body)


async def _without_body(send: Send, message: Message) -> None:
    if message["type"] == "http.response.body":
        if message.get("more_body", False):
            return
        message = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(message)


def prefers_empty(headers: Mapping[str, str]) -> bool:
    """RFC 7240 ``Prefer: handling=empty``: the client takes a 204 instead of a placeholder
    (CVAT's UI sends it for previews)."""
    for value in headers.get("prefer", "").split(","):
        if value.strip().lower().replace(" ", "") == "handling=empty":
            return True
    return False


async def unless_empty_preferred(request: Request, value: Awaitable[T]) -> T | None:
    """``value``, or ``None`` when the object has no media yet and the client sent ``Prefer:
    handling=empty`` (the router answers 204 then; CVAT's UI asks previews this way)."""
    try:
        return await value
    except NoMedia:
        if prefers_empty(request.headers):
            return None
        raise


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


def tus_filename(metadata: str | None) -> str:
    """TUS ``Upload-Metadata: filename <base64>, ...``."""
    for item in (metadata or "").split(","):
        key, _, value = item.strip().partition(" ")
        if key == "filename":
            try:
                return base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise InvalidInput("Upload-Metadata filename is not valid base64.") from exc
    raise InvalidInput("Upload-Metadata must carry a filename.")
