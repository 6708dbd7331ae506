"""FastAPI dependencies: what the app holds (settings, database, launcher, media, functions,
login throttle), the caller and its unit of work, the organization context, list params.

The app's parts live on ``app.state`` (set once by :func:`cvat_ray.serve_apps.app.build_app`);
this module is the one place that reads them. Routers take them as typed parameters
(``settings: SettingsDep``, ``launcher: LauncherDep``, ...), never ``request.app.state``."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Annotated, Any, Concatenate, ParamSpec, TypeVar

import anyio
from fastapi import Depends, Path, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from cvat_ray.actors.launcher import Launcher
from cvat_ray.cluster.errors import (
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
)
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authn import UNSAFE_METHODS, Credentials
from cvat_ray.iam.authz import decisions_made, start_tracking
from cvat_ray.iam.clients import client_address, parse_proxies
from cvat_ray.iam.principal import OrgContext, Principal
from cvat_ray.iam.throttle import LoginThrottle
from cvat_ray.serve_apps.bodies import MIB, too_large_message
from cvat_ray.serve_apps.functions import FunctionRunner
from cvat_ray.serve_apps.media import MediaRenderer
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import Database, drop_after_commit, run_after_commit
from cvat_ray.storage.models import Organization
from cvat_ray.storage.query import ListParams
from cvat_ray.storage.services.authn import authenticate

# Database ids are 32-bit; anything else in a path cannot name an object.
ObjectId = Annotated[int, Path(ge=0, le=2_147_483_647)]

P = ParamSpec("P")
R = TypeVar("R")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Query keys that are not simple equality filters.
_RESERVED_QUERY = frozenset({"page", "page_size", "filter", "search", "sort", "org", "org_id"})


def app_settings(request: Request) -> Settings:
    """The app's settings (tests may change them on a built app; each request reads them)."""
    settings: Settings = request.app.state.settings
    return settings


def app_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def app_launcher(request: Request) -> Launcher:
    """Runs background requests (``submit``) and dataset runs."""
    launcher: Launcher = request.app.state.launcher
    return launcher


def app_media(request: Request) -> MediaRenderer:
    """Renders and caches media answers in the replica's media threads."""
    media: MediaRenderer = request.app.state.media
    return media


def app_functions(request: Request) -> FunctionRunner:
    """Runs deployed functions for online calls."""
    functions: FunctionRunner = request.app.state.functions
    return functions


def app_throttle(request: Request) -> LoginThrottle:
    throttle: LoginThrottle = request.app.state.throttle
    return throttle


def app_workers(request: Request) -> DbWorkers:
    workers: DbWorkers = request.app.state.workers
    return workers


SettingsDep = Annotated[Settings, Depends(app_settings)]
DbDep = Annotated[Database, Depends(app_db)]
LauncherDep = Annotated[Launcher, Depends(app_launcher)]
MediaDep = Annotated[MediaRenderer, Depends(app_media)]
FunctionsDep = Annotated[FunctionRunner, Depends(app_functions)]
ThrottleDep = Annotated[LoginThrottle, Depends(app_throttle)]


@contextmanager
def _unit_of_work(request: Request) -> Iterator[Session]:
    """One session per request, committed before the response is built (so a failing commit
    becomes an error response) and rolled back on any error."""
    db = app_db(request)
    # Safe methods only read (what they write, like a token's last-use time, needs no
    # transaction), so they skip the BEGIN/COMMIT round trips.
    factory = (
        db.autocommit_session_factory if request.method in SAFE_METHODS else db.session_factory
    )
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        drop_after_commit(session)
        raise
    finally:
        session.close()
    run_after_commit(session)


class DbWorkers:
    """The app's small pool of threads for database work, (re)created on first use."""

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None

    def get(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.threads, thread_name_prefix="cvat-db")
        return self._executor

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class Caller:
    """Runs one service call for a request: in a worker thread (the database driver blocks),
    inside one unit of work, with the caller authenticated and the org context resolved.

    Routers are ``async def`` and make exactly one ``await call(service_fn, ...)``: one thread
    hop per request instead of one per sync dependency, handler and response validation.
    The hop goes to the app's own small pool (``api.db_threads``), not to the shared
    threadpool: handlers are CPU-bound Python under the GIL, so many threads only contend
    (measured in bench/api_latency.py); more throughput comes from more replicas.
    """

    def __init__(self, request: Request) -> None:
        self.request = request
        self.workers = app_workers(request)

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.workers.get(), functools.partial(fn, *args, **kwargs)
        )

    async def __call__(
        self,
        fn: Callable[Concatenate[Session, RequestContext, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        return await self._run(self._authenticated, fn, *args, **kwargs)

    async def optional(
        self,
        fn: Callable[Concatenate[Session, Principal | None, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """For endpoints where a caller may or may not be logged in (logout)."""
        return await self._run(self._optional, fn, *args, **kwargs)

    async def anonymous(
        self, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """For endpoints that ignore credentials (login, register)."""
        return await self._run(self._anonymous, fn, *args, **kwargs)

    async def stream(
        self,
        fn: Callable[Concatenate[Session, RequestContext, P], Iterator[bytes]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> StreamingResponse:
        """A response streamed from a service generator (``fn`` yields bytes).

        Authentication, the org context and the generator's first chunk (where services
        authorize and run their first query) happen before the response starts, so errors
        there are ordinary error responses. Each later chunk is produced in the database
        thread pool, one ``next()`` at a time, so the replica's event loop never blocks and
        only one chunk is in memory. The session (one transaction, so that server-side
        cursors work) closes when the stream ends, fails or the client goes away."""
        stream = await self._run(self._open_stream, fn, *args, **kwargs)
        return _SessionStream(self._drain(stream), stream, self._run)

    def _open_stream(
        self,
        fn: Callable[Concatenate[Session, RequestContext, P], Iterator[bytes]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> _Stream:
        session = app_db(self.request).session_factory()
        try:
            principal = _authenticate(self.request, session)
            if principal is None:
                raise NotAuthenticated()
            ctx = RequestContext(
                principal=principal,
                org=_org_context(self.request, session),
                base_url=_base_url(self.request),
                request_id=str(getattr(self.request.state, "request_id", "")),
                remote_addr=client_of(self.request),
            )
            start_tracking()
            chunks = fn(session, ctx, *args, **kwargs)
            first = next(chunks, b"")
            # Fail closed, as for every call: the first chunk must come after a decision.
            if decisions_made() == 0:
                raise RuntimeError(f"{fn.__qualname__} made no authorization decision")
        except BaseException:
            session.rollback()
            session.close()
            raise
        return _Stream(session, chunks, first)

    async def _drain(self, stream: _Stream) -> AsyncIterator[bytes]:
        if stream.first:
            yield stream.first
        while True:
            chunk = await self._run(stream.next)
            if chunk is None:
                break
            yield chunk

    def _authenticated(
        self,
        fn: Callable[Concatenate[Session, RequestContext, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        with _unit_of_work(self.request) as session:
            principal = _authenticate(self.request, session)
            if principal is None:
                raise NotAuthenticated()
            ctx = RequestContext(
                principal=principal,
                org=_org_context(self.request, session),
                base_url=_base_url(self.request),
                request_id=str(getattr(self.request.state, "request_id", "")),
                remote_addr=client_of(self.request),
            )
            start_tracking()
            result = fn(session, ctx, *args, **kwargs)
            # Fail closed: a service that answers without asking the policy is a bug.
            if decisions_made() == 0:
                raise RuntimeError(f"{fn.__qualname__} made no authorization decision")
            return result

    def _anonymous(
        self, fn: Callable[Concatenate[Session, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        with _unit_of_work(self.request) as session:
            return fn(session, *args, **kwargs)

    def _optional(
        self,
        fn: Callable[Concatenate[Session, Principal | None, P], R],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        with _unit_of_work(self.request) as session:
            return fn(session, _authenticate(self.request, session), *args, **kwargs)


class _Stream:
    """A service generator and its session, used from pool threads one call at a time: a
    close that comes while a chunk is being made (the client left) waits for it."""

    def __init__(self, session: Session, chunks: Iterator[bytes], first: bytes) -> None:
        self.session = session
        self.chunks = chunks
        self.first = first
        self._lock = threading.Lock()
        self._closed = False

    def next(self) -> bytes | None:
        with self._lock:
            if self._closed:
                return None
            return next(self.chunks, None)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                close = getattr(self.chunks, "close", None)
                if close is not None:
                    close()
                self.session.commit()
            except BaseException:
                self.session.rollback()
                raise
            finally:
                self.session.close()


class _SessionStream(StreamingResponse):
    """Closes its stream's session however the response ends: sent, failed, or cancelled
    (even before the first chunk)."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        stream: _Stream,
        run: Callable[..., Awaitable[None]],
    ) -> None:
        super().__init__(content, media_type="application/json")
        self._stream = stream
        self._run_in_pool = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # Shielded: after a client disconnect this runs inside a cancelled scope.
            with anyio.CancelScope(shield=True):
                await self._run_in_pool(self._stream.close)


async def read_body(request: Request, limit_mb: int) -> bytes:
    """The request body, read chunk by chunk and refused with a 413 as soon as it passes
    ``limit_mb`` MiB (a declared Content-Length over the limit is refused before reading).
    The endpoint's :class:`~cvat_ray.serve_apps.bodies.BodyRule` must allow as much."""
    limit = limit_mb * MIB
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(too_large_message(limit))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(too_large_message(limit))
    return bytes(body)


async def _caller(request: Request) -> Caller:
    return Caller(request)


Call = Annotated[Caller, Depends(_caller)]


def client_of(request: Request) -> str:
    """The client's address (``X-Forwarded-For`` believed only from trusted proxies)."""
    settings = app_settings(request)
    return client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        parse_proxies(settings.server.trusted_proxies),
    )


def _credentials(request: Request) -> Credentials:
    return Credentials(
        method=request.method,
        authorization=request.headers.get("authorization"),
        session_cookie=request.cookies.get("sessionid"),
        csrf_cookie=request.cookies.get("csrftoken"),
        csrf_header=request.headers.get("x-csrftoken"),
        client=client_of(request),
    )


def _org_context(request: Request, session: Session) -> OrgContext:
    """CVAT's org context: ``?org=<slug>``, ``?org_id=<id>`` or ``X-Organization: <slug>``;
    ``org=`` (empty) is the personal workspace; none of them means "not specified"."""
    query = request.query_params
    slug_q = query.get("org")
    slug_h = request.headers.get("x-organization")
    org_id_raw = query.get("org_id")
    if org_id_raw is not None and (slug_q is not None or slug_h is not None):
        raise InvalidInput("Pass either org_id or org/X-Organization, not both.", field="org_id")
    if slug_q is not None and slug_h is not None and slug_q != slug_h:
        raise InvalidInput("org and X-Organization name different organizations.", field="org")
    if org_id_raw is not None:
        try:
            org_id = int(org_id_raw)
        except ValueError as exc:
            raise InvalidInput("A valid integer is required.", field="org_id") from exc
        if not 0 <= org_id <= 2_147_483_647:
            raise NotFound("Organization not found.")
        org = session.get(Organization, org_id)
    else:
        slug = slug_q if slug_q is not None else slug_h
        if slug is None:
            return OrgContext()
        if slug == "":
            return OrgContext(specified=True)
        org = session.scalar(select(Organization).where(Organization.slug == slug))
    if org is None:
        raise NotFound("Organization not found.")
    return OrgContext(specified=True, org_id=org.id, slug=org.slug, owner_id=org.owner_id)


def base_url_of(request: Request) -> str:
    """The absolute base URL of links in answers (``public_url``, or the request's)."""
    return _base_url(request)


def _base_url(request: Request) -> str:
    settings = app_settings(request)
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    return str(request.base_url).rstrip("/")


def _authenticate(request: Request, session: Session) -> Principal | None:
    early: Principal | None = getattr(request.state, "early_principal", None)
    if early is not None:
        return early
    principal = authenticate(session, _credentials(request), app_throttle(request))
    if principal is not None and principal.read_only and request.method in UNSAFE_METHODS:
        raise PermissionDenied("This access token is read-only.")
    request.state.principal = principal  # who a 5xx's send:exception event names
    return principal


async def authenticate_early(request: Request) -> None:
    """Authenticate the caller before the request body is read (the body guard calls this
    for every request that has one); the request's service call then reuses the principal.
    Anonymous callers get 401 here, without a byte of their body read."""

    def check() -> Principal | None:
        with _unit_of_work(request) as session:
            return _authenticate(request, session)

    loop = asyncio.get_running_loop()
    principal = await loop.run_in_executor(app_workers(request).get(), check)
    if principal is None:
        raise NotAuthenticated()
    request.state.early_principal = principal


async def list_params(request: Request) -> ListParams:
    # async: pure parsing, so no thread hop
    settings = app_settings(request)
    query = request.query_params
    page_raw = query.get("page", "1")
    try:
        page = int(page_raw)
    except ValueError as exc:
        raise NotFound("Invalid page.") from exc
    if page < 1 or page > 10_000_000:
        raise NotFound("Invalid page.")
    page_size = settings.api.default_page_size
    size_raw = query.get("page_size")
    if size_raw:
        try:
            page_size = max(1, min(int(size_raw), settings.api.max_page_size))
        except ValueError:
            # DRF falls back to the default page size on a bad value.
            page_size = settings.api.default_page_size
    simple = {k: v for k, v in query.items() if k not in _RESERVED_QUERY}
    for value in (*simple.values(), query.get("filter"), query.get("search"), query.get("sort")):
        if value and "\x00" in value:
            raise InvalidInput("Null characters are not allowed.", field="query")
    return ListParams(
        page=page,
        page_size=page_size,
        filter=query.get("filter") or None,
        search=query.get("search") or None,
        sort=query.get("sort") or None,
        simple=simple,
    )


Listing = Annotated[ListParams, Depends(list_params)]
