"""Rendering the chart offline and validating what it renders, without a cluster.

- :func:`render`: the chart through Helm's own engine (``helm-python-sdk`` bundles Helm as a
  library: no ``helm`` binary, no network), as ``helm template`` would, hooks included.
- :class:`CrdValidator`: KubeRay objects against the ``openAPIV3Schema`` of the CRDs in
  ``tests/kuberay/crds/`` (KubeRay v1.7.0's, vendored) with ``jsonschema``, adjusted the way the API server
  reads them: defaults fill required fields, nulls are pruned, and (strict) unknown fields are
  refused as ``kubectl``'s strict field validation does.
- :func:`validate_core`: built-in kinds against Kubernetes' own OpenAPI schemas
  (``kubernetes-validate``, strict).
- :func:`validate_serve_config`: a ``serveConfigV2`` with Ray's ``ServeDeploySchema``.
"""

from __future__ import annotations

import copy
import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "kuberay" / "chart"
EXAMPLES = CHART / "examples"
KUBERNETES_VERSION = "1.32.0"


def crd_dir() -> Path:
    """KubeRay's CRDs (v1.7.0, vendored next to the tests; ``CVAT_RAY_KUBERAY_CRDS`` overrides)."""
    given = os.environ.get("CVAT_RAY_KUBERAY_CRDS")
    return Path(given) if given else Path(__file__).resolve().parent / "crds"


def render(
    values: dict[str, Any] | None = None,
    *,
    chart: Path = CHART,
    release: str = "cvat",
    namespace: str = "annotation",
) -> dict[str, str]:
    """Template path -> rendered text, as ``helm template`` (an install) renders them."""
    import helm_python as helm

    helm.disable_logging()
    loaded = helm.Chart.load(str(chart))
    rendered: dict[str, str] = loaded.render(
        values or {}, name=release, namespace=namespace, is_install=True
    )
    return rendered


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object of a render (NOTES.txt and empty documents left out)."""
    found: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        found.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return found


def _prune_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value if v is not None]
    return value


def _adjust(schema: Any, *, strict: bool) -> Any:
    """The CRD schema as the API server applies it: a property with a default is not
    required (the default fills it); strict: no unknown fields where the schema lists them."""
    if isinstance(schema, list):
        return [_adjust(s, strict=strict) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _adjust(v, strict=strict) for k, v in schema.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        if "required" in out:
            defaulted = {name for name, p in props.items() if "default" in p}
            out["required"] = [r for r in out["required"] if r not in defaulted]
        if (
            strict
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
    if out.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


class CrdValidator:
    """Custom resources against the CRDs of a folder, by (apiVersion, kind)."""

    def __init__(self, folder: Path, *, strict: bool = True) -> None:
        from jsonschema import Draft202012Validator

        self.validators: dict[tuple[str, str], Draft202012Validator] = {}
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yaml.gz")]):
            text = (
                gzip.decompress(path.read_bytes()).decode()
                if path.suffix == ".gz"
                else path.read_text()
            )
            crd = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = _adjust(version["schema"]["openAPIV3Schema"], strict=strict)
                self.validators[(f"{group}/{version['name']}", kind)] = Draft202012Validator(schema)

    def kinds(self) -> set[tuple[str, str]]:
        return set(self.validators)

    def errors(self, obj: dict[str, Any]) -> list[str]:
        """Readable errors (``.spec.path: message``); [] when valid. Unknown kinds: KeyError."""
        validator = self.validators[(obj["apiVersion"], obj["kind"])]
        return [
            "." + ".".join(str(p) for p in error.absolute_path) + ": " + error.message
            for error in validator.iter_errors(_prune_nulls(copy.deepcopy(obj)))
        ]


def validate_core(obj: dict[str, Any]) -> None:
    """A built-in object against Kubernetes' OpenAPI schema (strict: unknown fields fail)."""
    import kubernetes_validate

    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def serve_config_of(rayservice: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(rayservice["spec"]["serveConfigV2"])
    return config


def validate_serve_config(config: dict[str, Any]) -> Any:
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema.model_validate(config)


def ray_pod_templates(cluster_spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(group, pod template) of a RayClusterSpec: the head, then each worker group."""
    yield "head", cluster_spec["headGroupSpec"]["template"]
    for group in cluster_spec.get("workerGroupSpecs", []):
        yield group["groupName"], group["template"]
