"""The ``cvat-ray`` command line.

The CLI is the composition root: it is the only code in ``cluster/`` that reaches up into
``storage/`` and ``serve_apps/``, and it does so inside each command so that ``--help`` stays
fast and Ray is imported only after its environment (token auth) is set.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cluster.settings import Settings, get_settings, reset_settings_cache


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
    from storage.db import Database

    return Database(settings.database_url, pool_size=2)


def _migrate(settings: Settings) -> str:
    from storage.migrate import current_revision, upgrade

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

    from iam.keys import new_password
    from storage.models import User
    from storage.services.accounts import ensure_superuser

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
    revision = _migrate(settings)
    print(f"Database is at revision {revision}.")
    return 0


def cmd_createsuperuser(args: argparse.Namespace) -> int:
    from cluster.errors import AppError
    from storage.services.accounts import validate_new_password
    from storage.services.users import create_user

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
    # Task data is processed by Ray actors (the API replicas and workers inherit this).
    os.environ["CVAT_RAY_MEDIA__LAUNCHER"] = "ray"
    settings = _apply_overrides(args.data_dir, args.host, args.port)
    from cluster import runtime

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
        from serve_apps import deploy

        deploy.deploy(settings)
        from actors.launcher import start_ray_workers

        start_ray_workers(settings)
        api_url = f"http://{settings.server.host}:{settings.server.port}"
        _write_state(settings, api_url, ray_runtime)
        print(f"\ncvat-ray is up.\n  API:           {api_url}/api/  (OpenAPI {api_url}/api/schema)")
        if ray_runtime.dashboard_url:
            note = f" (token: {ray_runtime.token_path})" if ray_runtime.token_path else ""
            print(f"  Ray dashboard: {ray_runtime.dashboard_url}{note}")
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


def _write_state(settings: Settings, api_url: str, ray_runtime: Any) -> None:
    state = {
        "pid": os.getpid(),
        "api_url": api_url,
        "dashboard_url": ray_runtime.dashboard_url,
        "ray_address": ray_runtime.address,
        "token_path": str(ray_runtime.token_path) if ray_runtime.token_path else None,
        "started": datetime.now(UTC).isoformat(),
    }
    settings.state_file.write_text(json.dumps(state, indent=2))


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
    print(f"cvat-ray is running (pid {state['pid']}, started {state['started']}).")
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
    data_dir(migrate)
    migrate.set_defaults(func=cmd_migrate)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
