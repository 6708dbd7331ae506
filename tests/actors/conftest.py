"""One local Ray cluster for the whole test session (tests marked ``ray``).

Its own short temp dir and token, no dashboard, 2 CPUs; every actor asks for a fraction of
a CPU. It is shut down with ``ray.shutdown()`` (never ``ray stop``).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvat_ray.cluster import runtime
from cvat_ray.cluster.names import NAMESPACE
from cvat_ray.cluster.settings import Settings


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    runtime.configure_auth(Settings(data_dir=tmp_path_factory.mktemp("ray-auth")))
    import ray

    temp = Path("/tmp") / f"cvr-t-{uuid.uuid4().hex[:6]}"
    with runtime.agent_port(runtime.free_port()):  # leave Ray's default port to others
        ray.init(
            address="local",
            namespace=NAMESPACE,
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=str(temp),
        )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
