"""Each use of Ray's private or developer APIs (``cvat_ray.cluster.ray_compat``) still does
what we rely on, on the installed Ray: an upgrade that moves one fails here."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cvat_ray.cluster import ray_compat
from tests.ray_cluster import RayCluster

ROOT = Path(__file__).resolve().parents[2]


def test_ray_is_the_pinned_minor() -> None:
    """The version these functions were checked with (pyproject.toml pins it)."""
    import ray

    assert ray.__version__.startswith("2.60."), ray.__version__


def test_reload_auth_config_rereads_the_environment(tmp_path: Path) -> None:
    """In a process of its own: the mode changes the process's Ray config."""
    token = tmp_path / "token"
    token.write_text("a" * 64)
    script = textwrap.dedent(
        f"""
        import os
        os.environ["RAY_AUTH_MODE"] = "disabled"
        import ray._raylet as raylet
        from cvat_ray.cluster import ray_compat

        assert raylet.get_authentication_mode() != raylet.AuthenticationMode.TOKEN
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = {str(token)!r}
        ray_compat.reload_auth_config()
        assert raylet.get_authentication_mode() == raylet.AuthenticationMode.TOKEN
        os.environ["RAY_AUTH_MODE"] = "disabled"
        ray_compat.reload_auth_config()
        assert raylet.get_authentication_mode() != raylet.AuthenticationMode.TOKEN
        print("ok")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_agent_port_is_the_default_only_inside() -> None:
    from ray._private import parameter

    with ray_compat.agent_port(40123):
        assert parameter.RayParams().dashboard_agent_listen_port == 40123
        # a caller's own value still wins
        given = parameter.RayParams(dashboard_agent_listen_port=40124)
        assert given.dashboard_agent_listen_port == 40124
    assert parameter.RayParams().dashboard_agent_listen_port != 40123


@pytest.mark.ray
def test_the_local_head_listens_on_its_agent_port(ray_cluster: RayCluster) -> None:
    """``init_local_head`` started the session cluster: its dashboard agent (the Jobs API's
    server) took the port it was given, not Ray's default."""
    assert ray_cluster.agent_port != 52365
    with socket.create_connection(("127.0.0.1", ray_cluster.agent_port), timeout=10):
        pass


@pytest.mark.ray
def test_in_worker_process(ray_cluster: RayCluster) -> None:
    import ray

    assert ray_compat.in_worker_process() is False

    @ray.remote(num_cpus=0.05)
    def inside() -> bool:
        from cvat_ray.cluster import ray_compat

        return ray_compat.in_worker_process()

    assert ray.get(inside.remote(), timeout=120) is True


@pytest.mark.ray
def test_dashboard_url_reads_what_the_dashboard_registers(ray_cluster: RayCluster) -> None:
    """The session cluster runs no dashboard: no URL. The key a dashboard writes (Ray's
    own name and namespace for it) is read back."""
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    assert ray_compat.dashboard_url() is None
    internal_kv._internal_kv_put(
        "webui:url", "127.0.0.1:8265", namespace=ray_constants.KV_NAMESPACE_DASHBOARD
    )
    try:
        assert ray_compat.dashboard_url() == "127.0.0.1:8265"
    finally:
        internal_kv._internal_kv_del("webui:url", namespace=ray_constants.KV_NAMESPACE_DASHBOARD)
    assert ray_compat.dashboard_url() is None


@pytest.mark.ray
def test_run_applications_and_forget_the_controller(ray_cluster: RayCluster) -> None:
    """Several applications in one call, with and without waiting; a process that forgot
    its controller client finds the controller again."""
    from ray import serve
    from ray.serve import context

    from cvat_ray.cluster.runtime import free_port

    class Echoing:
        def __call__(self, value: Any) -> Any:
            return value

    echo: Any = serve.deployment(ray_actor_options={"num_cpus": 0.05})(Echoing)

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    try:
        ray_compat.run_applications(
            [(echo.bind(), "compat-a", None), (echo.bind(), "compat-b", None)], wait=True
        )
        statuses = serve.status().applications
        assert {str(statuses[n].status.value) for n in ("compat-a", "compat-b")} == {"RUNNING"}
        assert serve.get_app_handle("compat-b").remote(7).result(timeout_s=60) == 7
        ray_compat.run_applications([(echo.bind(), "compat-c", None)], wait=False)
        assert "compat-c" in serve.status().applications

        assert context._global_client is not None
        ray_compat.forget_serve_controller()
        assert context._global_client is None
        assert serve.get_app_handle("compat-a").remote(8).result(timeout_s=60) == 8
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]
