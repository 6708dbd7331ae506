"""Deploying the Serve applications on the connected Ray cluster."""

from __future__ import annotations

from typing import Any

from ray import serve

from cvat_ray.cluster.names import API_APP
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.ingress import api_application


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


def builtin_spec_dir() -> Any:
    from pathlib import Path

    import cvat_ray.actors.functions as builtin_functions

    return Path(builtin_functions.__file__).parent / "specs"


def register_startup_functions(settings: Settings, db: Any) -> list[str]:
    """Register the built-in functions (when enabled) and those of ``functions.dir`` in the
    database; returns the problems found (an invalid spec is reported, not fatal)."""
    from cvat_ray.cluster.errors import AppError
    from cvat_ray.storage.functions.spec import load_spec_file, spec_files
    from cvat_ray.storage.services import lambda_functions

    folders: list[tuple[Any, str | None]] = []
    if settings.functions.builtins:
        folders.append((builtin_spec_dir(), "builtin"))
    if settings.functions.dir is not None:
        folders.append((settings.functions.dir, None))
    problems: list[str] = []
    for folder, source in folders:
        if not folder.is_dir():
            problems.append(f"{folder}: not a folder")
            continue
        for path in spec_files(folder):
            try:
                spec = load_spec_file(path)
            except AppError as exc:
                problems.append(str(exc.detail))
                continue
            with db.session() as session:
                lambda_functions.register(session, spec, source or str(path))
    return problems


def deploy_functions(db: Any, *, wait: bool = True) -> list[str]:
    """Deploy every registered function; returns the ids deployed."""
    from cvat_ray.serve_apps.functions import deploy as deploy_function
    from cvat_ray.storage.services import lambda_functions

    with db.session() as session:
        specs = lambda_functions.registered(session)
    for spec in specs:
        deploy_function(spec, wait=wait)
    return [spec.id for spec in specs]
