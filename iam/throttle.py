"""Throttling of failed logins, per account and per client address.

After ``max_failures`` failed logins within ``window_s`` seconds, further attempts for that
account, or from that address, get 429 until the window has passed. Counters live in the
process by default; with Redis configured they are shared by every API replica.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Protocol

from cvat_ray.cluster.errors import TooManyRequests


class ThrottleStore(Protocol):
    def failures(self, key: str, window_s: int) -> tuple[int, float]:
        """(failures within the window, seconds until the oldest one leaves it)."""
        ...

    def record(self, key: str, window_s: int) -> None: ...

    def reset(self, key: str) -> None: ...


class MemoryStore:
    def __init__(self) -> None:
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _trim(self, key: str, window_s: int, now: float) -> deque[float]:
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - window_s:
            events.popleft()
        return events

    def failures(self, key: str, window_s: int) -> tuple[int, float]:
        now = time.monotonic()
        with self._lock:
            events = self._trim(key, window_s, now)
            wait = events[0] + window_s - now if events else 0.0
            return len(events), wait

    def record(self, key: str, window_s: int) -> None:
        now = time.monotonic()
        with self._lock:
            self._trim(key, window_s, now).append(now)

    def reset(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)


class RedisStore:
    """Fixed-window counters: ``INCR`` + ``EXPIRE`` on the first failure of a window."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2)

    def failures(self, key: str, window_s: int) -> tuple[int, float]:
        pipe = self._redis.pipeline()
        pipe.get(f"cvat-ray:login:{key}")
        pipe.ttl(f"cvat-ray:login:{key}")
        count, ttl = pipe.execute()
        return int(count or 0), float(max(ttl, 0))

    def record(self, key: str, window_s: int) -> None:
        name = f"cvat-ray:login:{key}"
        pipe = self._redis.pipeline()
        pipe.incr(name)
        pipe.expire(name, window_s, nx=True)
        pipe.execute()

    def reset(self, key: str) -> None:
        self._redis.delete(f"cvat-ray:login:{key}")


class LoginThrottle:
    def __init__(self, store: ThrottleStore, max_failures: int, window_s: int) -> None:
        self.store = store
        self.max_failures = max_failures
        self.window_s = window_s

    @staticmethod
    def keys(username: str, client: str | None) -> list[str]:
        keys = [f"user:{username.lower()}"]
        if client:
            keys.append(f"ip:{client}")
        return keys

    def check(self, keys: list[str]) -> None:
        for key in keys:
            count, wait = self.store.failures(key, self.window_s)
            if count >= self.max_failures:
                raise TooManyRequests(
                    f"Too many failed logins. Try again in {max(1, int(wait))} seconds.",
                    retry_after=max(1, int(wait)),
                )

    def failed(self, keys: list[str]) -> None:
        for key in keys:
            self.store.record(key, self.window_s)

    def succeeded(self, keys: list[str]) -> None:
        self.store.reset(keys[0])  # the account; the address keeps its count
