"""The login throttle: account+address backoff, per-address backoff, a per-account ceiling
that only delays, bounded memory, Redis shared by replicas; and every credential path of the
API going through it (login, Basic, unknown tokens, the old password of a password change),
keyed on the client address behind trusted proxies only."""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi import FastAPI

from cvat_ray.cluster.errors import TooManyRequests
from cvat_ray.iam import passwords
from cvat_ray.iam.clients import client_address, parse_proxies
from cvat_ray.iam.throttle import (
    LoginThrottle,
    MemoryStore,
    RedisStore,
    ThrottlePolicy,
    ThrottleStore,
)
from cvat_ray.storage.services import authn
from tests.conftest import IN_CI, PASSWORD, Account

REDIS_URL = os.environ.get("CVAT_RAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POLICY = ThrottlePolicy(
    pair_failures=3,
    address_failures=10,
    account_failures=6,
    backoff_max_s=60,
    account_delay_max_s=8,
    window_s=100,
)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        if IN_CI:
            pytest.fail(f"Redis is required in CI: {exc}")
        pytest.skip(f"Redis not available: {exc}")
    return REDIS_URL


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> ThrottleStore:
    if request.param == "memory":
        return MemoryStore()
    return RedisStore(_redis_url())


@pytest.fixture
def names() -> Iterator[tuple[str, str, str]]:
    """A fresh account and two fresh addresses (Redis keeps keys between tests)."""
    tag = uuid.uuid4().hex
    yield f"user-{tag[:8]}", f"2001:db8::{tag[:4]}:{tag[4:8]}", f"2001:db8::{tag[8:12]}:1"


def test_an_address_guessing_one_account_backs_off(
    store: ThrottleStore, names: tuple[str, str, str]
) -> None:
    account, here, _ = names
    clock = Clock()
    throttle = LoginThrottle(store, POLICY, clock)
    for _ in range(POLICY.pair_failures - 1):
        throttle.check(account, here)
        throttle.failed(account, here)
    throttle.check(account, here)  # still allowed
    throttle.failed(account, here)
    waits = []
    for _ in range(8):
        with pytest.raises(TooManyRequests) as caught:
            throttle.check(account, here)
        waits.append(caught.value.retry_after)
        clock.now += throttle.wait_s(account, here)
        throttle.check(account, here)  # allowed again once the wait is over
        throttle.failed(account, here)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]  # doubling up to backoff_max_s
    # Case does not make a new account.
    with pytest.raises(TooManyRequests):
        throttle.check(account.upper(), here)


def test_failures_are_forgotten_after_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(MemoryStore(), POLICY, clock)
    for _ in range(POLICY.pair_failures):
        throttle.failed("alice", "1.1.1.1")
    assert throttle.wait_s("alice", "1.1.1.1") == 1
    clock.now += 1 + POLICY.window_s
    assert throttle.wait_s("alice", "1.1.1.1") == 0
    throttle.failed("alice", "1.1.1.1")  # counting starts over: one failure is no wait
    assert throttle.wait_s("alice", "1.1.1.1") == 0


def test_nobody_else_is_locked_out_of_an_attacked_account(
    store: ThrottleStore, names: tuple[str, str, str]
) -> None:
    """Five bad logins used to lock the account for everyone. Now a flood of failures from
    many addresses slows only the addresses that failed, by a bounded gap."""
    account, owner, _ = names
    clock = Clock()
    throttle = LoginThrottle(store, POLICY, clock)
    tag = uuid.uuid4().hex
    attackers = [f"2001:db8:{tag[:4]}:{tag[4:8]}::{i:x}" for i in range(60)]
    for address in attackers:
        for _ in range(POLICY.pair_failures):
            throttle.failed(account, address)
    # 180 failures for the account: the attackers wait, the owner does not.
    assert throttle.wait_s(account, attackers[0]) > 0
    throttle.check(account, owner)
    # After a typo the owner waits at most account_delay_max_s, however the flood goes on.
    throttle.failed(account, owner)
    assert 0 < throttle.wait_s(account, owner) <= POLICY.account_delay_max_s
    for address in attackers:
        throttle.failed(account, address)
    clock.now += POLICY.account_delay_max_s
    throttle.check(account, owner)
    throttle.succeeded(account, owner)
    throttle.check(account, owner)


def test_an_address_trying_many_accounts_backs_off(
    store: ThrottleStore, names: tuple[str, str, str]
) -> None:
    account, here, there = names
    throttle = LoginThrottle(store, POLICY, Clock())
    for i in range(POLICY.address_failures):
        throttle.failed(f"{account}-{i}", here)
    with pytest.raises(TooManyRequests):
        throttle.check(f"{account}-new", here)
    with pytest.raises(TooManyRequests):
        throttle.check(None, here)  # key guessing from that address too
    throttle.check(f"{account}-new", there)


def test_unknown_keys_count_against_the_address(
    store: ThrottleStore, names: tuple[str, str, str]
) -> None:
    account, here, _ = names
    throttle = LoginThrottle(store, POLICY, Clock())
    for _ in range(POLICY.address_failures):
        throttle.check(None, here)
        throttle.failed(None, here)
    with pytest.raises(TooManyRequests):
        throttle.check(None, here)
    with pytest.raises(TooManyRequests):
        throttle.check(account, here)


def test_success_clears_the_pair_only(store: ThrottleStore, names: tuple[str, str, str]) -> None:
    account, here, _ = names
    throttle = LoginThrottle(store, POLICY, Clock())
    for _ in range(POLICY.pair_failures - 1):
        throttle.failed(account, here)
    throttle.succeeded(account, here)
    for _ in range(POLICY.pair_failures - 1):
        throttle.failed(account, here)
    throttle.check(account, here)  # the pair started over
    # The address kept its count: 2 x (pair_failures - 1) so far.
    for i in range(POLICY.address_failures - 2 * (POLICY.pair_failures - 1)):
        throttle.failed(f"{account}-{i}", here)
    with pytest.raises(TooManyRequests):
        throttle.check(f"{account}-other", here)


def test_redis_counts_are_shared_between_replicas(names: tuple[str, str, str]) -> None:
    account, here, _ = names
    clock = Clock()
    one = LoginThrottle(RedisStore(_redis_url()), POLICY, clock)
    two = LoginThrottle(RedisStore(_redis_url()), POLICY, clock)
    one.failed(account, here)
    two.failed(account, here)
    one.failed(account, here)
    with pytest.raises(TooManyRequests):
        two.check(account, here)
    one.succeeded(account, here)
    two.check(account, here)
    # Redis forgets the keys on its own.
    ttl = redis.Redis.from_url(_redis_url()).ttl(f"cvat-ray:throttle:u:{account}")
    assert 0 < ttl <= POLICY.window_s + POLICY.account_delay_max_s


def test_the_memory_store_is_bounded() -> None:
    store = MemoryStore(max_keys=100)
    throttle = LoginThrottle(store, POLICY, Clock())
    for i in range(1000):
        throttle.failed(f"guess-{i}", "198.51.100.7")
    assert len(store) <= 100
    # The keys failing right now are the ones kept.
    with pytest.raises(TooManyRequests):
        throttle.check("guess-new", "198.51.100.7")


def test_client_address_believes_trusted_proxies_only() -> None:
    proxies = parse_proxies("10.0.0.0/8, 192.0.2.1")
    # No trusted proxies: the peer, whatever the header says.
    assert client_address("10.0.0.5", ["1.2.3.4"], ()) == "10.0.0.5"
    # From a trusted proxy: the right-most address that is not one.
    assert client_address("10.0.0.5", ["1.2.3.4"], proxies) == "1.2.3.4"
    assert client_address("10.0.0.5", ["6.6.6.6, 1.2.3.4", "10.9.9.9"], proxies) == "1.2.3.4"
    assert client_address("10.0.0.5", ["192.0.2.1"], proxies) == "192.0.2.1"
    # From an untrusted peer the header is ignored.
    assert client_address("8.8.8.8", ["1.2.3.4"], proxies) == "8.8.8.8"
    assert client_address("10.0.0.5", ["nonsense"], proxies) == "10.0.0.5"
    assert client_address("10.0.0.5", ["[2001:db8::1]:443"], proxies) == "2001:db8::1"
    assert client_address(None, ["1.2.3.4"], proxies) == "unknown"
    with pytest.raises(ValueError):
        parse_proxies("10.0.0.0/8, proxy.local")


# --------------------------------------------------------------------------- over the API


def _client(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/login", json={"username": username, "password": password})


def _basic(username: str, password: str) -> dict[str, str]:
    value = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


async def test_failed_logins_from_one_address_do_not_lock_out_the_others(
    app: FastAPI, alice: Account, bob: Account
) -> None:
    app.state.throttle.policy = POLICY
    async with _client(app, "203.0.113.9") as attacker, _client(app, "198.51.100.1") as owner:
        for _ in range(POLICY.pair_failures):
            assert (await _login(attacker, "alice", "wrong")).status_code == 400
        r = await _login(attacker, "alice", PASSWORD)
        assert r.status_code == 429 and "Too many failed logins" in r.json()["detail"]
        assert int(r.headers["Retry-After"]) >= 1
        assert (await _login(owner, "alice", PASSWORD)).status_code == 200
        # The attacker's address may still log in to another account.
        assert (await _login(attacker, "bob", PASSWORD)).status_code == 200


async def test_basic_auth_is_throttled_before_any_hash_is_checked(
    app: FastAPI, alice: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.state.throttle.policy = POLICY
    checked: list[str] = []
    verify, burn = passwords.verify_password, passwords.burn_verification_time

    def counting_verify(password_hash: str | None, password: str) -> bool:
        checked.append(password)
        return verify(password_hash, password)

    def counting_burn(password: str) -> None:
        checked.append(password)
        burn(password)

    monkeypatch.setattr(authn, "verify_password", counting_verify)
    monkeypatch.setattr(authn, "burn_verification_time", counting_burn)
    async with _client(app) as api:
        for _ in range(POLICY.pair_failures):
            r = await api.get("/api/users/self", headers=_basic("alice", "wrong"))
            assert r.status_code == 401
        assert len(checked) == POLICY.pair_failures
        r = await api.get("/api/users/self", headers=_basic("alice", PASSWORD))
        assert r.status_code == 429
        # Another account from the same address is still checked (and costs a hash).
        r = await api.get("/api/users/self", headers=_basic("nobody", "x"))
        assert r.status_code == 401 and len(checked) == POLICY.pair_failures + 1
        checked.clear()
        r = await api.get("/api/users/self", headers=_basic("alice", PASSWORD))
        assert r.status_code == 429 and checked == []


async def test_unknown_tokens_are_throttled_per_address(app: FastAPI, alice: Account) -> None:
    app.state.throttle.policy = POLICY
    async with _client(app, "203.0.113.20") as guesser, _client(app, "198.51.100.2") as other:
        for i in range(POLICY.address_failures):
            scheme = "Token" if i % 2 else "Bearer"
            r = await guesser.get("/api/users/self", headers={"Authorization": f"{scheme} x{i}"})
            assert r.status_code == 401
        r = await guesser.get("/api/users/self", headers={"Authorization": "Token guess"})
        assert r.status_code == 429
        # A valid key still works from there; other addresses are not affected.
        r = await guesser.get("/api/users/self", headers={"Authorization": f"Token {alice.token}"})
        assert r.status_code == 200
        r = await other.get("/api/users/self", headers={"Authorization": "Token guess"})
        assert r.status_code == 401


async def test_forwarded_for_is_believed_from_trusted_proxies_only(
    app: FastAPI, alice: Account
) -> None:
    app.state.throttle.policy = POLICY
    async with _client(app) as api:  # every request comes from 127.0.0.1
        # Untrusted: a made-up X-Forwarded-For does not give a fresh address.
        for i in range(POLICY.pair_failures):
            r = await api.post(
                "/api/auth/login",
                json={"username": "alice", "password": "wrong"},
                headers={"X-Forwarded-For": f"192.0.2.{i}"},
            )
            assert r.status_code == 400
        r = await api.post(
            "/api/auth/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"X-Forwarded-For": "192.0.2.200"},
        )
        assert r.status_code == 429
        # Behind a trusted proxy, the forwarded address is the client.
        app.state.settings.server.trusted_proxies = "127.0.0.0/8"
        r = await api.post(
            "/api/auth/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"X-Forwarded-For": "192.0.2.200"},
        )
        assert r.status_code == 200


async def test_guessing_the_old_password_is_throttled(
    app: FastAPI, client_for, alice: Account
) -> None:
    app.state.throttle.policy = POLICY
    api: httpx.AsyncClient = client_for(alice)
    change = {"new_password1": "An0ther-secret", "new_password2": "An0ther-secret"}
    for _ in range(POLICY.pair_failures):
        r = await api.post("/api/auth/password/change", json={**change, "old_password": "no"})
        assert r.status_code == 400
    r = await api.post("/api/auth/password/change", json={**change, "old_password": PASSWORD})
    assert r.status_code == 429
