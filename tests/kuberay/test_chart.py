"""The Helm chart (``kuberay/chart``), rendered offline by Helm's own engine for every example
values file and checked object by object: KubeRay objects against the KubeRay 1.7 CRDs,
built-in objects against Kubernetes' OpenAPI schemas, the ``serveConfigV2`` with Serve's own
schema; then what each values file is for (GPU workers, external services, ingress and TLS,
analytics) and the wiring every Ray pod needs (settings by envFrom, the shared volume, token
auth, migrations before the cluster)."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cvat_ray.cli import main
from tests.kuberay.manifests import (
    CHART,
    EXAMPLES,
    ROOT,
    CrdValidator,
    objects,
    ray_pod_templates,
    render,
    serve_config_of,
    validate_core,
    validate_serve_config,
)

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))
RAY_KINDS = {"RayService", "RayJob", "RayCluster"}


def _values(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text())
    return values


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _one(objs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    (found,) = [o for o in _by_kind(objs, kind) if o["metadata"]["name"].endswith(suffix)]
    return found


def _rayjob_template(objs: list[dict[str, Any]]) -> dict[str, Any]:
    template: dict[str, Any] = yaml.safe_load(
        _one(objs, "ConfigMap", "-dataset-run")["data"]["rayjob.yaml"]
    )
    return template


def test_the_examples_are_there() -> None:
    assert {p.stem for p in EXAMPLE_FILES} >= {
        "minimal",
        "gpu",
        "external-services",
        "ingress-tls",
        "analytics",
    }


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_object_validates(example: Path, crds: CrdValidator) -> None:
    """Every rendered object is valid for its schema, and so is the RayJob of the dataset-run
    template (with an entrypoint, as ``auto-annotate --kubernetes`` fills it)."""
    objs = objects(render(_values(example)))
    kinds = [o["kind"] for o in objs]
    assert "RayService" in kinds and "Job" in kinds and "ConfigMap" in kinds
    for obj in objs:
        if obj["kind"] in RAY_KINDS:
            assert crds.errors(obj) == [], obj["metadata"]["name"]
        else:
            validate_core(obj)
    (service,) = _by_kind(objs, "RayService")
    schema = validate_serve_config(serve_config_of(service))
    assert schema.applications[0].name == "cvat-api"
    job = _rayjob_template(objs)
    job["spec"]["entrypoint"] = "python -m cvat_ray.actors.dataset_run --function x --task 1"
    if "clusterSelector" in job["spec"]:
        job["spec"]["clusterSelector"]["ray.io/cluster"] = "cvat-cvat-ray-abcde"
    assert crds.errors(job) == []


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_helm_lint_is_clean(example: Path) -> None:
    """``helm lint --strict`` for Kubernetes 1.32: no error and no warning (an "icon is
    recommended" note stays)."""
    import helm_python as helm

    result = helm.lint(str(CHART), _values(example), strict=True, kube_version="1.32.0")
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []


def test_the_validator_finds_mistakes(crds: CrdValidator) -> None:
    """Not vacuous: a typo, wrong types and a wrong enum are reported with the path of the
    field; a core object with an unknown field fails too."""
    objs = objects(render(_values(EXAMPLES / "minimal.yaml")))
    service = _one(objs, "RayService")
    cluster = service["spec"]["rayClusterConfig"]
    group = cluster["workerGroupSpecs"][0]
    group["rayStartParms"] = group.pop("rayStartParams")
    group["replicas"] = "two"
    cluster["autoscalerOptions"]["upscalingMode"] = "Fast"
    service["spec"]["excludeHeadPodFromServeSvc"] = "yes"
    errors = "\n".join(crds.errors(service))
    assert "rayStartParms" in errors
    assert "'two' is not of type 'integer'" in errors
    assert "'Fast' is not one of" in errors
    assert ".spec.excludeHeadPodFromServeSvc: 'yes' is not of type 'boolean'" in errors
    with pytest.raises(Exception, match="replicas"):
        validate_core(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "x"},
                "spec": {"template": {"spec": {"containers": []}}, "replicas": 2},
            }
        )


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_every_ray_pod_gets_the_settings_and_the_volume(example: Path) -> None:
    """Head, workers, migration Job and a dataset run's own cluster: envFrom of the settings
    ConfigMap and Secret (the chart's or the existing one), the shared claim at the data dir;
    the settings come before the migration Job, and the Job before the RayService."""
    values = _values(example)
    objs = objects(render(values))
    config = _one(objs, "ConfigMap", "-settings")
    secret_name = values.get("existingSecret") or config["metadata"]["name"]
    if not values.get("existingSecret"):
        assert _one(objs, "Secret", "-settings")["metadata"]["name"] == secret_name
    else:
        assert not [o for o in _by_kind(objs, "Secret") if o["metadata"]["name"] == secret_name]
    claim = (values.get("persistence") or {}).get("existingClaim") or "cvat-cvat-ray-data"
    data_dir = config["data"]["CVAT_RAY_DATA_DIR"]
    service = _one(objs, "RayService")
    templates = list(ray_pod_templates(service["spec"]["rayClusterConfig"]))
    job = _rayjob_template(objs)
    if "rayClusterSpec" in job["spec"]:
        templates += list(ray_pod_templates(job["spec"]["rayClusterSpec"]))
    migrate = _one(objs, "Job", "-migrate")

    def weight(obj: dict[str, Any]) -> int:
        return int(obj["metadata"]["annotations"]["helm.sh/hook-weight"])

    templates.append(("migrate", migrate["spec"]["template"]))
    for group, template in templates:
        spec = template["spec"]
        (container,) = spec["containers"]
        assert container["envFrom"] == [
            {"configMapRef": {"name": config["metadata"]["name"]}},
            {"secretRef": {"name": secret_name}},
        ], group
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim, group
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        assert mounts["data"] == data_dir, group
    # the migration Job registers the functions of the very Serve config the RayService runs
    command = migrate["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:4] == [
        "cvat-ray",
        "migrate",
        "--functions-from",
        "/etc/cvat-ray/serve-config.yaml",
    ]
    serve_cm = _one(objs, "ConfigMap", "-serve-config")
    assert yaml.safe_load(serve_cm["data"]["serve-config.yaml"]) == serve_config_of(service)
    assert weight(serve_cm) < weight(migrate)
    job_volumes = {v["name"]: v for v in migrate["spec"]["template"]["spec"]["volumes"]}
    assert job_volumes["serve-config"]["configMap"]["name"] == serve_cm["metadata"]["name"]

    assert "pre-install" in migrate["metadata"]["annotations"]["helm.sh/hook"]
    assert "pre-upgrade" in migrate["metadata"]["annotations"]["helm.sh/hook"]
    assert weight(config) < weight(migrate)
    pvcs = _by_kind(objs, "PersistentVolumeClaim")
    for pvc in pvcs:
        assert pvc["metadata"]["annotations"]["helm.sh/hook"] == "pre-install"
        assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert weight(pvc) < weight(config)
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert bool(pvcs) != bool((values.get("persistence") or {}).get("existingClaim"))


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_the_ray_cluster(example: Path) -> None:
    """No Serve replicas on the head (num-cpus 0, out of the serve Service), a CPU worker
    group, autoscaling v2, token auth from the token Secret, the settings' digest on every
    pod (a settings change rolls the cluster)."""
    objs = objects(render(_values(example)))
    service = _one(objs, "RayService")
    spec = service["spec"]
    cluster = spec["rayClusterConfig"]
    assert spec["excludeHeadPodFromServeSvc"] is True
    assert spec["upgradeStrategy"] == {"type": "NewCluster"}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["version"] == "v2"
    token = _one(objs, "Secret", "-ray-token")
    assert cluster["authOptions"] == {"mode": "token", "secretName": token["metadata"]["name"]}
    assert len(token["data"]["auth_token"]) > 40
    groups = [g["groupName"] for g in cluster["workerGroupSpecs"]]
    assert groups[0] == "cpu-workers"
    digests = {
        t["metadata"]["annotations"]["checksum/settings"] for _, t in ray_pod_templates(cluster)
    }
    assert len(digests) == 1


def test_a_settings_change_changes_the_pods() -> None:
    base = _values(EXAMPLES / "minimal.yaml")
    changed = {**base, "settings": {"CVAT_RAY_API__MAX_PAGE_SIZE": "500"}}

    def digest(values: dict[str, Any]) -> str:
        service = _one(objects(render(values)), "RayService")
        template = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/settings"])

    assert digest(base) != digest(changed)
    config = _one(objects(render(changed)), "ConfigMap", "-settings")
    assert config["data"]["CVAT_RAY_API__MAX_PAGE_SIZE"] == "500"


def test_secrets_stay_in_the_secret() -> None:
    values = _values(EXAMPLES / "ingress-tls.yaml")
    objs = objects(render(values))
    secret = _one(objs, "Secret", "-settings")["stringData"]
    assert secret["CVAT_RAY_DATABASE__URL"] == values["database"]["url"]
    assert secret["CVAT_RAY_ADMIN_PASSWORD"] == values["admin"]["password"]
    assert secret["CVAT_RAY_REDIS__URL"] == values["redis"]["url"]
    assert secret["CVAT_RAY_CACHE__REDIS_URL"] == values["redis"]["url"]
    others = [o for o in objs if o["kind"] != "Secret"]
    text = yaml.safe_dump_all(others)
    for value in ("secret@cvat-postgresql", "change-me-now", ":secret@cvat-redis"):
        assert value not in text


def test_gpu_workers() -> None:
    values = _values(EXAMPLES / "gpu.yaml")
    objs = objects(render(values))
    cluster = _one(objs, "RayService")["spec"]["rayClusterConfig"]
    (gpu,) = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu-workers"]
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (0, 4)
    pod = gpu["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"].endswith(":0.1.0-gpu")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    # KubeRay derives num-gpus from the limit; setting both is allowed but not needed
    assert "num-gpus" not in gpu["rayStartParams"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    # the dataset runs get a cluster of their own, GPU workers included, deleted after
    job = _rayjob_template(objs)["spec"]
    assert "clusterSelector" not in job
    assert job["shutdownAfterJobFinishes"] is True and job["ttlSecondsAfterFinished"] == 300
    own = [g["groupName"] for g in job["rayClusterSpec"]["workerGroupSpecs"]]
    assert own == ["cpu-workers", "gpu-workers"]
    # without GPU workers there is no GPU group
    minimal = _one(objects(render(_values(EXAMPLES / "minimal.yaml"))), "RayService")
    assert [g["groupName"] for g in minimal["spec"]["rayClusterConfig"]["workerGroupSpecs"]] == [
        "cpu-workers"
    ]


def test_external_services() -> None:
    values = _values(EXAMPLES / "external-services.yaml")
    objs = objects(render(values))
    assert not [o for o in _by_kind(objs, "Secret") if o["metadata"]["name"].endswith("-settings")]
    assert not _by_kind(objs, "PersistentVolumeClaim")
    config = _one(objs, "ConfigMap", "-settings")["data"]
    for key, value in values["settings"].items():
        assert config[key] == value
    image = _one(objs, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"][
        "spec"
    ]["containers"][0]["image"]
    assert image == "registry.example.com/cvat-ray:0.1.0-cpu"


def test_ingress_and_tls() -> None:
    objs = objects(render(_values(EXAMPLES / "ingress-tls.yaml")))
    ingress = _one(objs, "Ingress")["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"hosts": ["cvat.example.com"], "secretName": "cvat-tls"}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "cvat.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    service = _one(objs, "RayService")["metadata"]["name"]
    assert backend == {"name": f"{service}-serve-svc", "port": {"number": 8000}}
    config = _one(objs, "ConfigMap", "-settings")["data"]
    assert config["CVAT_RAY_SERVER__PUBLIC_URL"] == "https://cvat.example.com"
    assert config["CVAT_RAY_AUTH__COOKIE_SECURE"] == "true"
    # the serve config listens where the serve Service sends traffic
    assert serve_config_of(_one(objs, "RayService"))["http_options"] == {
        "host": "0.0.0.0",
        "port": 8000,
    }


def test_analytics_provisions_every_dashboard(tmp_path: Path, crds: CrdValidator) -> None:
    """Whatever JSON is in analytics/dashboards/ (linked into the chart) lands in the
    dashboards ConfigMap that the Grafana sidecar or the chart's Grafana reads."""
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart, symlinks=False)
    dashboards = chart / "dashboards"
    real = sorted((ROOT / "analytics" / "dashboards").glob("*.json"))
    probe = {"title": "probe", "uid": "probe", "panels": [], "schemaVersion": 39}
    (dashboards / "zz-probe.json").write_text(json.dumps(probe))
    objs = objects(render(_values(EXAMPLES / "analytics.yaml"), chart=chart))
    for obj in objs:
        if obj["kind"] in RAY_KINDS:
            assert crds.errors(obj) == []
        else:
            validate_core(obj)
    board = _one(objs, "ConfigMap", "-grafana-dashboards")
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["zz-probe.json"]) == probe
    assert sorted(board["data"]) == sorted([p.name for p in real] + ["zz-probe.json"])
    provisioning = _one(objs, "ConfigMap", "-grafana-provisioning")["data"]
    source = yaml.safe_load(provisioning["cvat-ray-datasource.yaml"])["datasources"][0]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert source["jsonData"]["host"] == "cvat-clickhouse"
    grafana = _one(objs, "Deployment", "-grafana")["spec"]["template"]["spec"]
    mounts = {m["mountPath"] for m in grafana["containers"][0]["volumeMounts"]}
    assert "/var/lib/grafana/dashboards/cvat-ray" in mounts
    config = _one(objs, "ConfigMap", "-settings")["data"]
    assert config["CVAT_RAY_ANALYTICS__HOST"] == "cvat-clickhouse"
    secret = _one(objs, "Secret", "-settings")["stringData"]
    assert secret["CVAT_RAY_ANALYTICS__PASSWORD"] == "secret"
    # analytics off: nothing of Grafana
    off = objects(render(_values(EXAMPLES / "minimal.yaml")))
    assert not [o for o in off if "grafana" in o["metadata"]["name"]]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"admin": {"password": ""}}, "admin.create needs admin.password"),
        (
            {"admin": {"password": "x"}, "analytics": {"enabled": True}},
            "analytics.clickhouse.host is required",
        ),
        # values.schema.json: enums, typos, setting names
        (
            {"admin": {"password": "x"}, "datasetRun": {"cluster": "elsewhere"}},
            "at '/datasetRun/cluster': value must be one of 'service', 'own'",
        ),
        (
            {"admin": {"password": "x"}, "workers": {"gpu": {"maxReplica": 3}}},
            "at '/workers/gpu': additional properties 'maxReplica' not allowed",
        ),
        (
            {"admin": {"password": "x"}, "settings": {"DATABASE_URL": "x"}},
            "'DATABASE_URL' does not match pattern '^CVAT_RAY_[A-Z0-9_]+$'",
        ),
        (
            {"admin": {"password": "x"}, "upgradeStrategy": "BlueGreen"},
            "at '/upgradeStrategy': value must be one of",
        ),
    ],
)
def test_bad_values_fail_with_a_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=re.escape(message)):
        render(values)


def test_serve_config_is_what_the_code_generates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One source of truth: the chart's serveConfigV2 is the output of the command its
    values.yaml documents (``cvat-ray serve-config --host 0.0.0.0 --port 8000 --cpus 8`` with
    default settings); regenerate the file when this fails."""
    import os

    for key in list(os.environ):
        if key.startswith("CVAT_RAY_") or key == "RAY_ADDRESS":
            monkeypatch.delenv(key)
    monkeypatch.setenv("CVAT_RAY_DATA_DIR", str(tmp_path))
    assert main(["serve-config", "--host", "0.0.0.0", "--port", "8000", "--cpus", "8"]) == 0
    generated = capsys.readouterr().out
    assert (CHART / "files" / "serve-config.yaml").read_text() == generated
    service = _one(objects(render({"admin": {"password": "x"}})), "RayService")
    assert serve_config_of(service) == yaml.safe_load(generated)
    # a serveConfigV2 value wins (an operator's own functions)
    own = {"applications": yaml.safe_load(generated)["applications"][:1]}
    service = _one(
        objects(render({"admin": {"password": "x"}, "serveConfigV2": yaml.safe_dump(own)})),
        "RayService",
    )
    assert serve_config_of(service) == own


def test_the_versions_agree() -> None:
    """The image's Ray, the chart's rayVersion, the Ray the project runs and pins."""
    import ray

    dockerfile = (ROOT / "kuberay" / "Dockerfile").read_text()
    ray_arg = re.search(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.M)
    python_arg = re.search(r"^ARG PYTHON=py(\d)(\d+)$", dockerfile, re.M)
    assert ray_arg and python_arg
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["rayVersion"] == ray_arg.group(1) == ray.__version__
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("ray[") and ">=2.60,<2.61" in d for d in project["dependencies"])
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == project["version"]
    major, minor = python_arg.groups()
    assert project["requires-python"] == f">={major}.{minor}"
