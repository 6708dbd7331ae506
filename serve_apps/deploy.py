"""The Serve config of cvat-ray, and deploying it on the connected Ray cluster.

:func:`serve_config` describes every application, the API and each registered function, the
way Serve's config files (``serve build``, ``serve deploy``) and a RayService's
``serveConfigV2`` do: ``import_path`` names a typed application builder
(``cvat_ray.serve_apps.ingress:build_api_app``,
``cvat_ray.serve_apps.function_app:build_function_app``), ``args`` its arguments (nothing for
the API, the spec for a function: never a setting or a secret, which each replica reads from
its own environment), and ``deployments`` the options the settings and specs give (replicas,
autoscaling, CPUs and GPUs, ``max_ongoing_requests``, the model processes' runtime env).
``cvat-ray serve-config`` prints it.

``cvat-ray up`` and ``cvat-ray functions deploy`` deploy from that same config
(:func:`start`, :func:`run`): each application is built by its builder with its ``args``,
its ``deployments`` options applied, and run with ``serve.run_many``. Serve's own
config-deploy (``serve deploy``, the dashboard's REST API) would need the dashboard (a local
head may run without one) and a poll of its status, builds each application in a task of
its own (a worker process more to start), and marks the applications declarative: a later
config without a function's application deletes it, so ``functions deploy`` would have to
resubmit the whole config. On KubeRay the operator submits the same config that way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cvat_ray.cluster import ray_compat
from cvat_ray.cluster.names import API_APP, API_DEPLOYMENT, FUNCTION_DEPLOYMENT
from cvat_ray.cluster.settings import Settings
from cvat_ray.storage.functions.spec import FunctionSpec
from cvat_ray.storage.services.lambda_functions import APP_PREFIX, app_name

API_BUILDER = "cvat_ray.serve_apps.ingress:build_api_app"
FUNCTION_BUILDER = "cvat_ray.serve_apps.function_app:build_function_app"


class ServeFailure(Exception):
    """Serve refused or failed an operation; the message says which and why."""


# ---------------------------------------------------------------------------------- config


def serve_config(
    settings: Settings, specs: Iterable[FunctionSpec], *, cpus: float | None = None
) -> dict[str, Any]:
    """The Serve config (``ServeDeploySchema``'s shape) of the API and the functions
    ``specs``, for a cluster of ``cpus`` CPUs (see :func:`cluster_cpus`)."""
    return {
        "http_options": {"host": settings.server.host, "port": settings.server.port},
        "logging_config": {"enable_access_log": settings.api.access_log},
        "applications": [
            api_application(settings),
            *function_applications(specs, cpus=cpus),
        ],
    }


def api_application(settings: Settings) -> dict[str, Any]:
    from cvat_ray.serve_apps.ingress import api_deployment_options

    return {
        "name": API_APP,
        "route_prefix": "/",
        "import_path": API_BUILDER,
        "args": {},
        "deployments": [{"name": API_DEPLOYMENT, **api_deployment_options(settings)}],
    }


def function_applications(
    specs: Iterable[FunctionSpec], *, cpus: float | None = None
) -> list[dict[str, Any]]:
    """The applications of functions (no HTTP route: the API calls them by handle)."""
    from cvat_ray.serve_apps.function_app import function_app_args, function_deployment_options

    cpus = cluster_cpus() if cpus is None else cpus
    return [
        {
            "name": app_name(spec.id),
            "route_prefix": None,
            "import_path": FUNCTION_BUILDER,
            "args": function_app_args(spec),
            "deployments": [
                {"name": FUNCTION_DEPLOYMENT, **function_deployment_options(spec, cpus)}
            ],
        }
        for spec in specs
    ]


def config_specs(config: Mapping[str, Any]) -> list[FunctionSpec]:
    """The function specs a Serve config deploys (its applications built by the function
    builder): what the API must have registered to call them (on KubeRay, the migration Job
    registers them from the RayService's ``serveConfigV2``)."""
    return [
        FunctionSpec.model_validate((application.get("args") or {})["spec"])
        for application in config.get("applications") or []
        if application.get("import_path") == FUNCTION_BUILDER
    ]


def cluster_cpus() -> float:
    """CPUs of the connected cluster, or of this machine when not connected (GPU functions
    size their replicas' request queues by it: ``actors.stages.run_shape``)."""
    import sys

    ray: Any = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        return float(ray.cluster_resources().get("CPU", 1.0))
    return float(os.cpu_count() or 1)


def validate(config: Mapping[str, Any]) -> None:
    """Check ``config`` against Serve's own schema (what ``serve deploy`` and KubeRay
    accept); raises pydantic's ValidationError."""
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(dict(config))


def config_yaml(config: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


# ---------------------------------------------------------------------------------- deploying


def _binders() -> dict[str, Callable[[Any, Mapping[str, Any] | None], Any]]:
    """Builders by ``import_path`` that take the config's deployment options as well."""
    from cvat_ray.serve_apps.function_app import function_app
    from cvat_ray.serve_apps.ingress import api_app

    return {API_BUILDER: api_app, FUNCTION_BUILDER: function_app}


def build(application: Mapping[str, Any]) -> Any:
    """The Serve application of one ``applications`` entry of a config: its builder called
    with its ``args``, the options of its ``deployments`` entry applied."""
    binder = _binders().get(application["import_path"])
    if binder is None:
        raise ValueError(f"unknown application builder {application['import_path']!r}")
    deployments = list(application.get("deployments") or [])
    if len(deployments) > 1:
        raise ValueError(f"{application['name']}: one deployment expected")
    options = {k: v for k, v in deployments[0].items() if k != "name"} if deployments else None
    return binder(application.get("args") or {}, options)


def start(config: Mapping[str, Any]) -> None:
    """Start Serve (controller and proxy) with the config's HTTP and logging options."""
    from ray import serve

    serve.start(
        http_options=dict(config.get("http_options") or {}),
        logging_config=dict(config.get("logging_config") or {}),
    )


def run(
    config: Mapping[str, Any], names: Sequence[str] | None = None, *, wait: bool = True
) -> list[str]:
    """Deploy (or update) the config's applications (those named, else all) in one call;
    ``wait`` until they run. Returns the names deployed."""
    chosen = [a for a in config["applications"] if names is None or a["name"] in names]
    run_applications(chosen, wait=wait)
    return [a["name"] for a in chosen]


def run_applications(applications: Sequence[Mapping[str, Any]], *, wait: bool = True) -> None:
    if applications:
        ray_compat.run_applications(
            [(build(a), a["name"], a.get("route_prefix")) for a in applications], wait=wait
        )


def deploy(settings: Settings) -> None:
    """Start Serve and run the API application (blocks until its replicas are ready)."""
    config = serve_config(settings, [], cpus=0)
    start(config)
    run(config, [API_APP])


def deploy_function(spec: FunctionSpec, *, wait: bool = True) -> None:
    """Deploy (or update) a function on the connected cluster; ``wait`` until its
    application is running (its first replicas are up, none when it scales to zero)."""
    run_applications(function_applications([spec]), wait=wait)


def deploy_functions(db: Any, *, wait: bool = True) -> list[str]:
    """Deploy every registered function; returns the ids deployed."""
    from cvat_ray.storage.services import lambda_functions

    with db.session() as session:
        specs = lambda_functions.registered(session)
    run_applications(function_applications(specs), wait=wait)
    return [spec.id for spec in specs]


def delete_function(function_id: str) -> None:
    """Delete a function's application from Serve and wait until it is gone; ServeFailure
    with Serve's reason when Serve cannot (no Serve on the cluster, a deletion that did not
    finish)."""
    from ray import serve

    try:
        serve.delete(app_name(function_id))
    except Exception as exc:
        raise ServeFailure(f"{type(exc).__name__}: {exc}".strip()[:500]) from exc


def function_states() -> dict[str, str]:
    """Function id -> Serve status (``RUNNING``, ``DEPLOYING``...) of the applications on
    the cluster."""
    from ray import serve

    return {
        name.removeprefix(APP_PREFIX): _name(app.status)
        for name, app in serve.status().applications.items()
        if name.startswith(APP_PREFIX)
    }


def _name(status: Any) -> str:
    """A Serve status enum's plain name (``str()`` gives ``ApplicationStatus.RUNNING``)."""
    return str(getattr(status, "value", status))


def shutdown() -> None:
    from ray import serve

    serve.shutdown()  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------------------------- startup


def builtin_spec_dir() -> Path:
    import cvat_ray.actors.functions as builtin_functions

    return Path(builtin_functions.__file__).parent / "specs"


def startup_specs(settings: Settings) -> tuple[list[tuple[FunctionSpec, str]], list[str]]:
    """The specs ``up`` registers: the built-in functions (when enabled) and those of
    ``functions.dir``, each with its source; and the problems found (an invalid spec is
    reported, not fatal)."""
    from cvat_ray.cluster.errors import AppError
    from cvat_ray.storage.functions.spec import load_spec_file, spec_files

    folders: list[tuple[Path, str | None]] = []
    if settings.functions.builtins:
        folders.append((builtin_spec_dir(), "builtin"))
    if settings.functions.dir is not None:
        folders.append((settings.functions.dir, None))
    found: list[tuple[FunctionSpec, str]] = []
    problems: list[str] = []
    for folder, source in folders:
        if not folder.is_dir():
            problems.append(f"{folder}: not a folder")
            continue
        for path in spec_files(folder):
            try:
                found.append((load_spec_file(path), source or str(path)))
            except AppError as exc:
                problems.append(str(exc.detail))
    return found, problems


def register_startup_functions(settings: Settings, db: Any) -> list[str]:
    """Register the startup functions (:func:`startup_specs`) in the database; returns the
    problems found."""
    from cvat_ray.storage.services import lambda_functions

    found, problems = startup_specs(settings)
    for spec, source in found:
        with db.session() as session:
            lambda_functions.register(session, spec, source)
    return problems
