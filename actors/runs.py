"""Starting whole-task auto-annotation runs: on the cluster's run driver, or in a thread.

Under Ray (``cvat-ray up``, any Serve replica) runs go to one long-lived detached actor,
``autoannotate-driver`` (created by ``cvat-ray up`` or on first use, restarted by Ray if
its process dies), which drives each run's Ray Data pipeline (``cvat_ray.actors.autoannotate``,
named ``autoannotate-task-<task>-<request>`` in the dashboard) in a thread of its own.
Detached, so a run survives the API replica that started it; long-lived and warm, so a run
starts at once. Without Ray, runs go to a thread of this process with the local engine.
Both start with an atomic claim of the request row.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import uuid
from typing import Any, Protocol

from cvat_ray.actors.autoannotate import run_request
from cvat_ray.actors.launcher import Launcher, kill_actor, service_actor_options, uses_ray
from cvat_ray.cluster.settings import Settings, get_settings
from cvat_ray.storage.db import Database
from cvat_ray.storage.services import requests as request_service

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


RUN_DRIVER = "autoannotate-driver"
RESTART_REASON = (
    "The auto-annotation driver's process died during this run and was restarted. "
    "Start the run again."
)
# Worker processes warmed for the pipelines' tasks (two per function replica run).
WARM_WORKERS = 4


def _driver_class() -> Any:
    import ray

    @ray.remote
    class RunDriver:
        """Drives whole-task runs, one thread each, for as long as the cluster lives.

        Long-lived, so a run does not pay for a process and for importing Ray Data: it
        starts its pipeline at once, on worker processes this driver warmed when it
        started. On every (re)start it fails the runs its name still holds ``started``: a
        previous process died in the middle of them."""

        def __init__(self, name: str) -> None:
            import ray.data  # noqa: F401  (every run's pipeline executes here: imported once)

            self.name = name
            self.settings = get_settings()
            functions = self.settings.functions
            self.db = Database(self.settings.database_url, pool_size=functions.concurrent_runs)
            with self.db.session() as session:
                failed = request_service.fail_orphans(session, name, RESTART_REASON)
            if failed:
                logger.warning("%s: failed %d runs left by a dead process", name, len(failed))
            threading.Thread(
                target=self._warm, args=(functions.decode_num_cpus,), daemon=True
            ).start()

        def _warm(self, num_cpus: float) -> None:
            from ray import serve

            from cvat_ray.actors import stages

            try:
                stages.warm_workers(WARM_WORKERS, num_cpus)
                # Serve imported and its controller client connected now: a run's first
                # look at the deployed functions took 0.6 s otherwise.
                serve.status()
            except Exception:
                logger.exception("%s: warming the workers failed", self.name)

        def ping(self) -> str:
            return self.name

        def run(self, request_id: str) -> str:
            stats = run_request(self.db, self.settings, request_id, self.name)
            return stats.summary() if stats is not None else "taken by another worker"

    return RunDriver


class RayRunLauncher:
    """Sends runs to the cluster's run driver (a detached actor named ``name``), creating it
    on first use; a run whose call fails because the driver died is failed here."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        name: str = RUN_DRIVER,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.name = name
        self.runtime_env = runtime_env
        self._handle: Any = None

    def driver(self) -> Any:
        if self._handle is None:
            options = service_actor_options(
                self.name,
                max_concurrency=self.settings.functions.concurrent_runs,
                num_cpus=self.settings.functions.driver_num_cpus,
                runtime_env=self.runtime_env,
            )
            self._handle = _driver_class().options(**options).remote(self.name)
        return self._handle

    def start(self, timeout: float = 120) -> None:
        """Create the driver and wait until it has started."""
        import ray

        ray.get(self.driver().ping.remote(), timeout=timeout)

    def submit(self, request_id: str) -> None:
        try:
            ref = self.driver().run.remote(request_id)
        except Exception as exc:
            self._handle = None
            self._fail(request_id, exc)
            return
        ref.future().add_done_callback(lambda fut: self._done(request_id, fut))

    def _done(self, request_id: str, fut: concurrent.futures.Future[Any]) -> None:
        exc = fut.exception()
        if exc is not None:
            self._handle = None
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
        self._handle = None

    def kill_driver(self) -> None:
        """End this launcher's driver (tests; a cluster shutdown ends it otherwise)."""
        kill_actor(self.name)
        self._handle = None


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
        entrypoint=shlex.join([python, "-m", "cvat_ray.actors.dataset_run", *argv]),
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
        from cvat_ray.actors import dataset_run

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
