"""The Serve config (``cvat-ray serve-config``): the applications as Serve's config files and a
RayService's ``serveConfigV2`` describe them, valid by Serve's own schema, with the options
the settings and specs give and no setting in any ``args``; Serve itself deploys a function
from it through its config path (``serve run CONFIG``, what KubeRay does)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from cvat_ray.actors.functions.host import MODEL_PROCESS_ENV
from cvat_ray.actors.functions.synthetic import make_scene
from cvat_ray.cli import main
from cvat_ray.cluster.names import API_APP, API_DEPLOYMENT, FUNCTION_DEPLOYMENT
from cvat_ray.cluster.runtime import free_port
from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps import deploy
from cvat_ray.serve_apps.function_app import function_deployment
from cvat_ray.serve_apps.ingress import api_deployment
from cvat_ray.storage.functions.spec import FunctionSpec, load_spec_file, spec_files
from tests.factories import colour_spec
from tests.ray_cluster import RayCluster

SECRETS = {
    "CVAT_RAY_DATABASE__URL": "postgresql+psycopg2://cvat:db-Secret-1@127.0.0.1:5432/x",
    "CVAT_RAY_LDAP__BIND_PASSWORD": "bind-Secret-2",
    "CVAT_RAY_ADMIN_PASSWORD": "admin-Secret-3",
}


def _builtin_specs() -> list[FunctionSpec]:
    return [load_spec_file(p) for p in spec_files(deploy.builtin_spec_dir())]


def _options(application: dict[str, Any]) -> dict[str, Any]:
    (entry,) = application["deployments"]
    return {k: v for k, v in entry.items() if k != "name"}


def test_the_config_is_serves_and_holds_no_setting(tmp_path: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    settings = Settings(
        data_dir=tmp_path,
        database={"url": SECRETS["CVAT_RAY_DATABASE__URL"]},
        ldap={"bind_password": SecretStr(SECRETS["CVAT_RAY_LDAP__BIND_PASSWORD"])},
        admin_password=SecretStr(SECRETS["CVAT_RAY_ADMIN_PASSWORD"]),
    )
    specs = _builtin_specs()
    config = deploy.serve_config(settings, specs, cpus=4)
    deploy.validate(config)
    text = deploy.config_yaml(config)
    schema = ServeDeploySchema.model_validate(yaml.safe_load(text))  # what KubeRay parses
    assert [a.name for a in schema.applications] == [API_APP, *(f"cvat-fn-{s.id}" for s in specs)]
    for secret in SECRETS.values():
        assert secret not in text
    for value in ("db-Secret-1", str(tmp_path)):
        assert value not in text
    api, *functions = config["applications"]
    assert api["args"] == {} and api["route_prefix"] == "/"
    for spec, application in zip(specs, functions, strict=True):
        assert application["route_prefix"] is None
        assert set(application["args"]) == {"spec"}
        assert FunctionSpec.model_validate(application["args"]["spec"]) == spec
    # each import_path is a typed builder: one parameter, a pydantic model Serve validates
    # the config's args into
    for application in config["applications"]:
        module, _, name = application["import_path"].partition(":")
        builder = getattr(importlib.import_module(module), name)
        (param,) = inspect.signature(builder).parameters.values()
        assert inspect.isclass(param.annotation) and issubclass(param.annotation, BaseModel)
        param.annotation.model_validate(application["args"])


def test_settings_and_specs_give_the_deployments_options(tmp_path: Path) -> None:
    """What ``up`` deployed before the config existed, now carried by the config: the API's
    replicas, CPUs and logging from ``api.*``; a function's CPUs, GPUs, memory, autoscaling,
    the model processes' allocator settings and its request cap (``run_shape``)."""
    settings = Settings(
        data_dir=tmp_path,
        api={"num_cpus": 0.3, "min_replicas": 2, "max_replicas": 3, "max_ongoing_requests": 40},
    )
    gpu = colour_spec(num_gpus=1, memory=2**30).model_copy(update={"id": "gpu-colour"})
    config = deploy.serve_config(settings, [colour_spec(), gpu], cpus=16)
    api, cpu_fn, gpu_fn = config["applications"]
    assert api["deployments"][0]["name"] == API_DEPLOYMENT
    api_options = _options(api)
    assert api_options["ray_actor_options"] == {"num_cpus": 0.3}
    assert api_options["autoscaling_config"]["min_replicas"] == 2
    assert api_options["autoscaling_config"]["max_replicas"] == 3
    deployed = api_deployment(api_options)
    assert deployed.max_ongoing_requests == 40
    assert deployed.ray_actor_options["num_cpus"] == 0.3

    from cvat_ray.actors.stages import run_shape
    from cvat_ray.serve_apps.function_app import max_ongoing_requests

    for application, spec in ((cpu_fn, colour_spec()), (gpu_fn, gpu)):
        assert application["deployments"][0]["name"] == FUNCTION_DEPLOYMENT
        options = _options(application)
        actor = options["ray_actor_options"]
        assert actor["runtime_env"] == {"env_vars": MODEL_PROCESS_ENV}
        assert actor["num_cpus"] == spec.resources.num_cpus
        assert options["max_ongoing_requests"] == max_ongoing_requests(spec, 16)
        scaling = options["autoscaling_config"]
        assert (scaling["min_replicas"], scaling["max_replicas"]) == (1, 1)
        deployed = function_deployment(options)
        assert deployed.max_ongoing_requests == options["max_ongoing_requests"]
        assert deployed.ray_actor_options["runtime_env"] == {"env_vars": MODEL_PROCESS_ENV}
    assert _options(gpu_fn)["ray_actor_options"]["num_gpus"] == 1
    assert _options(gpu_fn)["ray_actor_options"]["memory"] == 2**30
    tasks, in_flight = run_shape(gpu, 16)
    assert _options(gpu_fn)["max_ongoing_requests"] == tasks * in_flight + 1


def test_serve_config_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Prints the config of the API, the built-in functions and those registered, for the
    given cluster size; a secret in the environment stays out of it."""
    for key in ("CVAT_RAY_DATA_DIR", "RAY_ADDRESS", "CVAT_RAY_DATABASE__URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CVAT_RAY_LDAP__BIND_PASSWORD", SECRETS["CVAT_RAY_LDAP__BIND_PASSWORD"])
    data = str(tmp_path / "data")
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "id: mine\nname: Mine\nkind: detector\nlabels: [{name: red}]\n"
        "runtime: {class: colour}\nresources: {num_gpus: 1}\n"
    )
    assert main(["functions", "deploy", str(mine), "--data-dir", data]) == 0
    capsys.readouterr()
    assert main(["serve-config", "--data-dir", data, "--port", "8123", "--cpus", "8"]) == 0
    out = capsys.readouterr().out
    assert SECRETS["CVAT_RAY_LDAP__BIND_PASSWORD"] not in out
    config = yaml.safe_load(out)
    deploy.validate(config)
    assert config["http_options"]["port"] == 8123
    names = [a["name"] for a in config["applications"]]
    builtins = sorted(f"cvat-fn-{p.stem}" for p in spec_files(deploy.builtin_spec_dir()))
    assert names == [API_APP, *sorted([*builtins, "cvat-fn-mine"])]
    (entry,) = [a for a in config["applications"] if a["name"] == "cvat-fn-mine"]
    assert entry["args"]["spec"]["runtime"] == {"class": "colour"}
    from cvat_ray.serve_apps.function_app import max_ongoing_requests

    spec = FunctionSpec.model_validate(entry["args"]["spec"])
    assert _options(entry)["max_ongoing_requests"] == max_ongoing_requests(spec, 8)


@pytest.mark.ray
@pytest.mark.slow
def test_serve_deploys_a_function_from_the_config(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Serve's own config path (``serve run CONFIG``: the controller builds the application
    with ``build_function_app`` from the config's args and applies its options), as a
    RayService's ``serveConfigV2`` is deployed; the replica answers."""
    from ray import serve

    spec = colour_spec()
    config = {
        "http_options": {"host": "127.0.0.1", "port": free_port()},
        "applications": deploy.function_applications([spec], cpus=2),
    }
    path = tmp_path / "serve.yaml"
    path.write_text(deploy.config_yaml(config))
    env = {**os.environ, **ray_cluster.env(), "PYTHONPATH": str(Path(__file__).parents[2])}
    serve_cli = str(Path(sys.executable).parent / "serve")
    try:
        done = subprocess.run(
            [serve_cli, "run", str(path), "--non-blocking", "--address", ray_cluster.address],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        name = f"cvat-fn-{spec.id}"
        deadline = time.monotonic() + 240
        while deploy.function_states().get(spec.id) != "RUNNING":
            assert deploy.function_states().get(spec.id) != "DEPLOY_FAILED", serve.status()
            assert time.monotonic() < deadline, serve.status()
            time.sleep(1)
        image, truth = make_scene(160, 120, 2, seed=3, sizes=(20, 40))
        found = serve.get_app_handle(name).detect.remote(image, 0.5, False).result(timeout_s=120)
        assert {(d["label"], tuple(round(p) for p in d["points"])) for d in found} == {
            (label, tuple(box)) for label, box in truth
        }
    finally:
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]
