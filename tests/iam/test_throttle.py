"""Failed-login throttling per account and per client address (429), in memory and in Redis."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
import redis

from cvat_ray.iam.throttle import LoginThrottle, MemoryStore, RedisStore
from tests.conftest import IN_CI, PASSWORD, Account

REDIS_URL = os.environ.get("CVAT_RAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


async def test_repeated_failures_are_throttled(
    app, anon: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    app.state.throttle.max_failures = 3
    for _ in range(3):
        r = await anon.post("/api/auth/login", json={"username": "alice", "password": "wrong"})
        assert r.status_code == 400
    # the right password no longer helps for a while
    r = await anon.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert "Too many failed logins" in r.json()["detail"]
    # the same address is throttled for other accounts too
    r = await anon.post("/api/auth/login", json={"username": "bob", "password": PASSWORD})
    assert r.status_code == 429


async def test_success_resets_the_account_counter(
    app, anon: httpx.AsyncClient, alice: Account
) -> None:
    app.state.throttle.max_failures = 3
    app.state.throttle.store = MemoryStore()
    for _ in range(2):
        await anon.post("/api/auth/login", json={"username": "alice", "password": "wrong"})
    assert (
        await anon.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
    ).status_code == 200
    assert app.state.throttle.store.failures("user:alice", 300)[0] == 0


@pytest.fixture
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not available: {exc}")
    return REDIS_URL


def test_redis_store_is_shared_between_replicas(redis_url: str) -> None:
    user = f"u{uuid.uuid4().hex[:8]}"
    one = LoginThrottle(RedisStore(redis_url), max_failures=2, window_s=30)
    two = LoginThrottle(RedisStore(redis_url), max_failures=2, window_s=30)
    keys = one.keys(user, None)
    one.failed(keys)
    two.failed(keys)
    with pytest.raises(Exception) as caught:
        one.check(keys)
    assert getattr(caught.value, "status", None) == 429
    two.succeeded(keys)
    one.check(keys)
