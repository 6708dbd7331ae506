"""The API as a Ray Serve deployment with autoscaling.

The FastAPI app is built inside each replica (``serve.ingress`` with a builder), so every
replica reads its settings from its own environment and opens its own database pool.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
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


def api_application(settings: Settings) -> Application:
    api = settings.api
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": api.num_cpus},
        "max_ongoing_requests": api.max_ongoing_requests,
        "autoscaling_config": {
            "min_replicas": api.min_replicas,
            "initial_replicas": api.min_replicas,
            "max_replicas": max(api.max_replicas, api.min_replicas),
            "target_ongoing_requests": api.target_ongoing_requests,
        },
        "logging_config": {"enable_access_log": api.access_log, "log_level": settings.log_level},
    }
    return ApiIngress.options(**options).bind()  # type: ignore[attr-defined,no-any-return]
