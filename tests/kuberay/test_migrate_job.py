"""What the chart's migration Job runs: ``cvat-ray migrate --functions-from SERVE_CONFIG
--ensure-admin``. The functions of the RayService's Serve config become the registered ones
(the API calls only registered functions), a later config's removals are removed, the admin
comes from the settings once; bad input fails with a message and changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from cvat_ray.cli import main
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.passwords import verify_password
from cvat_ray.storage.db import Database
from cvat_ray.storage.models import User
from cvat_ray.storage.services import lambda_functions
from tests.kuberay.manifests import CHART

GENERATED = CHART / "files" / "serve-config.yaml"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("CVAT_RAY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CVAT_RAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CVAT_RAY_ADMIN_USERNAME", "root")
    monkeypatch.setenv("CVAT_RAY_ADMIN_PASSWORD", "Migrate-Job-1")
    return tmp_path


def _state(data: Path) -> tuple[list[str], list[str]]:
    db = Database(Settings(data_dir=data).database_url)
    try:
        with db.session() as session:
            functions = [s.id for s in lambda_functions.registered(session)]
            users = list(session.scalars(select(User.username).where(User.is_superuser)))
        return functions, users
    finally:
        db.dispose()


def test_the_migration_job(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = env / "data"
    config = yaml.safe_load(GENERATED.read_text())
    expected = sorted(
        a["args"]["spec"]["id"] for a in config["applications"] if a["name"] != "cvat-api"
    )
    args = ["migrate", "--functions-from", str(GENERATED), "--ensure-admin"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Functions of the Serve config registered: " + ", ".join(expected) in out
    assert _state(data) == (expected, ["root"])
    # a function registered by hand (functions deploy) is not the config's to remove
    mine = env / "mine.yaml"
    mine.write_text(
        "id: mine\nname: Mine\nkind: detector\nlabels: [{name: red}]\nruntime: {class: colour}\n"
    )
    assert main(["functions", "deploy", str(mine)]) == 0
    # the next upgrade's config has one function less: it goes; the admin stays as it is
    smaller = env / "smaller.yaml"
    config["applications"] = [a for a in config["applications"] if a["name"] != "cvat-fn-grabcut"]
    smaller.write_text(yaml.safe_dump(config))
    os.environ["CVAT_RAY_ADMIN_PASSWORD"] = "Another-Password-2"
    assert main(["migrate", "--functions-from", str(smaller), "--ensure-admin"]) == 0
    assert "removed: grabcut" in capsys.readouterr().out
    functions, admins = _state(data)
    assert functions == sorted([*(f for f in expected if f != "grabcut"), "mine"])
    assert admins == ["root"]
    db = Database(Settings(data_dir=data).database_url)
    try:
        with db.session() as session:
            user = session.scalars(select(User).where(User.username == "root")).one()
            assert verify_password(user.password_hash, "Migrate-Job-1")
    finally:
        db.dispose()


def test_bad_input_changes_nothing(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = env / "data"
    broken = env / "broken.yaml"
    broken.write_text(
        yaml.safe_dump(
            {
                "applications": [
                    {
                        "name": "cvat-fn-x",
                        "import_path": "cvat_ray.serve_apps.function_app:build_function_app",
                        "args": {"spec": {"id": "x"}},
                    }
                ]
            }
        )
    )
    assert main(["migrate", "--functions-from", str(broken)]) == 2
    assert "not a Serve config of cvat-ray" in capsys.readouterr().err
    assert not (data / "cvat.db").exists()
    os.environ.pop("CVAT_RAY_ADMIN_PASSWORD")
    assert main(["migrate", "--ensure-admin"]) == 2
    assert "--ensure-admin needs CVAT_RAY_ADMIN_PASSWORD" in capsys.readouterr().err
    assert not (data / "cvat.db").exists()
