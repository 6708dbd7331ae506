"""A small HTTP load generator run in its own process (so it never shares a GIL with the
server): N concurrent keep-alive connections for D seconds, latencies in milliseconds."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    # from the Server-Timing header, when the server sends one
    server_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        data = sorted(self.latencies_ms)
        return data[min(len(data) - 1, int(q / 100 * len(data)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def server_p50(self) -> float:
        return statistics.median(self.server_ms) if self.server_ms else float("nan")


async def _run(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> LoadResult:
    import aiohttp

    latencies: list[float] = []
    server: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        continue
                latencies.append((time.perf_counter() - start) * 1000)
                timing = response.headers.get("Server-Timing", "")
                if "dur=" in timing:
                    server.append(float(timing.split("dur=", 1)[1].split(",")[0]))

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return LoadResult(len(latencies), errors, elapsed, latencies, server)


def _child(
    url: str, headers: dict[str, str], concurrency: int, seconds: float, queue: mp.Queue
) -> None:  # type: ignore[type-arg]
    queue.put(asyncio.run(_run(url, headers, concurrency, seconds)))


def load(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> LoadResult:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(url, headers, concurrency, seconds, queue))
    proc.start()
    result: LoadResult = queue.get(timeout=seconds + 120)
    proc.join(timeout=30)
    return result
