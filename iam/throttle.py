"""The one throttle every credential check goes through (password login, HTTP Basic, LDAP,
and ``Token``/``Bearer`` keys that match nothing).

Failures are counted under three keys, and each answers a different attacker:

* the **account + address pair**: one address guessing one account's password. After
  ``pair_failures`` failures every further attempt waits 1 s, 2 s, 4 s ... up to
  ``backoff_max_s``. Only that address is slowed down for that account.
* the **address**: one address trying many accounts (or guessing keys). After
  ``address_failures`` failures the same backoff applies to everything from that address.
* the **account**, over all addresses: many addresses guessing one account. This one never
  locks anybody out: past ``account_failures`` failures, each address must leave a gap
  (1 s, 2 s ... up to ``account_delay_max_s``) after its *own* last failure before it tries
  that account again. An address that has not failed for the account is not slowed at all,
  so the owner typing the right password gets in however hard others are guessing.

A key's failures are forgotten ``window_s`` after the wait its last failure caused has
passed; a successful login clears its pair (the address and the account keep their counts,
so a valid login of an attacker's own cannot wash away their record). Counts live in the
process (bounded, least recently failed keys dropped first) or, with Redis, are shared by
every API replica.

Checks run on the database threads, right before the credential is verified, and failures
are recorded right after it, so concurrent guesses slip past a check only as many at a time
as there are database threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cvat_ray.cluster.errors import TooManyRequests
from cvat_ray.cluster.settings import Settings

# Keys the in-process store keeps at most (about 150 bytes each).
MEMORY_MAX_KEYS = 100_000
_REDIS_PREFIX = "cvat-ray:throttle:"


@dataclass(frozen=True)
class Count:
    """Failures under one key, and the time (epoch seconds) of the last one."""

    failures: int = 0
    last: float = 0.0


# For a key's new failure count, how long (seconds) the store must remember the key.
TtlFor = Callable[[int], float]


class ThrottleStore(Protocol):
    def read(self, keys: Sequence[str], now: float) -> list[Count]:
        """The count of each key (``Count()`` for an unknown or forgotten one)."""
        ...

    def add(self, entries: Sequence[tuple[str, TtlFor]], now: float) -> None:
        """One more failure under each key, at ``now``."""
        ...

    def clear(self, key: str) -> None: ...


class MemoryStore:
    """Counts of this process, at most ``max_keys`` of them: the keys that failed least
    recently are dropped first, so the keys of whoever is failing right now stay."""

    def __init__(self, max_keys: int = MEMORY_MAX_KEYS) -> None:
        self.max_keys = max_keys
        # key -> (failures, last failure, forgotten at)
        self._items: OrderedDict[str, tuple[int, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def read(self, keys: Sequence[str], now: float) -> list[Count]:
        out = []
        with self._lock:
            for key in keys:
                item = self._items.get(key)
                if item is None or item[2] <= now:
                    out.append(Count())
                else:
                    out.append(Count(item[0], item[1]))
        return out

    def add(self, entries: Sequence[tuple[str, TtlFor]], now: float) -> None:
        with self._lock:
            for key, ttl_for in entries:
                item = self._items.pop(key, None)
                failures = (item[0] if item is not None and item[2] > now else 0) + 1
                self._items[key] = (failures, now, now + ttl_for(failures))
            # Forgotten keys at the old end go first, then the least recently failed.
            while self._items:
                key, item = next(iter(self._items.items()))
                if item[2] > now and len(self._items) <= self.max_keys:
                    break
                del self._items[key]

    def clear(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class RedisStore:
    """Counts shared by every replica: a hash ``{n, t}`` per key that Redis expires."""

    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2)

    def read(self, keys: Sequence[str], now: float) -> list[Count]:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(_REDIS_PREFIX + key, "n", "t")
        return [
            Count(int(n), float(t)) if n is not None and t is not None else Count()
            for n, t in pipe.execute()
        ]

    def add(self, entries: Sequence[tuple[str, TtlFor]], now: float) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for key, _ in entries:
            pipe.hincrby(_REDIS_PREFIX + key, "n", 1)
            pipe.hset(_REDIS_PREFIX + key, "t", repr(now))
        counts = pipe.execute()[::2]
        pipe = self._redis.pipeline(transaction=False)
        for (key, ttl_for), failures in zip(entries, counts, strict=True):
            pipe.expire(_REDIS_PREFIX + key, max(1, math.ceil(ttl_for(int(failures)))))
        pipe.execute()

    def clear(self, key: str) -> None:
        self._redis.delete(_REDIS_PREFIX + key)


@dataclass(frozen=True)
class ThrottlePolicy:
    pair_failures: int = 5
    address_failures: int = 50
    account_failures: int = 20
    backoff_max_s: float = 900
    account_delay_max_s: float = 30
    window_s: float = 300

    @classmethod
    def from_settings(cls, settings: Settings) -> ThrottlePolicy:
        iam = settings.iam
        return cls(
            pair_failures=iam.login_max_failures,
            address_failures=iam.login_address_max_failures,
            account_failures=iam.login_account_max_failures,
            backoff_max_s=iam.login_backoff_max_s,
            account_delay_max_s=iam.login_account_max_delay_s,
            window_s=iam.login_failure_window_s,
        )


def backoff(failures: int, threshold: int, cap: float) -> float:
    """Seconds to wait after ``failures`` failures: none below ``threshold``, then 1, 2, 4 ...
    up to ``cap``."""
    if failures < threshold:
        return 0.0
    return min(cap, 2.0 ** min(failures - threshold, 62))


def account_key(name: str) -> str:
    """Usernames and e-mails are throttled case-insensitively."""
    return name.strip().lower()


class LoginThrottle:
    """``check`` before verifying a credential, ``failed`` or ``succeeded`` after.

    ``account`` is the username or e-mail being tried, None for a key that names no account
    (an unknown ``Token``/``Bearer`` value); ``address`` is the client's address.
    """

    def __init__(
        self,
        store: ThrottleStore,
        policy: ThrottlePolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.policy = policy or ThrottlePolicy()
        self.clock = clock

    def _keys(self, account: str | None, address: str) -> tuple[str, str | None, str | None]:
        if account is None:
            return f"a:{address}", None, None
        name = account_key(account)
        # Addresses hold no spaces, so "address name" cannot collide across pairs.
        return f"a:{address}", f"p:{address} {name}", f"u:{name}"

    def wait_s(self, account: str | None, address: str) -> float:
        """Seconds before this address may try this account again (0: now)."""
        p = self.policy
        now = self.clock()
        address_key, pair_key, user_key = self._keys(account, address)
        if pair_key is None or user_key is None:
            (by_address,) = self.store.read([address_key], now)
            pair, user = Count(), Count()
        else:
            by_address, pair, user = self.store.read([address_key, pair_key, user_key], now)
        until = [
            by_address.last + backoff(by_address.failures, p.address_failures, p.backoff_max_s),
            pair.last + backoff(pair.failures, p.pair_failures, p.backoff_max_s),
        ]
        if pair.failures:
            # The account-wide gap counts from this address's own last failure.
            gap = backoff(user.failures, p.account_failures, p.account_delay_max_s)
            until.append(pair.last + gap)
        return max(0.0, max(until) - now)

    def check(self, account: str | None, address: str) -> None:
        """Raise 429 when this address must wait before trying this account again."""
        wait = self.wait_s(account, address)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"Too many failed logins. Try again in {seconds} seconds.", retry_after=seconds
            )

    def failed(self, account: str | None, address: str) -> None:
        p = self.policy

        def ttl(threshold: int, cap: float) -> TtlFor:
            return lambda failures: backoff(failures, threshold, cap) + p.window_s

        address_key, pair_key, user_key = self._keys(account, address)
        entries = [(address_key, ttl(p.address_failures, p.backoff_max_s))]
        if pair_key is not None and user_key is not None:
            entries.append((pair_key, ttl(p.pair_failures, p.backoff_max_s)))
            entries.append((user_key, ttl(p.account_failures, p.account_delay_max_s)))
        self.store.add(entries, self.clock())

    def succeeded(self, account: str, address: str) -> None:
        _, pair_key, _ = self._keys(account, address)
        if pair_key is not None:
            self.store.clear(pair_key)


def make_throttle(settings: Settings) -> LoginThrottle:
    """The app's throttle: in Redis when ``redis.url`` is set, else in the process."""
    store: ThrottleStore = RedisStore(settings.redis.url) if settings.redis.url else MemoryStore()
    return LoginThrottle(store, ThrottlePolicy.from_settings(settings))
