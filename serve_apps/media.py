"""Serving media: the cache in front of rendering, and streaming uploads to disk.

:class:`MediaRenderer` turns a plan into a response: a cache hit costs no thread hop
(in-process cache) or one (Redis); a miss is rendered in the replica's media threads
(``media.serve_threads``), once even when many requests want the same item at the same time.

A chunk is built frame by frame into a spooled temporary file: up to
``cache.max_item_bytes`` it stays in memory and is cached; a larger one goes to disk, is
streamed to the client from there (with its length) and is not cached. The chunk is built
whole before the first byte is sent, so a failure is still a clean 4xx, and a slow client
never holds up other requests waiting for the same chunk (it reads from the file, not from
the build).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.events.deferred import DeferredEvents
from cvat_ray.storage.events.rows import CACHE_ITEM_CREATE, CACHE_ITEM_READ
from cvat_ray.storage.media.cache import MediaCache, MemoryCache, RedisCache
from cvat_ray.storage.media.render import RenderPlan, decode_arrays, render, write_chunk
from cvat_ray.storage.media.uploads import MultipartSink, UploadArea

_BLOCK = 1 << 20


def make_cache(settings: Settings) -> MediaCache:
    cache = settings.cache
    if cache.backend == "redis":
        return RedisCache(
            cache.redis_url,
            max_bytes=cache.redis_max_bytes,
            ttl_s=cache.redis_ttl_s,
            prefix=cache.redis_prefix,
        )
    return MemoryCache(cache.memory_max_bytes)


@dataclass
class Built:
    """What rendering a plan gave: the bytes, or (a chunk over the cache's item size) its
    temporary file, at its start."""

    mime: str
    body: bytes | None = None
    file: IO[bytes] | None = None
    size: int = 0


def _blocks(file: IO[bytes]) -> Iterator[bytes]:
    try:
        while block := file.read(_BLOCK):
            yield block
    finally:
        file.close()


class MediaRenderer:
    """``events``: where CVAT's ``create:cache_item`` (an item built) and ``read:cache_item``
    (an item served from the cache, or from a build under way) go; ``None``: analytics off."""

    def __init__(
        self,
        cache: MediaCache,
        threads: int,
        max_item_bytes: int = 64 << 20,
        events: DeferredEvents | None = None,
    ) -> None:
        self.cache = cache
        self.threads = threads
        self.max_item_bytes = max_item_bytes
        self.events = events
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # a build's bytes, or None when it was too large to share
        self._inflight: dict[str, asyncio.Future[Built | None]] = {}
        self._local = isinstance(cache, MemoryCache)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.threads, thread_name_prefix="cvat-media"
            )
        return self._executor

    async def response(self, plan: RenderPlan) -> Response:
        """The plan's bytes as a response: in one piece, or streamed from the temporary
        file of a chunk too large to cache."""
        built = await self.build(plan)
        if built.file is None:
            assert built.body is not None
            return Response(built.body, media_type=built.mime)
        return StreamingResponse(
            _blocks(built.file),
            media_type=built.mime,
            headers={"Content-Length": str(built.size)},
        )

    async def build(self, plan: RenderPlan) -> Built:
        """The cached item, the result of a build of the same item under way, or a new build
        (whose file, if it has one, the caller must close)."""
        loop = asyncio.get_running_loop()
        if self._local:
            hit = self.cache.get(plan.key)
        else:
            hit = await loop.run_in_executor(self._pool(), self.cache.get, plan.key)
        if hit is not None:
            self._record(CACHE_ITEM_READ, plan, len(hit[0]))
            return Built(mime=hit[1], body=hit[0])
        pending = self._inflight.get(plan.key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                self._record(CACHE_ITEM_READ, plan, shared.size)
                return shared
            # too large to share: its file is the first caller's; build another
            return await self._timed_build(loop, plan)
        future: asyncio.Future[Built | None] = loop.create_future()
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        self._inflight[plan.key] = future
        try:
            result = await self._timed_build(loop, plan)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            self._inflight.pop(plan.key, None)
        future.set_result(result if result.file is None else None)
        return result

    async def _timed_build(self, loop: asyncio.AbstractEventLoop, plan: RenderPlan) -> Built:
        started = time.perf_counter()
        result = await loop.run_in_executor(self._pool(), self._build, plan)
        took_ms = int((time.perf_counter() - started) * 1000)
        self._record(CACHE_ITEM_CREATE, plan, result.size, took_ms)
        return result

    def _record(self, scope: str, plan: RenderPlan, size: int, duration_ms: int = 0) -> None:
        events, origin = self.events, plan.origin
        if events is None or origin is None:
            return
        try:
            events.cache_item(scope, origin[0], origin[1], plan.kind, plan.key, size, duration_ms)
        except Exception:  # an event is never worth a failed read
            return

    async def decode(self, plan: RenderPlan) -> Any:
        """The plan's first frame as an RGB array (what a model sees), decoded in the
        media threads; not cached."""
        loop = asyncio.get_running_loop()
        frames = await loop.run_in_executor(self._pool(), decode_arrays, plan)
        return frames[0]

    def _build(self, plan: RenderPlan) -> Built:
        if plan.kind != "chunk":
            body, mime = render(plan)
            self.cache.put(plan.key, body, mime)
            return Built(mime=mime, body=body, size=len(body))
        with contextlib.ExitStack() as stack:
            # max_size 0 would never roll over to disk
            spool = stack.enter_context(
                tempfile.SpooledTemporaryFile(max_size=max(1, self.max_item_bytes))
            )
            mime = write_chunk(plan, spool)
            size = spool.seek(0, 2)
            spool.seek(0)
            if size > self.max_item_bytes:
                stack.pop_all()  # the response closes it
                return Built(mime=mime, file=spool, size=size)
            body = spool.read()
        self.cache.put(plan.key, body, mime)
        return Built(mime=mime, body=body, size=len(body))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


async def stream_multipart(
    request: Request, area: UploadArea, file_field: re.Pattern[str] | None = None
) -> MultipartSink:
    """Parse the request's multipart body into ``area`` as it arrives (1 MiB at a time, in a
    worker thread: file writes never block the event loop). ``file_field``: which form fields
    are files (``client_files[i]`` unless given)."""
    content_type = request.headers.get("content-type", "")
    if file_field is None:
        sink = await run_in_threadpool(MultipartSink, area, content_type)
    else:
        sink = await run_in_threadpool(MultipartSink, area, content_type, file_field)
    buffer = bytearray()
    try:
        async for block in request.stream():
            buffer += block
            if len(buffer) >= _BLOCK:
                data = bytes(buffer)
                buffer.clear()
                await run_in_threadpool(sink.feed, data)
        if buffer:
            await run_in_threadpool(sink.feed, bytes(buffer))
        await run_in_threadpool(sink.finish)
    except BaseException:
        await run_in_threadpool(sink.abort)
        raise
    return sink


async def stream_tus(request: Request, area: UploadArea, upload_id: str, offset: int) -> Any:
    """Append the request body to a TUS upload from ``offset``; returns the new state."""
    buffer = bytearray()
    state = None
    async for block in request.stream():
        buffer += block
        if len(buffer) >= _BLOCK:
            state = await run_in_threadpool(area.tus_write, upload_id, offset, bytes(buffer))
            offset = state.offset
            buffer.clear()
    if buffer or state is None:
        state = await run_in_threadpool(area.tus_write, upload_id, offset, bytes(buffer))
    return state
