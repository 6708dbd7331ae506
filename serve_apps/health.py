"""The server's health checks, answered at ``GET /api/server/health/``.

CVAT answers this with django-health-check: a JSON object mapping each check's name to
``"working"`` or a message, and 500 when any check fails. CVAT's UI calls it before anything
else and refuses to start until it answers 200. Each check here does one cheap round trip
(``SELECT 1``, ``PING``, a cluster resource query) with a timeout, all checks at once, so
the endpoint stays fast even when a dependency hangs; failures are logged with their cause
and answered with a fixed message, so nothing about the deployment leaks to callers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.db import Database

logger = logging.getLogger("cvat_ray.api.health")

WORKING = "working"
# Seconds one check may take before it counts as failed.
CHECK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    """One named check: ``probe`` raises when the dependency does not answer."""

    name: str
    probe: Callable[[], None]
    failure: str


def _ping_database(db: Database) -> None:
    with db.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _ping_redis(url: str) -> None:
    import redis

    client: Any = redis.Redis.from_url(
        url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
    )
    try:
        client.ping()
    finally:
        client.close()


def _ping_ray() -> None:
    import ray

    if not ray.cluster_resources():  # type: ignore[no-untyped-call]
        raise RuntimeError("the cluster reports no resources")


def checks(settings: Settings, db: Database, *, in_ray: bool) -> list[Check]:
    """What this deployment depends on: the database always; Redis when the cache or the
    login throttle use it; the Ray cluster when the API itself runs in Ray (a Serve replica
    whose cluster is gone cannot run background work or models)."""
    found = [Check("DatabaseBackend", lambda: _ping_database(db), "unavailable: database error")]
    if settings.cache.backend == "redis":
        url = settings.cache.redis_url
        found.append(
            Check("Cache backend: media", lambda: _ping_redis(url), "unavailable: cache error")
        )
    if settings.redis.url:
        redis_url = settings.redis.url
        found.append(Check("Redis", lambda: _ping_redis(redis_url), "unavailable: Redis error"))
    if in_ray:
        found.append(Check("RayCluster", _ping_ray, "unavailable: Ray cluster error"))
    return found


async def _outcome(check: Check) -> str:
    try:
        await asyncio.wait_for(asyncio.to_thread(check.probe), CHECK_TIMEOUT_S)
    except TimeoutError:
        logger.warning("health check %s timed out after %ss", check.name, CHECK_TIMEOUT_S)
        return check.failure
    except Exception:
        logger.warning("health check %s failed", check.name, exc_info=True)
        return check.failure
    return WORKING


async def run_checks(found: list[Check]) -> dict[str, str]:
    """Each check's name and ``"working"`` or its failure message, run concurrently."""
    outcomes = await asyncio.gather(*(_outcome(c) for c in found))
    return {c.name: outcome for c, outcome in zip(found, outcomes, strict=True)}
