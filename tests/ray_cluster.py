"""One local Ray cluster for the whole test session (tests marked ``ray``), a pytest plugin
of ``tests/conftest.py`` so that every test folder shares it.

Its own short temp dir, token and dashboard agent port, no dashboard, 2 CPUs; every actor
asks for a fraction of a CPU. It is shut down with ``ray.shutdown()`` (never ``ray stop``).
Tests that start Serve on it shut Serve down when they end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cvat_ray.cluster import ray_compat, runtime
from cvat_ray.cluster.names import NAMESPACE
from cvat_ray.cluster.settings import Settings


@dataclass(frozen=True)
class RayCluster:
    """What a process needs to join the session's cluster (``RAY_ADDRESS`` and its token),
    and the port its dashboard agent was given."""

    address: str
    token_path: Path | None
    agent_port: int

    def env(self) -> dict[str, str]:
        """Environment of a subprocess (e.g. the CLI) that joins this cluster."""
        env = {"RAY_ADDRESS": self.address, "RAY_USAGE_STATS_ENABLED": "0"}
        if self.token_path is not None:
            env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_path)}
        return env


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayCluster]:
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    token_path = runtime.configure_auth(Settings(data_dir=tmp_path_factory.mktemp("ray-auth")))
    temp = Path("/tmp") / f"cvr-t-{uuid.uuid4().hex[:6]}"
    agent_port = runtime.free_port()  # leave Ray's default port to others
    ctx = ray_compat.init_local_head(
        namespace=NAMESPACE,
        num_cpus=2,
        include_dashboard=False,
        temp_dir=temp,
        agent_listen_port=agent_port,
    )
    try:
        yield RayCluster(ctx.address_info["gcs_address"], token_path, agent_port)
    finally:
        import ray

        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
