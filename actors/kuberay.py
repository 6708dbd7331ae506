"""Dataset runs as KubeRay RayJobs: the object ``cvat-ray auto-annotate --kubernetes`` creates,
reading what KubeRay reports about it, and following it to the end.

The chart renders the RayJob's template (ConfigMap ``<name>-dataset-run``, key
``rayjob.yaml``): the submitter pod, deadlines, and either ``clusterSelector`` (run on the
RayService's cluster) or a ``rayClusterSpec`` of its own with the same pods as the
RayService (settings by envFrom, the shared volume, GPU workers). :func:`rayjob_manifest` fills
in the entrypoint, the same one the Jobs API path submits (``actors.jobs.dataset_job``), and,
for ``clusterSelector``, the RayService's active cluster (``ray.io/cluster`` names the
RayCluster; a RayService's cluster is renamed by every blue/green upgrade, so it is read from
the RayService's status at submission). Nothing secret goes into the RayJob: its driver reads
the settings from the pod's environment.

The Kubernetes calls (``CustomObjectsApi``, ``CoreV1Api``) are in :func:`submit`,
:func:`follow` and :func:`load_template`; everything else is pure and tested on its own.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from cvat_ray.actors.jobs import dataset_job

GROUP = "ray.io"
VERSION = "v1"
RAYJOBS = "rayjobs"
RAYSERVICES = "rayservices"
CLUSTER_SELECTOR_KEY = "ray.io/cluster"
TEMPLATE_COMPONENT = "dataset-run"

# KubeRay 1.7's RayJob status values (rayjob_types.go).
JOB_STATUSES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")
DEPLOYMENT_FINISHED = ("Complete", "Failed", "ValidationFailed")


class RayJobError(Exception):
    """A RayJob cannot be built or submitted (no template, no ready RayService...)."""


@dataclass(frozen=True)
class RayJobState:
    """What KubeRay reports about a RayJob (its ``status``), read defensively: every field may
    be missing while the operator has not got to it yet."""

    job_status: str | None
    deployment_status: str | None
    reason: str | None = None
    message: str | None = None
    cluster: str | None = None
    dashboard_url: str | None = None
    job_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    failed: int = 0

    @property
    def finished(self) -> bool:
        """The RayJob will not change any more (``jobDeploymentStatus`` Complete, Failed or
        ValidationFailed; ``Retrying`` goes on with a new cluster)."""
        return self.deployment_status in DEPLOYMENT_FINISHED

    @property
    def succeeded(self) -> bool:
        return self.deployment_status == "Complete" and self.job_status == "SUCCEEDED"

    def summary(self) -> str:
        parts = [self.deployment_status or "Pending", self.job_status or "-"]
        if self.reason:
            parts.append(self.reason)
        text = " / ".join(parts)
        return f"{text}: {self.message}" if self.message else text


def parse_status(rayjob: dict[str, Any]) -> RayJobState:
    status = rayjob.get("status") or {}
    return RayJobState(
        job_status=status.get("jobStatus") or None,
        deployment_status=status.get("jobDeploymentStatus") or None,
        reason=status.get("reason") or None,
        message=status.get("message") or None,
        cluster=status.get("rayClusterName") or None,
        dashboard_url=status.get("dashboardURL") or None,
        job_id=status.get("jobId") or None,
        start_time=status.get("startTime") or None,
        end_time=status.get("endTime") or None,
        failed=int(status.get("failed") or 0),
    )


def active_cluster(rayservice: dict[str, Any]) -> str:
    """The RayCluster that serves a RayService's traffic now (``status.activeServiceStatus
    .rayClusterName``); RayJobError while it has none (still starting)."""
    status = rayservice.get("status") or {}
    name = (status.get("activeServiceStatus") or {}).get("rayClusterName")
    if not name:
        pending = (status.get("pendingServiceStatus") or {}).get("rayClusterName")
        detail = f" (cluster {pending} is still starting)" if pending else ""
        raise RayJobError(
            f"RayService {rayservice['metadata']['name']!r} has no active cluster yet{detail}"
        )
    return str(name)


def template_from_configmap(configmap: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(RayJob template, RayService name) from the chart's dataset-run ConfigMap."""
    data = configmap.get("data") or {}
    if "rayjob.yaml" not in data:
        raise RayJobError(f"ConfigMap {configmap['metadata']['name']!r} has no rayjob.yaml")
    template = yaml.safe_load(data["rayjob.yaml"])
    if not isinstance(template, dict) or template.get("kind") != "RayJob":
        raise RayJobError("the dataset-run template is not a RayJob")
    return template, data.get("rayservice")


def rayjob_manifest(
    template: dict[str, Any],
    argv: list[str],
    *,
    cluster: str | None = None,
    run: str | None = None,
) -> dict[str, Any]:
    """The RayJob of a dataset run with ``argv`` (``lambda_runs.dataset_argv``): the
    template with its entrypoint, and ``cluster`` in its ``clusterSelector`` when it runs on
    an existing cluster."""
    job = copy.deepcopy(template)
    spec = job.setdefault("spec", {})
    submission = dataset_job(argv)
    spec["entrypoint"] = submission["entrypoint"]
    spec["metadata"] = {**(spec.get("metadata") or {}), **submission["metadata"]}
    if "clusterSelector" in spec:
        if not cluster:
            raise RayJobError("the template runs on an existing cluster: name it")
        spec["clusterSelector"] = {**spec["clusterSelector"], CLUSTER_SELECTOR_KEY: cluster}
        spec.pop("rayClusterSpec", None)
    elif "rayClusterSpec" not in spec:
        raise RayJobError("the template has neither clusterSelector nor rayClusterSpec")
    if run:
        annotations = job.setdefault("metadata", {}).setdefault("annotations", {})
        annotations["cvat-ray/run"] = run
    return job


# ----------------------------------------------------------------------- Kubernetes calls


def clients(kubeconfig: str | None = None, context: str | None = None) -> tuple[Any, Any]:
    """(CustomObjectsApi, CoreV1Api) from a kubeconfig, or the pod's service account."""
    from kubernetes import client, config

    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except (config.ConfigException, OSError) as exc:
        if kubeconfig or context:
            raise RayJobError(f"cannot use the kubeconfig: {exc}") from exc
        try:
            config.load_incluster_config()
        except config.ConfigException as inner:
            raise RayJobError(f"no kubeconfig and not in a pod: {exc}; {inner}") from inner
    return client.CustomObjectsApi(), client.CoreV1Api()


def api_error(exc: Exception) -> RayJobError | None:
    """A readable RayJobError for what the Kubernetes client raised (the API server's answer,
    or no answer), or None for anything else."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        detail = exc.reason or ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(exc.body or "{}").get("message") or detail
        return RayJobError(f"the Kubernetes API answered {exc.status}: {detail}")
    if isinstance(exc, HTTPError):
        return RayJobError(f"the Kubernetes API cannot be reached: {exc}")
    return None


def load_template(core: Any, namespace: str, release: str) -> tuple[dict[str, Any], str | None]:
    """The chart's dataset-run template of ``release`` (found by its labels)."""
    selector = (
        f"app.kubernetes.io/instance={release},app.kubernetes.io/component={TEMPLATE_COMPONENT}"
    )
    found = core.list_namespaced_config_map(namespace, label_selector=selector).items
    if len(found) != 1:
        raise RayJobError(
            f"expected one ConfigMap labelled {selector} in {namespace!r}, found {len(found)}: "
            "is the chart installed there?"
        )
    item = found[0]
    return template_from_configmap({"metadata": {"name": item.metadata.name}, "data": item.data})


def rayservice_cluster(custom: Any, namespace: str, rayservice: str) -> str:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, RAYSERVICES, rayservice)
    return active_cluster(obj)


def submit(custom: Any, namespace: str, manifest: dict[str, Any]) -> str:
    """Create the RayJob; returns its name (generated from ``generateName``)."""
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, RAYJOBS, manifest)
    return str(created["metadata"]["name"])


def follow(
    custom: Any,
    namespace: str,
    name: str,
    *,
    on_change: Callable[[RayJobState], None] = lambda _state: None,
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> RayJobState:
    """Poll the RayJob until it has finished (or ``timeout_s``); ``on_change`` sees every
    new state. Returns the last state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last: RayJobState | None = None
    while True:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, RAYJOBS, name)
        state = parse_status(obj)
        if state != last:
            on_change(state)
            last = state
        if state.finished or (deadline is not None and time.monotonic() > deadline):
            return state
        sleep(poll_s)
