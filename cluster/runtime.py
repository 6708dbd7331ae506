"""Starting Ray: a local head with its own temp dir, dashboard and token, or an existing cluster.

Ray 2.60 turns token auth on for local clusters. We keep the token of a local head in
``<data dir>/ray/auth_token`` (mode 0600) and point Ray at it with ``RAY_AUTH_TOKEN_PATH``,
so the dashboard, the Jobs API and ``cvat-ray status`` all use the same secret and nothing is
written to ``~/.ray``. Ray reads these variables when it is imported, so they are set before
the first ``import ray`` of the process.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cvat_ray.cluster import ray_compat
from cvat_ray.cluster.names import NAMESPACE
from cvat_ray.cluster.settings import Settings


@dataclass(frozen=True)
class RayRuntime:
    address: str
    dashboard_url: str | None
    started_local_head: bool
    token_path: Path | None


def ensure_token(path: Path) -> str:
    """The local head's token, created on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def configure_auth(settings: Settings) -> Path | None:
    """Set Ray's auth environment for a local head; returns the token path (None when off)."""
    if settings.ray.auth_mode == "disabled":
        os.environ["RAY_AUTH_MODE"] = "disabled"
        token_path = None
    else:
        token_path = settings.ray_token_path.resolve()
        ensure_token(token_path)
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    ray_compat.reload_auth_config()  # when Ray was imported already
    return token_path


def default_temp_dir(settings: Settings) -> Path:
    # Unix socket paths are limited to ~107 bytes, so the temp dir stays short.
    key = hashlib.sha256(str(settings.data_dir.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"cvat-ray-{key}"


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


# Ray Serve's own loops, slowed from their defaults on a local head (the controller's
# control loop and the cached metrics' export, 0.1 s each): measured on two cores during a
# whole-task auto-annotation run, the CPU outside the function's replicas went from 8.7 to
# 7.0 ms a frame. The controller then reacts within half a second; an operator's own values
# win, and a KubeRay cluster sets them in its pods' environment.
SERVE_ENV = {
    "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
}


def start(settings: Settings) -> RayRuntime:
    """Join ``RAY_ADDRESS``/``CVAT_RAY_RAY__ADDRESS`` or start a local head."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = settings.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        import ray

        # The operator provides the cluster's token (RAY_AUTH_TOKEN[_PATH], RAY_AUTH_MODE).
        ctx = ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
        return RayRuntime(
            address=address,
            dashboard_url=_http(ctx.dashboard_url),
            started_local_head=False,
            token_path=None,
        )
    token_path = configure_auth(settings)
    for name, value in SERVE_ENV.items():
        os.environ.setdefault(name, value)  # inherited by the head's processes
    temp_dir = settings.ray.temp_dir or default_temp_dir(settings)
    temp_dir.mkdir(parents=True, exist_ok=True)
    dashboard_port = settings.ray.dashboard_port
    if settings.ray.include_dashboard and not port_is_free(
        settings.ray.dashboard_host, dashboard_port
    ):
        dashboard_port = free_port(settings.ray.dashboard_host)
    ctx = ray_compat.init_local_head(
        namespace=NAMESPACE,
        num_cpus=settings.ray.num_cpus,
        include_dashboard=settings.ray.include_dashboard,
        dashboard_host=settings.ray.dashboard_host,
        dashboard_port=dashboard_port,
        temp_dir=temp_dir,
        agent_listen_port=free_port(),
        system_config=system_config(settings),
    )
    info: dict[str, Any] = ctx.address_info
    return RayRuntime(
        address=info["gcs_address"],
        dashboard_url=_http(ctx.dashboard_url) if settings.ray.include_dashboard else None,
        started_local_head=True,
        token_path=token_path,
    )


def system_config(settings: Settings) -> dict[str, Any]:
    """Ray settings of a local head. ``num_workers_soft_limit``: Ray ends idle worker
    processes beyond one per CPU after a second, so the workers the auto-annotation driver
    warms (and those a run used) would be gone before the next run, which would then wait
    seconds for new ones; a cluster's actors count towards the limit too."""
    limit = settings.ray.idle_workers
    return {"num_workers_soft_limit": limit} if limit else {}


def _http(url: str | None) -> str | None:
    if not url:
        return None
    return url if url.startswith("http") else f"http://{url}"


def stop() -> None:
    """Shut down what this process started (never ``ray stop``: that kills every Ray here)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
