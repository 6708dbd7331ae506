"""Serving media: the cache in front of rendering, and streaming uploads to disk.

:class:`MediaRenderer` turns a plan into bytes: a cache hit costs no thread hop (in-process
cache) or one (Redis); a miss is rendered in the replica's media threads
(``media.serve_threads``), once even when many requests want the same item at the same time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.media.cache import MediaCache, MemoryCache, RedisCache
from cvat_ray.storage.media.render import RenderPlan, decode_arrays, render
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


class MediaRenderer:
    def __init__(self, cache: MediaCache, threads: int) -> None:
        self.cache = cache
        self.threads = threads
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._inflight: dict[str, asyncio.Future[tuple[bytes, str]]] = {}
        self._local = isinstance(cache, MemoryCache)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.threads, thread_name_prefix="cvat-media"
            )
        return self._executor

    async def render(self, plan: RenderPlan) -> tuple[bytes, str]:
        loop = asyncio.get_running_loop()
        if self._local:
            hit = self.cache.get(plan.key)
        else:
            hit = await loop.run_in_executor(self._pool(), self.cache.get, plan.key)
        if hit is not None:
            return hit
        pending = self._inflight.get(plan.key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[tuple[bytes, str]] = loop.create_future()
        future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
        self._inflight[plan.key] = future
        try:
            result = await loop.run_in_executor(self._pool(), self._build, plan)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            self._inflight.pop(plan.key, None)
        future.set_result(result)
        return result

    async def decode(self, plan: RenderPlan) -> Any:
        """The plan's first frame as an RGB array (what a model sees), decoded in the
        media threads; not cached."""
        loop = asyncio.get_running_loop()
        frames = await loop.run_in_executor(self._pool(), decode_arrays, plan)
        return frames[0]

    def _build(self, plan: RenderPlan) -> tuple[bytes, str]:
        body, mime = render(plan)
        self.cache.put(plan.key, body, mime)
        return body, mime

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


async def stream_multipart(request: Request, area: UploadArea) -> MultipartSink:
    """Parse the request's multipart body into ``area`` as it arrives (1 MiB at a time, in a
    worker thread: file writes never block the event loop)."""
    sink = await run_in_threadpool(MultipartSink, area, request.headers.get("content-type", ""))
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
