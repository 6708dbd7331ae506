"""Deploying the Serve applications on the connected Ray cluster."""

from __future__ import annotations

from typing import Any

from ray import serve

from cluster.names import API_APP
from cluster.settings import Settings
from serve_apps.ingress import api_application


def deploy(settings: Settings) -> None:
    """Start the Serve proxy on the configured address and run the API app (blocks until
    its replicas are ready)."""
    serve.start(
        http_options={"host": settings.server.host, "port": settings.server.port},
        logging_config={"enable_access_log": settings.api.access_log},
    )
    serve.run(api_application(settings), name=API_APP, route_prefix="/")


def status() -> dict[str, Any]:
    """Applications, deployments and replica counts, as Serve reports them."""
    result: dict[str, Any] = {}
    for name, app in serve.status().applications.items():
        result[name] = {
            "status": str(app.status),
            "deployments": {
                dep: {
                    "status": str(d.status),
                    "replicas": {str(k): v for k, v in d.replica_states.items()},
                }
                for dep, d in app.deployments.items()
            },
        }
    return result


def shutdown() -> None:
    serve.shutdown()  # type: ignore[no-untyped-call]
