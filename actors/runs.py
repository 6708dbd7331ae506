"""Starting whole-task auto-annotation runs: one Ray actor per run, or a thread.

Under Ray (``cvat-ray up``, any Serve replica) each run is a detached actor named
``autoannotate-task-<task>-<request>``, visible in the dashboard's actor list, that drives a
Ray Data pipeline (``actors.autoannotate``) and ends itself when the run ends. Detached, so
a run survives the API replica that started it. Without Ray, runs go to a thread of this
process with the local engine. Both start with an atomic claim of the request row.
"""

from __future__ import annotations

import concurrent.futures
import logging
import uuid
from typing import Any, Protocol

from actors.autoannotate import run_request
from actors.launcher import Launcher, uses_ray
from cluster.names import NAMESPACE
from cluster.settings import Settings, get_settings
from storage.db import Database
from storage.services import requests as request_service

logger = logging.getLogger("cvat_ray.runs")


class InProcessRunLauncher:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self.worker = f"inprocess-runs-{uuid.uuid4().hex[:12]}"
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(self, request_id: str) -> None:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cvat-run")
        self._executor.submit(self._run, request_id)

    def _run(self, request_id: str) -> None:
        try:
            run_request(self.db, self.settings, request_id, self.worker)
        except Exception:
            logger.exception("run %s failed", request_id)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def _actor_class() -> Any:
    import ray

    @ray.remote
    class AutoAnnotateRun:
        """Drives one run; its own process, so a crash fails only this run."""

        def __init__(self) -> None:
            self.settings = get_settings()
            self.db = Database(self.settings.database_url, pool_size=1)

        def run(self, request_id: str, worker: str) -> str:
            stats = run_request(self.db, self.settings, request_id, worker)
            self.db.dispose()
            return stats.summary() if stats is not None else "taken by another worker"

    return AutoAnnotateRun


class RayRunLauncher:
    def __init__(
        self, settings: Settings, db: Database, *, runtime_env: dict[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.runtime_env = runtime_env

    def submit(self, request_id: str) -> None:
        name = f"autoannotate-{request_id}"
        options: dict[str, Any] = {
            "name": name,
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "num_cpus": self.settings.functions.driver_num_cpus,
            "max_restarts": 0,
        }
        if self.runtime_env:
            options["runtime_env"] = self.runtime_env
        try:
            actor = _actor_class().options(**options).remote()
            ref = actor.run.remote(request_id, name)
            # Ends the actor once the run returns (actor calls run in order).
            actor.__ray_terminate__.remote()
        except Exception as exc:
            self._fail(request_id, exc)
            return
        ref.future().add_done_callback(lambda fut: self._done(request_id, fut))

    def _done(self, request_id: str, fut: concurrent.futures.Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            self._fail(request_id, exc)

    def _fail(self, request_id: str, exc: BaseException) -> None:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        logger.error("auto-annotation run %s died: %s", request_id, reason)
        try:
            with self.db.session() as session:
                request_service.fail_if_unfinished(
                    session, request_id, f"The run's process stopped ({reason}). Start it again."
                )
        except Exception:
            logger.exception("cannot record the failure of %s", request_id)

    def close(self) -> None:
        pass


def make_run_launcher(settings: Settings, db: Database) -> Launcher:
    if uses_ray(settings):
        return RayRunLauncher(settings, db)
    return InProcessRunLauncher(settings, db)


# ---------------------------------------------------------------------------------- datasets


def ray_token_headers() -> dict[str, str]:
    """The Authorization header for the Ray dashboard (Jobs API) from Ray's token settings."""
    import os
    from pathlib import Path

    token = os.environ.get("RAY_AUTH_TOKEN")
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not token and path and Path(path).is_file():
        token = Path(path).read_text().strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def submit_dataset_job(
    dashboard_url: str,
    argv: list[str],
    *,
    headers: dict[str, str],
    python: str = "python",
    gcs_address: str | None = None,
) -> str:
    """Submit ``python -m actors.dataset_run ARGV`` as a Ray job with this process's
    ``CVAT_RAY_*`` settings; returns the job id.

    ``gcs_address`` names the cluster the job's driver joins. Ray's job supervisor gives
    the driver an address it resolves itself, and on a machine running several Ray clusters
    that resolution can pick another one; an explicit address avoids it."""
    import os
    import shlex

    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(dashboard_url, headers=headers)
    env = {k: v for k, v in os.environ.items() if k.startswith("CVAT_RAY_")}
    if gcs_address:
        env["CVAT_RAY_RAY__ADDRESS"] = gcs_address
    job_id: str = client.submit_job(
        entrypoint=shlex.join([python, "-m", "actors.dataset_run", *argv]),
        runtime_env={"env_vars": env},
        entrypoint_num_cpus=0.05,
        metadata={"kind": "cvat-ray dataset run"},
    )
    return job_id


class DatasetRunner(Protocol):
    def submit(self, argv: list[str]) -> str | None: ...

    def close(self) -> None: ...


class RayJobDatasetRunner:
    """From an API replica: the cluster's dashboard (Jobs API) with the cluster's token."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def dashboard_url(self) -> str:
        """``functions.jobs_url``, else the URL the dashboard registered in the cluster."""
        url = self.settings.functions.jobs_url
        if not url:
            from ray._private.services import get_webui_url_from_internal_kv

            url = get_webui_url_from_internal_kv()  # type: ignore[no-untyped-call]
        if not url:
            raise RuntimeError("the cluster has no dashboard; set CVAT_RAY_FUNCTIONS__JOBS_URL")
        return url if url.startswith("http") else f"http://{url}"

    def submit(self, argv: list[str]) -> str | None:
        import sys

        import ray

        return submit_dataset_job(
            self.dashboard_url(),
            argv,
            headers=ray_token_headers(),
            python=sys.executable,
            gcs_address=ray.get_runtime_context().gcs_address,
        )

    def close(self) -> None:
        pass


class InProcessDatasetRunner:
    """Without Ray: the run in a thread of this process (local engine)."""

    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(self, argv: list[str]) -> str | None:
        from actors import dataset_run

        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="cvat-ds")
        args = dataset_run.build_parser().parse_args([*argv, "--engine", "local"])
        self._executor.submit(dataset_run.execute, args, self.settings, self.db)
        return None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def make_dataset_runner(settings: Settings, db: Database) -> DatasetRunner:
    if uses_ray(settings):
        return RayJobDatasetRunner(settings)
    return InProcessDatasetRunner(settings, db)
