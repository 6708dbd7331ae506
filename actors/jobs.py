"""Dataset runs as Ray jobs (Jobs API): what is submitted, and submitting it.

A dataset run's job is ``python -m cvat_ray.actors.dataset_run ARGV``. It reads its settings,
secrets included, from its own environment like every Ray worker (on Kubernetes: the Secret
every pod mounts; under ``cvat-ray up``: the head's environment), so nothing but the cluster's
address travels in its runtime env: the Ray dashboard and the Jobs API show both the entrypoint
and the runtime env to anyone who can read them.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from cvat_ray.cluster.settings import Settings


def ray_token_headers() -> dict[str, str]:
    """The Authorization header for the Ray dashboard (Jobs API) from Ray's token settings."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not token and path and Path(path).is_file():
        token = Path(path).read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def dataset_job(
    argv: list[str], *, python: str = "python", gcs_address: str | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``JobSubmissionClient.submit_job`` for a dataset run.

    ``gcs_address`` names the cluster the job's driver joins. Ray's job supervisor gives the
    driver an address it resolves itself, and on a machine running several Ray clusters that
    resolution can pick another one; an explicit address avoids it. It is the only setting
    passed: no other ``CVAT_RAY_*`` value is copied (they hold the database password, the
    cloud credentials key, the LDAP bind password...)."""
    env = {"CVAT_RAY_RAY__ADDRESS": gcs_address} if gcs_address else {}
    return {
        "entrypoint": shlex.join([python, "-m", "cvat_ray.actors.dataset_run", *argv]),
        "runtime_env": {"env_vars": env},
        "entrypoint_num_cpus": 0.05,
        "metadata": {"kind": "cvat-ray dataset run"},
    }


def submit_dataset_job(
    dashboard_url: str,
    argv: list[str],
    *,
    headers: dict[str, str],
    python: str = "python",
    gcs_address: str | None = None,
) -> str:
    """Submit a dataset run (:func:`dataset_job`) to the dashboard's Jobs API; returns the
    job id."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(dashboard_url, headers=headers)
    job_id: str = client.submit_job(**dataset_job(argv, python=python, gcs_address=gcs_address))
    return job_id


def dashboard_url(settings: Settings) -> str:
    """``functions.jobs_url``, else the URL the dashboard registered in the cluster."""
    url = settings.functions.jobs_url
    if not url:
        from cvat_ray.cluster.ray_compat import dashboard_url as registered_url

        url = registered_url()
    if not url:
        raise RuntimeError("the cluster has no dashboard; set CVAT_RAY_FUNCTIONS__JOBS_URL")
    return url if url.startswith("http") else f"http://{url}"


def submit_from_cluster(settings: Settings, argv: list[str]) -> str:
    """From a process of the cluster (an API replica): its dashboard, its token, its Python."""
    import sys

    import ray

    return submit_dataset_job(
        dashboard_url(settings),
        argv,
        headers=ray_token_headers(),
        python=sys.executable,
        gcs_address=ray.get_runtime_context().gcs_address,
    )
