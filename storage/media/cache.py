"""Caches for built chunks, frames and previews.

Keys carry the data record's id and its ``chunks_updated_date``, so new data never reads an
old entry; :meth:`invalidate` also drops a data record's entries at once.

- :class:`MemoryCache`: an LRU per process, capped in bytes (the embedded default).
- :class:`RedisCache`: shared by every API replica, capped in bytes with least-recently-used
  eviction done by the cache itself (a sorted set of access times), so it works on a Redis
  that other applications share (no ``maxmemory`` policy needed) and entries also expire.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Protocol


class MediaCache(Protocol):
    def get(self, key: str) -> tuple[bytes, str] | None: ...

    def put(self, key: str, value: bytes, mime: str) -> None: ...

    def invalidate(self, prefix: str) -> None: ...

    def clear(self) -> None: ...


class MemoryCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def get(self, key: str) -> tuple[bytes, str] | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: str, value: bytes, mime: str) -> None:
        if len(value) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old[0])
            self._items[key] = (value, mime)
            self._size += len(value)
            while self._size > self.max_bytes:
                _, (evicted, _) = self._items.popitem(last=False)
                self._size -= len(evicted)

    def invalidate(self, prefix: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k.startswith(prefix)]:
                self._size -= len(self._items.pop(key)[0])

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._size = 0


# Adds an entry and evicts the least recently used ones while the total is over the cap.
# KEYS: lru zset, sizes hash, total counter; ARGV: prefix, key, size, cap, now, ttl.
_PUT = """
local old = redis.call('HGET', KEYS[2], ARGV[2])
if old then redis.call('DECRBY', KEYS[3], old) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[2])
local total = redis.call('INCRBY', KEYS[3], ARGV[3])
local cap = tonumber(ARGV[4])
while total > cap do
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #oldest == 0 then break end
  local k = oldest[1]
  local size = redis.call('HGET', KEYS[2], k)
  redis.call('ZREM', KEYS[1], k)
  redis.call('HDEL', KEYS[2], k)
  redis.call('DEL', ARGV[1] .. 'item:' .. k)
  if size then total = redis.call('DECRBY', KEYS[3], size) end
end
return total
"""


class RedisCache:
    def __init__(self, url: str, *, max_bytes: int, ttl_s: int, prefix: str) -> None:
        import redis

        self._redis: Any = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._lru = prefix + "lru"
        self._sizes = prefix + "sizes"
        self._total = prefix + "total"
        self._put = self._redis.register_script(_PUT)

    def _item(self, key: str) -> str:
        return f"{self.prefix}item:{key}"

    def get(self, key: str) -> tuple[bytes, str] | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(self._item(key), "v", "m")
        pipe.zadd(self._lru, {key: time.time()}, xx=True)
        (value, mime), _ = pipe.execute()
        if value is None:
            return None
        return value, (mime or b"application/octet-stream").decode()

    def put(self, key: str, value: bytes, mime: str) -> None:
        if len(value) > self.max_bytes:
            return
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self._item(key), mapping={"v": value, "m": mime})
        pipe.expire(self._item(key), self.ttl_s)
        pipe.execute()
        self._put(
            keys=[self._lru, self._sizes, self._total],
            args=[self.prefix, key, len(value), self.max_bytes, time.time(), self.ttl_s],
        )

    def invalidate(self, prefix: str) -> None:
        pattern = "".join(f"[{c}]" if c in "*?[]\\" else c for c in prefix) + "*"
        keys = [k.decode() for k, _ in self._redis.zscan_iter(self._lru, match=pattern)]
        for key in keys:
            size = self._redis.hget(self._sizes, key)
            pipe = self._redis.pipeline()
            pipe.zrem(self._lru, key)
            pipe.hdel(self._sizes, key)
            pipe.delete(self._item(key))
            if size:
                pipe.decrby(self._total, int(size))
            pipe.execute()

    def clear(self) -> None:
        self.invalidate("")

    @property
    def size(self) -> int:
        return int(self._redis.get(self._total) or 0)
