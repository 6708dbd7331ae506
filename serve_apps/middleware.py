"""ASGI middleware: request ids and timing (every response carries ``X-Request-Id``, the
client's own or a new one, and ``Server-Timing: app;dur=<ms>``, the time spent in the
application itself, so proxy and network time can be told apart from ours); and the body
guard (authentication before a body is read, per-endpoint size caps)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cvat_ray.cluster.errors import AppError, PayloadTooLarge
from cvat_ray.serve_apps.bodies import rule_of, too_large_message
from cvat_ray.serve_apps.deps import app_settings, authenticate_early
from cvat_ray.serve_apps.errors import app_error_response, database_unavailable_response

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """``set_header=False`` behind the Ray Serve proxy, which already answers with the request
    id it hands to the replica (the client's own when it sent one): setting it again would
    send the header twice."""

    def __init__(self, app: ASGIApp, set_header: bool = True) -> None:
        self.app = app
        self.set_header = set_header

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _SAFE_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if self.set_header:
                    headers["X-Request-Id"] = request_id
                elapsed_ms = (time.perf_counter() - started) * 1000
                headers["Server-Timing"] = f"app;dur={elapsed_ms:.2f}"
            await send(message)

        await self.app(scope, receive, send_with_id)


class BodyTooLarge(StarletteHTTPException):
    """Raised from ``receive`` when a body passes its cap while it streams in. An HTTP
    exception, because FastAPI turns anything else raised while it reads a body into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=too_large_message(limit))


def _declared_length(scope: Scope) -> tuple[bool, int | None]:
    """(whether the request has a body, its Content-Length when declared)."""
    length: int | None = None
    chunked = False
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            length = int(text) if text.isdigit() else -1
        elif name == b"transfer-encoding":
            chunked = True
    if length == -1:
        return True, None
    return chunked or bool(length), length


def _flat_routes(api: Starlette) -> list[Any]:
    """The app's routes with included routers flattened (FastAPI keeps them nested), built
    once: routes do not change once the app serves."""
    routes: list[Any] | None = getattr(api.state, "body_guard_routes", None)
    if routes is None:
        routes = []
        for route in api.router.routes:
            nested = getattr(route, "effective_route_contexts", None)
            routes.extend(nested() if nested is not None else [route])
        api.state.body_guard_routes = routes
    return routes


def _endpoint(api: Starlette, scope: Scope) -> Callable[..., Any] | None:
    for route in _flat_routes(api):
        match, child = route.matches(scope)
        if match is Match.FULL:
            endpoint: Callable[..., Any] | None = child.get("endpoint")
            return endpoint
    return None


class BodyGuardMiddleware:
    """Request bodies are read only after the caller is known, and never past their cap.

    For every request with a body (a Content-Length above 0, or a chunked one) to a route:
    a declared length over the endpoint's cap (:func:`cvat_ray.serve_apps.bodies.body_rule`)
    gets a 413 at once; the caller is then authenticated (unless the endpoint is public), so
    an anonymous or throttled client gets its 401/403/429 before a byte of its body is read;
    and the body is counted as the application reads it, which fails with a 413 as soon as
    it passes the cap (chunked bodies, or a Content-Length that lies)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body, declared = _declared_length(scope)
        api: Starlette | None = scope.get("app")
        endpoint = _endpoint(api, scope) if has_body and api is not None else None
        if api is None or endpoint is None:
            await self.app(scope, receive, send)  # no body, or no route: nothing reads it
            return
        request = Request(scope)
        rule = rule_of(endpoint)
        limit = rule.limit_bytes(app_settings(request), request.headers.get("content-type", ""))
        try:
            if limit is not None and declared is not None and declared > limit:
                raise PayloadTooLarge(too_large_message(limit))
            if not rule.public:
                await authenticate_early(request)
        except AppError as exc:
            await app_error_response(exc)(scope, receive, send)
            return
        except OperationalError as exc:
            request_id = str(scope.get("state", {}).get("request_id", ""))
            await database_unavailable_response(request_id, exc)(scope, receive, send)
            return
        if limit is not None:
            receive = _capped(receive, limit)
        await self.app(scope, receive, send)


def _capped(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge(limit)
        return message

    return counted
