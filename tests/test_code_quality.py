"""The code stays ruff- and mypy-clean, and the README documents every setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cvat_ray.cluster.settings import env_table

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)


def test_ruff() -> None:
    result = _run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr
    result = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = _run(str(BIN / "mypy"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [env for env, _, _ in env_table() if f"`{env}`" not in readme]
    assert not missing, f"README.md lacks: {missing}"


def test_wheel_installs_only_the_cvat_ray_namespace(tmp_path: Path) -> None:
    """``pip install cvat-ray`` puts one top-level package in site-packages: ``cvat_ray``
    (with its data files), nothing generic like ``storage`` or ``cluster``."""
    import zipfile

    result = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--quiet",
        "--wheel-dir",
        str(tmp_path),
        str(ROOT),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("cvat_ray-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert top == {"cvat_ray"}
    for packaged in (
        "cvat_ray/cli.py",
        "cvat_ray/storage/migrations/env.py",
        "cvat_ray/storage/migrations/versions/0001_initial_schema.py",
        "cvat_ray/iam/rules/tasks.rego",
        "cvat_ray/iam/rules/tables/tasks.json",
        "cvat_ray/actors/functions/specs/colour-detector.yaml",
    ):
        assert packaged in names


def test_routers_take_app_parts_and_bodies_typed() -> None:
    """Routers get the app's parts as typed dependencies (``SettingsDep``, ``MediaDep``, ...
    from ``serve_apps/deps.py``, the one place that reads ``app.state``) and their bodies as
    typed parameters; the few bodies read by hand (annotations, uploads) go through
    ``bodies``/``deps`` helpers and are declared with ``openapi_extra``."""
    banned = ("app.state", "request.json(", "request.body(", "request.form(", "json.loads(")
    found = [
        f"{path.relative_to(ROOT)}: {needle}"
        for path in sorted((ROOT / "serve_apps" / "routers").glob("*.py"))
        for needle in banned
        if needle in path.read_text()
    ]
    assert not found, found
