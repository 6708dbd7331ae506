"""Every use of Ray's private or developer APIs, in one place.

Ray is pinned to the minor version these were checked against (``pyproject.toml``: 2.60);
``tests/cluster/test_ray_compat.py`` has a test for each, so an upgrade that moves one of
them fails there rather than in a running server. Everything else in the project uses
Ray's public API. Each function says what it relies on, why no public API does it, and the
Ray versions it was checked with.

Ray is imported inside each function: this module is imported by processes that never
start Ray (the CLI's ``--help``, the in-process app), and :func:`reload_auth_config` must run
after the environment is set but may find Ray already imported.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


def reload_auth_config() -> None:
    """Make an already imported Ray read ``RAY_AUTH_MODE``/``RAY_AUTH_TOKEN_PATH`` again.

    Ray reads its auth settings into its C++ config when ``ray._raylet`` is imported; a
    process that imported Ray before it knew which local head it serves (tests, the CLI
    after a helper imported Ray) would keep the old mode. ``ray._raylet.Config.initialize``
    re-reads the environment; there is no public call. Checked with Ray 2.60.0."""
    if "ray" not in sys.modules:
        return  # the first ``import ray`` reads the environment itself
    raylet: Any = importlib.import_module("ray._raylet")
    raylet.Config.initialize("")


@contextlib.contextmanager
def agent_port(port: int) -> Iterator[None]:
    """Give a local head's dashboard agent ``port`` for its HTTP server (the Jobs API).

    Ray binds it to 52365 unless told otherwise, and ``ray.init`` has no argument for it; a
    second Ray on the machine (another server, a test cluster) then runs without a Jobs API
    ("No available agent to submit job"). ``ray.init`` builds its node parameters through
    ``ray._private.parameter.RayParams``; for the duration of the call that name gives our
    port as the default. Checked with Ray 2.60.0."""
    from ray._private import parameter

    original = parameter.RayParams

    class _Params(original):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("dashboard_agent_listen_port", port)
            super().__init__(*args, **kwargs)

    parameter.RayParams = _Params  # type: ignore[misc]
    try:
        yield
    finally:
        parameter.RayParams = original  # type: ignore[misc]


def init_local_head(
    *,
    namespace: str,
    num_cpus: float | None,
    include_dashboard: bool,
    temp_dir: Path,
    agent_listen_port: int,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int | None = None,
    system_config: dict[str, Any] | None = None,
) -> Any:
    """Start a local head (``ray.init(address="local")``) and connect to it; returns Ray's
    context. Its own temp dir and dashboard agent port (:func:`agent_port`), so several
    Rays share a machine.

    ``_temp_dir`` and ``_system_config`` are the underscore arguments of ``ray.init``
    (documented there; the latter "for testing only"); ``_system_config`` carries
    ``num_workers_soft_limit`` (``cluster.runtime.system_config``). Checked with Ray 2.60.0."""
    import ray

    kwargs: dict[str, Any] = {
        "address": "local",
        "namespace": namespace,
        "num_cpus": num_cpus,
        "include_dashboard": include_dashboard,
        "log_to_driver": False,
        "_temp_dir": str(temp_dir),
    }
    if include_dashboard:
        kwargs["dashboard_host"] = dashboard_host
        if dashboard_port is not None:
            kwargs["dashboard_port"] = dashboard_port
    if system_config:
        kwargs["_system_config"] = system_config
    with agent_port(agent_listen_port):
        return ray.init(**kwargs)


def in_worker_process() -> bool:
    """True inside a Ray worker process (a Serve replica, an actor, a task); False in a
    driver or without Ray.

    Ray tells a worker from a driver by ``worker.mode`` (``ray._private.worker.WORKER_MODE``),
    which the runtime context holds as ``.worker``; its public getters
    (``get_task_id``...) answer per thread, and a replica's app is built in threads of its
    own. Checked with Ray 2.60.0."""
    ray: Any = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    from ray._private.worker import WORKER_MODE

    return bool(ray.get_runtime_context().worker.mode == WORKER_MODE)


def dashboard_url() -> str | None:
    """The address the connected cluster's dashboard registered (``host:port``), or None
    when it runs none.

    The dashboard writes it to the GCS's internal KV; the public
    ``ray.init(...).dashboard_url`` exists only in the process that called ``ray.init``, not
    in a Serve replica. ``ray._private.services.get_webui_url_from_internal_kv`` reads it.
    Checked with Ray 2.60.0."""
    from ray._private.services import get_webui_url_from_internal_kv

    url: str | None = get_webui_url_from_internal_kv()  # type: ignore[no-untyped-call]
    return url or None


def run_applications(targets: Sequence[tuple[Any, str, str | None]], *, wait: bool) -> None:
    """Deploy Serve applications (``(application, name, route_prefix)``) in one call;
    ``wait`` until all of them are running (their first replicas are up).

    ``serve.run`` always waits, and ``serve._run`` (the same call with the wait optional) is
    private; ``serve.run_many`` (a developer API) deploys several at once with the wait
    optional. Checked with Ray 2.60.0."""
    from ray import serve

    serve.run_many(
        [serve.RunTarget(app, name=name, route_prefix=prefix) for app, name, prefix in targets],
        wait_for_applications_running=wait,
    )


def forget_serve_controller() -> None:
    """Drop this process's cached Serve controller client, so that the next Serve call looks
    the controller up again (Serve was restarted, with a new controller, under a
    long-lived worker process).

    ``ray.serve.context._disconnect`` does only that (it does not shut Serve down); the
    public API has no way to drop the cache. Checked with Ray 2.60.0."""
    from ray.serve import context

    context._disconnect()  # type: ignore[no-untyped-call]
