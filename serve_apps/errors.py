"""Exception handlers: every error leaves the API in a shape CVAT clients parse.

``AppError`` subclasses render as ``{"detail": ...}`` or ``{"field": ["message"]}``; request
validation errors become 400 with field paths such as ``labels[0].attributes[1].values``;
anything unexpected is a 500 carrying the request id, logged with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from cvat_ray.cluster.errors import AppError, TooManyRequests
from cvat_ray.storage.changes import Actor
from cvat_ray.storage.db import Database
from cvat_ray.storage.events import outbox
from cvat_ray.storage.events.rows import exception_row

logger = logging.getLogger("cvat_ray.api")


def _path(loc: Sequence[Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "non_field_errors"


def validation_body(exc: RequestValidationError) -> tuple[int, dict[str, Any]]:
    fields: dict[str, list[str]] = {}
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        where = loc[0] if loc else "body"
        if where == "path":
            return 404, {"detail": "Not found."}
        if err.get("type") == "json_invalid":
            return 400, {"detail": f"JSON parse error - {err.get('msg', 'invalid JSON')}"}
        # Drop the location kind and pydantic's union/function tags.
        rest = [p for p in loc[1:] if not (isinstance(p, str) and p.startswith("function-"))]
        key = _path(rest) if rest else ("non_field_errors" if where == "body" else str(where))
        message = str(err.get("msg", "Invalid value."))
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        fields.setdefault(key, []).append(message)
    return 400, fields


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


def app_error_response(exc: AppError) -> JSONResponse:
    """The response of an :class:`AppError` (also sent by middleware, outside the handlers)."""
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Token realm="api"'
    if isinstance(exc, TooManyRequests) and exc.retry_after:
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers or None)


def database_unavailable_response(request_id: str, exc: OperationalError) -> JSONResponse:
    logger.error("database error (request %s): %s", request_id, exc.orig)
    return JSONResponse({"detail": "The database is unavailable."}, status_code=503)


def _record_exception(db: Database, row: dict[str, Any]) -> None:
    try:
        with db.session() as session:
            outbox.add_rows(session, [row])
    except Exception:  # the database may be what failed; the log has the error
        logger.warning("could not record a send:exception event", exc_info=True)


async def record_exception(request: Request, status: int, exc: BaseException) -> None:
    """A ``send:exception`` analytics event for a 5xx answer (in its own transaction: the
    request's own was rolled back)."""
    if not outbox.enabled():
        return
    db: Database | None = getattr(request.app.state, "db", None)
    if db is None:
        return
    principal = getattr(request.state, "principal", None)
    row = exception_row(
        message=str(exc) or type(exc).__name__,
        status_code=status,
        stack="".join(traceback.format_exception(exc))[-8000:],
        actor=Actor(
            user_id=getattr(principal, "user_id", None),
            username=getattr(principal, "username", None),
            access_token_id=getattr(principal, "access_token_id", None),
            request_id=_request_id(request) or None,
            remote_addr=request.client.host if request.client else None,
        ),
        request={
            "url": str(request.url.path),
            "method": request.method,
            "query_params": dict(request.query_params),
            "user_agent": request.headers.get("user-agent", ""),
        },
    )
    await asyncio.get_running_loop().run_in_executor(None, _record_exception, db, row)


def install(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        if exc.status >= 500:
            await record_exception(request, exc.status, exc)
        return app_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, body = validation_body(exc)
        return JSONResponse(body, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "Error."
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the validators let through (e.g. an out-of-range
        # number): the client's input is at fault, and nothing was written.
        logger.warning("database rejected a value (request %s): %s", _request_id(request), exc.orig)
        return JSONResponse({"detail": "Invalid value for the database."}, status_code=400)

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> JSONResponse:
        # A concurrent request created the same unique object first.
        logger.warning("integrity error (request %s): %s", _request_id(request), exc.orig)
        return JSONResponse({"detail": "Conflict with the current state."}, status_code=409)

    @app.exception_handler(OperationalError)
    async def db_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
        return database_unavailable_response(_request_id(request), exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = _request_id(request)
        logger.exception("unhandled error (request %s)", rid)
        await record_exception(request, 500, exc)
        return JSONResponse(
            {"detail": f"Internal server error (request id {rid})."}, status_code=500
        )
