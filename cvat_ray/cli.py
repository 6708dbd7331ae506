"""The ``cvat-ray`` command line.

The CLI is the composition root: the one module allowed to import every layer
(``cvat_ray.cluster`` ... ``cvat_ray.serve_apps``). It does so inside each command so that
``--help`` stays fast and Ray is imported only after its environment (token auth) is set.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cvat_ray.cluster.settings import Settings, get_settings, reset_settings_cache

T = TypeVar("T")


def _apply_overrides(
    data_dir: str | None, host: str | None = None, port: int | None = None
) -> Settings:
    """CLI flags win over the environment; they are written to the environment so Ray
    workers started by this process read the same settings."""
    if data_dir is not None:
        os.environ["CVAT_RAY_DATA_DIR"] = str(Path(data_dir).resolve())
    elif "CVAT_RAY_DATA_DIR" in os.environ:
        os.environ["CVAT_RAY_DATA_DIR"] = str(Path(os.environ["CVAT_RAY_DATA_DIR"]).resolve())
    else:
        os.environ["CVAT_RAY_DATA_DIR"] = str(Path("./cvat-data").resolve())
    if host is not None:
        os.environ["CVAT_RAY_SERVER__HOST"] = host
    if port is not None:
        os.environ["CVAT_RAY_SERVER__PORT"] = str(port)
    reset_settings_cache()
    return get_settings()


def _database(settings: Settings) -> Any:
    from cvat_ray.storage.db import Database

    return Database(settings.database_url, pool_size=2)


def _in_session(settings: Settings, work: Callable[[Any], T]) -> T:
    """``work(session)`` in one transaction on the migrated database (the registry
    commands: they run without a server)."""
    _migrate(settings)
    db = _database(settings)
    try:
        with db.session() as session:
            return work(session)
    finally:
        db.dispose()


def _migrate(settings: Settings) -> str:
    from cvat_ray.storage.migrate import current_revision, upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = _database(settings)
    try:
        upgrade(db.engine)
        return current_revision(db.engine) or "?"
    finally:
        db.dispose()


def _ensure_admin(settings: Settings) -> tuple[str, str | None]:
    """Create the first admin if the database has no superuser yet.
    Returns (username, password to print once or None)."""
    from sqlalchemy import select

    from cvat_ray.iam.keys import new_password
    from cvat_ray.storage.models import User
    from cvat_ray.storage.services.accounts import ensure_superuser

    db = _database(settings)
    try:
        with db.session() as session:
            if session.scalar(select(User.id).where(User.is_superuser.is_(True)).limit(1)):
                return settings.admin_username, None
            given = settings.admin_password.get_secret_value() if settings.admin_password else None
            password = given or new_password()
            ensure_superuser(session, settings.admin_username, password, settings.admin_email)
            return settings.admin_username, None if given else password
    finally:
        db.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _apply_overrides(args.data_dir)
    if args.ensure_admin and settings.admin_password is None:
        print(
            "Error: --ensure-admin needs CVAT_RAY_ADMIN_PASSWORD (a generated password would "
            "only be printed to this command's log).",
            file=sys.stderr,
        )
        return 2
    specs = None
    if args.functions_from:
        import yaml
        from pydantic import ValidationError

        from cvat_ray.serve_apps import deploy

        try:
            specs = deploy.config_specs(yaml.safe_load(Path(args.functions_from).read_text()))
        except (OSError, yaml.YAMLError, ValidationError, KeyError, TypeError) as exc:
            print(
                f"Error: {args.functions_from}: not a Serve config of cvat-ray ({exc})",
                file=sys.stderr,
            )
            return 2
    revision = _migrate(settings)
    print(f"Database is at revision {revision}.")
    if specs is not None:
        from cvat_ray.storage.services import lambda_functions

        source = "serve-config"
        removed = _in_session(settings, lambda s: lambda_functions.replace_source(s, specs, source))
        print(
            f"Functions of the Serve config registered: {', '.join(s.id for s in specs) or '-'}"
            + (f"; removed: {', '.join(removed)}" if removed else "")
        )
    if args.ensure_admin:
        admin, _ = _ensure_admin(settings)
        print(f"Superuser {admin!r} is there (created with CVAT_RAY_ADMIN_PASSWORD if it was not).")
    return 0


class _Bar:
    """A one-line progress bar on a terminal's stderr (nothing when it is not a terminal)."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.on = sys.stderr.isatty()
        self._last = ""

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self.on:
            return
        width = 30
        filled = width * done // max(total, 1)
        line = f"\r{self.title} {what:<6} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
        if line != self._last:
            sys.stderr.write(line)
            sys.stderr.flush()
            self._last = line

    def close(self) -> None:
        if self.on and self._last:
            sys.stderr.write("\n")


def cmd_backup_create(args: argparse.Namespace) -> int:
    from cvat_ray.storage import instance_backup

    settings = _apply_overrides(args.data_dir)
    db = _database(settings)
    bar = _Bar("backup")
    try:
        manifest = instance_backup.create(settings, db.engine, Path(args.output), progress=bar)
    finally:
        bar.close()
        db.dispose()
    rows = sum(manifest["tables"].values())
    print(
        f"Wrote {args.output}: schema revision {manifest['revision']}, "
        f"{len(manifest['tables'])} tables, {rows} rows."
    )
    return 0


def cmd_backup_restore(args: argparse.Namespace) -> int:
    from cvat_ray.cluster.errors import InvalidInput
    from cvat_ray.storage import instance_backup

    settings = _apply_overrides(args.data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = _database(settings)
    bar = _Bar("restore")
    try:
        manifest = instance_backup.restore(
            settings, db.engine, Path(args.input), force=args.force, progress=bar
        )
    except InvalidInput as exc:
        bar.close()
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    bar.close()
    print(
        f"Restored {args.input} (revision {manifest['revision']}, taken "
        f"{manifest['created']}) into {settings.data_dir}; the database is at revision "
        f"{_migrate(settings)}."
    )
    return 0


def cmd_createsuperuser(args: argparse.Namespace) -> int:
    from cvat_ray.cluster.errors import AppError
    from cvat_ray.storage.services.accounts import validate_new_password
    from cvat_ray.storage.services.users import create_user

    settings = _apply_overrides(args.data_dir)
    _migrate(settings)
    username = args.username
    password = args.password
    email = args.email
    if args.no_input or (username and password):
        if not username or not password:
            print("Error: --username and --password are required with --no-input.", file=sys.stderr)
            return 2
    else:
        username = username or input("Username: ").strip()
        email = email if email is not None else input("Email address: ").strip()
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            print("Error: your passwords didn't match.", file=sys.stderr)
            return 1
    db = _database(settings)
    try:
        with db.session() as session:
            validate_new_password(password, settings.auth.password_min_length, "password", username)
            create_user(
                session,
                username=username,
                password=password,
                email=email or "",
                groups=("admin",),
                is_superuser=True,
            )
    except AppError as exc:
        print(f"Error: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    print(f"Superuser {username!r} created.")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    # Background work runs on Ray runner actors (the API replicas and workers inherit this).
    os.environ["CVAT_RAY_BACKGROUND__LAUNCHER"] = "ray"
    settings = _apply_overrides(args.data_dir, args.host, args.port)
    from cvat_ray.cluster import runtime

    if not runtime.port_is_free(settings.server.host, settings.server.port):
        print(
            f"Error: {settings.server.host}:{settings.server.port} is in use. "
            "Pick another with --port.",
            file=sys.stderr,
        )
        return 1
    settings.media_dir.mkdir(parents=True, exist_ok=True)
    revision = _migrate(settings)
    admin, password = _ensure_admin(settings)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    print(f"Starting Ray (database at revision {revision})...", flush=True)
    ray_runtime = runtime.start(settings)
    # After ray.init: Ray installs its own SIGTERM handler, which would kill us uncleanly.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        from cvat_ray.cluster.names import API_APP
        from cvat_ray.serve_apps import deploy
        from cvat_ray.storage.services import lambda_functions

        db = _database(settings)
        try:
            problems = deploy.register_startup_functions(settings, db)
            with db.session() as session:
                specs = lambda_functions.registered(session)
        finally:
            db.dispose()
        # One config for everything Serve runs (what `cvat-ray serve-config` prints).
        config = deploy.serve_config(settings, specs)
        deploy.validate(config)
        deploy.start(config)
        api_url = f"http://{settings.server.host}:{settings.server.port}"
        # Written before the API answers: from then on the CLI talks to this server.
        started = datetime.now(UTC).isoformat()
        _write_state(settings, api_url, ray_runtime, started, phase="starting")
        deploy.run(config, [API_APP])
        for problem in problems:
            print(f"  Function skipped: {problem}", flush=True)
        deploy.run(config, [a["name"] for a in config["applications"] if a["name"] != API_APP])
        functions = [spec.id for spec in specs]
        from cvat_ray.actors.launcher import start_ray_workers

        start_ray_workers(settings)
        _write_state(settings, api_url, ray_runtime, started, phase="running")
        print(f"\ncvat-ray is up.\n  API:           {api_url}/api/  (OpenAPI {api_url}/api/schema)")
        if ray_runtime.dashboard_url:
            note = f" (token: {ray_runtime.token_path})" if ray_runtime.token_path else ""
            print(f"  Ray dashboard: {ray_runtime.dashboard_url}{note}")
        if functions:
            print(f"  Functions:     {', '.join(functions)}")
        if password:
            print(f"  Log in as {admin!r} with password {password!r} (shown only this once).")
        else:
            print(f"  Log in as {admin!r} with its password.")
        print("  Press Ctrl-C to stop.", flush=True)
        while not stop.wait(1.0):
            pass
        print("Stopping...", flush=True)
        deploy.shutdown()
    finally:
        settings.state_file.unlink(missing_ok=True)
        runtime.stop()
    print("Stopped.", flush=True)
    return 0


def _write_state(
    settings: Settings, api_url: str, ray_runtime: Any, started: str, *, phase: str
) -> None:
    """The state file of a running ``up`` (``phase``: ``starting`` until everything is
    deployed, then ``running``), replaced whole so that a reader never sees half of it."""
    state = {
        "pid": os.getpid(),
        "phase": phase,
        "api_url": api_url,
        "dashboard_url": ray_runtime.dashboard_url,
        "ray_address": ray_runtime.address,
        "token_path": str(ray_runtime.token_path) if ray_runtime.token_path else None,
        "started": started,
    }
    partial = settings.state_file.with_name(settings.state_file.name + ".part")
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(settings.state_file)


def _get_json(url: str, token: str | None = None, timeout: float = 5) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        return json.loads(r.read())


def cmd_status(args: argparse.Namespace) -> int:
    settings = _apply_overrides(args.data_dir)
    if not settings.state_file.exists():
        print(f"cvat-ray is not running (no {settings.state_file}).")
        return 3
    state = json.loads(settings.state_file.read_text())
    try:
        os.kill(state["pid"], 0)
    except (ProcessLookupError, PermissionError):
        print(f"cvat-ray is not running (stale state, pid {state['pid']} is gone).")
        return 3
    phase = "starting" if state.get("phase") == "starting" else "running"
    print(f"cvat-ray is {phase} (pid {state['pid']}, started {state['started']}).")
    print(f"  API:           {state['api_url']}/api/")
    try:
        about = _get_json(f"{state['api_url']}/api/server/about")
        print(f"  API answers:   {about['name']} {about['version']}")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        print(f"  API answers:   no ({exc})")
    dashboard = state.get("dashboard_url")
    if dashboard:
        print(f"  Ray dashboard: {dashboard}")
        token = Path(state["token_path"]).read_text().strip() if state.get("token_path") else None
        try:
            details = _get_json(f"{dashboard}/api/serve/applications/", token)
            for name, app in details.get("applications", {}).items():
                print(f"  Serve app {name!r}: {app.get('status')}")
                for dep_name, dep in app.get("deployments", {}).items():
                    replicas = dep.get("replicas", [])
                    running = sum(1 for r in replicas if r.get("state") == "RUNNING")
                    print(
                        f"    deployment {dep_name}: {dep.get('status')}, "
                        f"{running} running replica(s)"
                    )
        except (OSError, urllib.error.URLError, ValueError) as exc:
            print(f"  Serve status unavailable: {exc}")
    return 0


def _running_state(settings: Settings) -> dict[str, Any] | None:
    """The state file of a running ``up`` on this data dir, or None."""
    if not settings.state_file.exists():
        return None
    state: dict[str, Any] = json.loads(settings.state_file.read_text())
    try:
        os.kill(state["pid"], 0)
    except (ProcessLookupError, PermissionError):
        return None
    return state


def _connect(settings: Settings) -> dict[str, Any] | None:
    """Join the cluster of a running ``up`` (or ``RAY_ADDRESS``); None when there is none.
    Returns what is known about it (dashboard URL, token path)."""
    state = _running_state(settings)
    address = settings.ray.address or os.environ.get("RAY_ADDRESS")
    if state is None and not address:
        return None
    if state is not None and not address:
        address = state["ray_address"]
        if state.get("token_path"):
            os.environ["RAY_AUTH_MODE"] = "token"
            os.environ["RAY_AUTH_TOKEN_PATH"] = state["token_path"]
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    from cvat_ray.cluster.names import NAMESPACE

    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    return state or {"ray_address": address}


def cmd_functions_deploy(args: argparse.Namespace) -> int:
    from cvat_ray.cluster.errors import AppError
    from cvat_ray.storage.functions.spec import load_spec_file
    from cvat_ray.storage.services import lambda_functions

    settings = _apply_overrides(args.data_dir)
    try:
        spec = load_spec_file(Path(args.path).resolve())
    except AppError as exc:
        print(f"Error: {exc.detail}", file=sys.stderr)
        return 2
    if args.check:
        from cvat_ray.actors.functions.host import ModelHost

        try:
            ModelHost(spec, device="cpu")
        except Exception as exc:
            print(f"Error: {spec.id}: the model does not load: {exc}", file=sys.stderr)
            return 2
    _in_session(
        settings, lambda s: lambda_functions.register(s, spec, str(Path(args.path).resolve()))
    )
    if _connect(settings) is None:
        print(f"Function {spec.id!r} registered; the next `cvat-ray up` deploys it.")
        return 0
    from cvat_ray.serve_apps.deploy import deploy_function

    deploy_function(spec, wait=True)
    print(
        f"Function {spec.id!r} deployed (Serve application {lambda_functions.app_name(spec.id)!r})."
    )
    return 0


def cmd_functions_list(args: argparse.Namespace) -> int:
    from cvat_ray.storage.services import lambda_functions

    settings = _apply_overrides(args.data_dir)
    specs = _in_session(settings, lambda_functions.registered)
    states: dict[str, str] = {}
    if _connect(settings) is not None:
        from cvat_ray.serve_apps.deploy import function_states

        states = function_states()
    if args.json:
        print(json.dumps([s.to_cvat() | {"serve": states.get(s.id)} for s in specs], indent=2))
        return 0
    print(f"{'ID':24} {'KIND':11} {'VERSION':7} {'SERVE':14} NAME")
    for s in specs:
        state = states.get(s.id, "not running" if states else "-")
        print(f"{s.id:24} {s.kind:11} {s.version:<7} {state:14} {s.name}")
    return 0


def cmd_functions_delete(args: argparse.Namespace) -> int:
    """Serve's application first, then the registration: when Serve cannot delete the
    application, nothing changes and the command fails."""
    from cvat_ray.storage.services import lambda_functions

    settings = _apply_overrides(args.data_dir)
    if _connect(settings) is not None:
        from cvat_ray.serve_apps.deploy import ServeFailure, delete_function

        try:
            delete_function(args.id)
        except ServeFailure as exc:
            name = lambda_functions.app_name(args.id)
            print(
                f"Error: Serve could not delete the application {name!r} ({exc}); "
                f"the function {args.id!r} stays registered.",
                file=sys.stderr,
            )
            return 1
    found = _in_session(settings, lambda s: lambda_functions.unregister(s, args.id))
    if not found:
        print(f"Error: no function {args.id!r}.", file=sys.stderr)
        return 1
    print(f"Function {args.id!r} deleted.")
    return 0


def cmd_functions_invoke(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from cvat_ray.cluster.errors import AppError
    from cvat_ray.storage.services import lambda_functions

    settings = _apply_overrides(args.data_dir)
    try:
        spec = _in_session(settings, lambda s: lambda_functions.get_spec(s, args.id))
    except AppError as exc:
        print(f"Error: {exc.detail}", file=sys.stderr)
        return 1
    try:
        with Image.open(args.image) as im:
            image = np.asarray(im.convert("RGB"))
    except OSError as exc:
        print(f"Error: {args.image}: not an image ({exc})", file=sys.stderr)
        return 2
    payload: dict[str, Any] = json.loads(args.data) if args.data else {}
    if spec.kind == "detector":
        call_args: tuple[Any, ...] = (image, args.threshold, False)
        method = "detect"
    elif spec.kind == "interactor":
        box = payload.get("obj_bbox")
        call_args = (
            image,
            [tuple(p) for p in payload.get("pos_points", [])],
            [tuple(p) for p in payload.get("neg_points", [])],
            tuple(box) if box else None,
        )
        method = "interact"
    else:
        call_args = (image, payload.get("shapes"), payload.get("states"))
        method = "track"
    if args.local or _connect(settings) is None:
        from cvat_ray.actors.functions.host import ModelHost

        result: Any = ModelHost(spec, device="cpu").call(method, *call_args)
    else:
        from ray import serve

        handle = serve.get_app_handle(lambda_functions.app_name(spec.id))
        result = (
            getattr(handle, method)
            .remote(*call_args)
            .result(timeout_s=settings.functions.call_timeout_s)
        )
    print(json.dumps(result, indent=2))
    return 0


def cmd_serve_config(args: argparse.Namespace) -> int:
    """Print the Serve config of the API and the functions (what ``up`` deploys)."""
    from cvat_ray.serve_apps import deploy
    from cvat_ray.storage.services import lambda_functions

    settings = _apply_overrides(args.data_dir, args.host, args.port)
    specs = {spec.id: spec for spec in _in_session(settings, lambda_functions.registered)}
    found, problems = deploy.startup_specs(settings)
    specs.update((spec.id, spec) for spec, _ in found)
    for problem in problems:
        print(f"Function skipped: {problem}", file=sys.stderr)
    config = deploy.serve_config(
        settings, [specs[key] for key in sorted(specs)], cpus=args.cpus or deploy.cluster_cpus()
    )
    deploy.validate(config)
    print(deploy.config_yaml(config), end="")
    return 0


def cmd_auto_annotate(args: argparse.Namespace) -> int:
    """Submit a dataset run as a Ray job (Jobs API, token auth) and follow it."""
    settings = _apply_overrides(args.data_dir)
    from cvat_ray.storage.services.lambda_runs import dataset_argv

    argv = dataset_argv(
        args.function,
        task_ids=args.task,
        project_id=args.project,
        organization=args.organization,
        threshold=args.threshold,
        cleanup=args.cleanup,
        run=args.run,
    )
    if args.local:
        from cvat_ray.actors import dataset_run

        return dataset_run.main([*argv, "--engine", "local"])
    if args.kubernetes:
        return _auto_annotate_kubernetes(args, argv)
    state = _running_state(settings)
    dashboard = args.dashboard or (state or {}).get("dashboard_url")
    if not dashboard:
        print(
            "Error: no running cvat-ray on this data dir and no --dashboard; start `cvat-ray up` "
            "or use --local.",
            file=sys.stderr,
        )
        return 2
    token_path = (state or {}).get("token_path")
    if token_path and "RAY_AUTH_TOKEN" not in os.environ:
        os.environ["RAY_AUTH_TOKEN_PATH"] = token_path
    from ray.job_submission import JobStatus, JobSubmissionClient

    from cvat_ray.actors.jobs import ray_token_headers, submit_dataset_job

    headers = ray_token_headers()
    # The local `up`'s cluster runs this very Python; a remote one has `python` on its PATH.
    python = sys.executable if not args.dashboard else "python"
    gcs = None if args.dashboard else (state or {}).get("ray_address")
    job_id = submit_dataset_job(dashboard, argv, headers=headers, python=python, gcs_address=gcs)
    client = JobSubmissionClient(dashboard, headers=headers)
    print(f"Submitted Ray job {job_id} ({dashboard}/#/jobs/{job_id}).", flush=True)
    if args.no_wait:
        return 0
    import time

    shown = 0
    while True:
        status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            print(logs[shown:], end="", flush=True)
            shown = len(logs)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            print(f"Ray job {job_id}: {status}.")
            return 0 if status == JobStatus.SUCCEEDED else 1
        time.sleep(1.0)


def _auto_annotate_kubernetes(args: argparse.Namespace, argv: list[str]) -> int:
    """Create the dataset run's RayJob from the chart's template and follow its status."""
    import yaml

    from cvat_ray.actors import kuberay

    try:
        custom, core = kuberay.clients(args.kubeconfig, args.context)
        if args.template:
            loaded = yaml.safe_load(Path(args.template).read_text())
            if loaded.get("kind") == "ConfigMap":
                template, rayservice = kuberay.template_from_configmap(loaded)
            else:
                template, rayservice = loaded, None
        else:
            template, rayservice = kuberay.load_template(core, args.namespace, args.release)
        rayservice = args.rayservice or rayservice
        cluster = None
        if "clusterSelector" in template.get("spec", {}):
            if not rayservice:
                print("Error: the template runs on the RayService: --rayservice", file=sys.stderr)
                return 2
            cluster = kuberay.rayservice_cluster(custom, args.namespace, rayservice)
        manifest = kuberay.rayjob_manifest(template, argv, cluster=cluster, run=args.run)
        name = kuberay.submit(custom, args.namespace, manifest)
    except Exception as exc:
        error = exc if isinstance(exc, kuberay.RayJobError) else kuberay.api_error(exc)
        if error is None:
            raise
        print(f"Error: {error}", file=sys.stderr)
        return 2
    where = f"on cluster {cluster}" if cluster else "on a cluster of its own"
    print(f"Created RayJob {args.namespace}/{name} ({where}).", flush=True)
    if args.no_wait:
        return 0
    try:
        final = kuberay.follow(
            custom,
            args.namespace,
            name,
            on_change=lambda state: print(f"RayJob {name}: {state.summary()}", flush=True),
            poll_s=args.poll_s,
        )
    except Exception as exc:
        error = kuberay.api_error(exc)
        if error is None:
            raise
        print(f"Error: RayJob {name}: {error}", file=sys.stderr)
        return 1
    return 0 if final.succeeded else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cvat-ray",
        description="A CVAT 2.80-compatible annotation server on Ray. "
        "Settings come from CVAT_RAY_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir",
            default=None,
            help="Data directory (default: $CVAT_RAY_DATA_DIR or ./cvat-data)",
        )

    up = sub.add_parser("up", help="Start Ray, migrate, deploy the API and stay in the foreground")
    up.add_argument("--host", default=None, help="Address to listen on (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=None, help="HTTP port (default 8080)")
    data_dir(up)
    up.set_defaults(func=cmd_up)

    migrate = sub.add_parser("migrate", help="Apply database migrations")
    migrate.add_argument(
        "--ensure-admin",
        action="store_true",
        help="Then create the admin (CVAT_RAY_ADMIN_USERNAME, CVAT_RAY_ADMIN_PASSWORD) when the "
        "database has no superuser yet",
    )
    migrate.add_argument(
        "--functions-from",
        default=None,
        metavar="SERVE_CONFIG",
        help="Then register the functions of this Serve config (what a RayService deploys) and "
        "remove those an earlier config registered that it no longer has",
    )
    data_dir(migrate)
    migrate.set_defaults(func=cmd_migrate)

    backup = sub.add_parser("backup", help="Back up or restore the whole instance")
    bsub = backup.add_subparsers(dest="backup_command", required=True)
    bcreate = bsub.add_parser(
        "create", help="Write the database, media, uploads and secrets into one archive"
    )
    bcreate.add_argument("output", help="The archive to write (a .tar file)")
    data_dir(bcreate)
    bcreate.set_defaults(func=cmd_backup_create)
    brestore = bsub.add_parser(
        "restore", help="Restore an archive into an empty data dir and database, then migrate"
    )
    brestore.add_argument("input", help="An archive written by `cvat-ray backup create`")
    brestore.add_argument(
        "--force", action="store_true", help="Replace what the target data dir and database hold"
    )
    data_dir(brestore)
    brestore.set_defaults(func=cmd_backup_restore)

    su = sub.add_parser("createsuperuser", help="Create an admin account")
    su.add_argument("--username", default=None)
    su.add_argument("--password", default=None, help="Non-interactive password")
    su.add_argument("--email", default=None)
    su.add_argument("--no-input", action="store_true", help="Never prompt")
    data_dir(su)
    su.set_defaults(func=cmd_createsuperuser)

    status = sub.add_parser("status", help="Show what is deployed, replicas and URLs")
    data_dir(status)
    status.set_defaults(func=cmd_status)

    functions = sub.add_parser("functions", help="Deploy, list, delete and invoke functions")
    fsub = functions.add_subparsers(dest="functions_command", required=True)
    fdeploy = fsub.add_parser("deploy", help="Validate a spec file, register and deploy it")
    fdeploy.add_argument("path", help="Function spec (YAML)")
    fdeploy.add_argument(
        "--check", action="store_true", help="Load the model here first and refuse if it fails"
    )
    data_dir(fdeploy)
    fdeploy.set_defaults(func=cmd_functions_deploy)
    flist = fsub.add_parser("list", help="Registered functions and their Serve status")
    flist.add_argument("--json", action="store_true", help="As JSON (CVAT's function objects)")
    data_dir(flist)
    flist.set_defaults(func=cmd_functions_list)
    fdelete = fsub.add_parser("delete", help="Remove a function and its Serve application")
    fdelete.add_argument("id")
    data_dir(fdelete)
    fdelete.set_defaults(func=cmd_functions_delete)
    finvoke = fsub.add_parser("invoke", help="Run a function on one image and print the JSON")
    finvoke.add_argument("id")
    finvoke.add_argument("--image", required=True, help="Image file")
    finvoke.add_argument("--threshold", type=float, default=0.5, help="Detectors: threshold")
    finvoke.add_argument(
        "--data", default=None, help="Interactors/trackers: JSON with pos_points, shapes, ..."
    )
    finvoke.add_argument(
        "--local", action="store_true", help="Load the model here instead of calling Serve"
    )
    data_dir(finvoke)
    finvoke.set_defaults(func=cmd_functions_invoke)

    config = sub.add_parser(
        "serve-config",
        help="Print the Serve config (YAML) of the API and the functions, as `up` deploys it",
    )
    config.add_argument("--host", default=None, help="Address the proxy listens on")
    config.add_argument("--port", type=int, default=None, help="HTTP port of the proxy")
    config.add_argument(
        "--cpus",
        type=float,
        default=None,
        help="CPUs of the cluster, for GPU functions' request queues (default: this machine's)",
    )
    data_dir(config)
    config.set_defaults(func=cmd_serve_config)

    auto = sub.add_parser(
        "auto-annotate", help="Annotate tasks, a project or an organization with a function"
    )
    auto.add_argument("--function", required=True, help="Function id")
    scope = auto.add_mutually_exclusive_group(required=True)
    scope.add_argument("--task", type=int, action="append", default=[], help="Task id (repeat)")
    scope.add_argument("--project", type=int, default=None, help="Every task of a project")
    scope.add_argument("--organization", default=None, help="Every task of an organization")
    auto.add_argument("--threshold", type=float, default=None, help="Confidence threshold")
    auto.add_argument("--cleanup", action="store_true", help="Delete existing annotations first")
    auto.add_argument("--run", default=None, help="Run name; the same name resumes a run")
    auto.add_argument("--no-wait", action="store_true", help="Submit and return")
    auto.add_argument(
        "--dashboard", default=None, help="Ray dashboard URL (default: the running up)"
    )
    auto.add_argument(
        "--local", action="store_true", help="Run here without Ray (threads), not as a Ray job"
    )
    kube = auto.add_argument_group("Kubernetes (KubeRay RayJob from the Helm chart's template)")
    kube.add_argument(
        "--kubernetes", action="store_true", help="Create a RayJob and follow its status"
    )
    kube.add_argument("--namespace", default="default", help="Namespace of the release")
    kube.add_argument("--release", default="cvat", help="Helm release name (finds the template)")
    kube.add_argument(
        "--template",
        default=None,
        help="A RayJob template file (or the dataset-run ConfigMap) instead of the release's",
    )
    kube.add_argument(
        "--rayservice", default=None, help="RayService whose cluster runs it (default: the chart's)"
    )
    kube.add_argument("--kubeconfig", default=None, help="Kubeconfig (default: ~/.kube/config)")
    kube.add_argument("--context", default=None, help="Kubeconfig context")
    kube.add_argument("--poll-s", type=float, default=2.0, help="Seconds between status reads")
    data_dir(auto)
    auto.set_defaults(func=cmd_auto_annotate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
