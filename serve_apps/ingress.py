"""The API as a Ray Serve application: a module-level deployment and its typed builder.

``cvat_ray.serve_apps.ingress:build_api_app`` is the application's ``import_path`` in the
Serve config (``cvat_ray.serve_apps.deploy.serve_config``), the way Serve's config files and a
RayService's ``serveConfigV2`` name an application. The FastAPI app is built inside each
replica (``serve.ingress`` with a builder), so every replica reads its settings, secrets
included, from its own environment and opens its own database pool: the config carries no
settings, only the deployment's options (:func:`api_deployment_options`).
"""

# No ``from __future__ import annotations`` here: Serve reads the builder's parameter
# annotation as a class to validate the config's ``args`` into it.

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve import Application

from cvat_ray.cluster.names import API_DEPLOYMENT
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.app import build_app


def build_replica_app() -> FastAPI:
    return build_app(behind_serve_proxy=True)


@serve.deployment(name=API_DEPLOYMENT)
@serve.ingress(build_replica_app)
class ApiIngress:
    """One API replica: stateless, any number can run behind the Serve proxy."""


class ApiAppArgs(BaseModel):
    """The API application's arguments: none. Settings never travel in the config; each
    replica reads them from its environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def build_api_app(args: ApiAppArgs) -> Application:
    """Serve's application builder (``import_path``): the deployment as the code declares
    it; Serve applies the config's ``deployments`` options on top."""
    return api_app(args)


def api_app(
    args: ApiAppArgs | Mapping[str, Any], options: Mapping[str, Any] | None = None
) -> Application:
    """The API application with ``options`` (a config ``deployments`` entry without its
    name) applied, as ``cvat-ray up`` deploys it."""
    ApiAppArgs.model_validate(args if isinstance(args, ApiAppArgs) else dict(args))
    app: Application = api_deployment(options).bind()
    return app


def api_deployment(options: Mapping[str, Any] | None = None) -> Any:
    """:class:`ApiIngress` (a ``serve.Deployment``) with ``options`` applied."""
    deployment: Any = ApiIngress  # the decorator's type is lost to mypy
    return deployment.options(**options) if options else deployment


def api_deployment_options(settings: Settings) -> dict[str, Any]:
    """The API deployment's options from ``api.*`` (Serve's deployment config keys)."""
    api = settings.api
    return {
        "max_ongoing_requests": api.max_ongoing_requests,
        "autoscaling_config": {
            "min_replicas": api.min_replicas,
            "initial_replicas": api.min_replicas,
            "max_replicas": max(api.max_replicas, api.min_replicas),
            "target_ongoing_requests": api.target_ongoing_requests,
        },
        "ray_actor_options": {"num_cpus": api.num_cpus},
        "logging_config": {"enable_access_log": api.access_log, "log_level": settings.log_level},
    }
