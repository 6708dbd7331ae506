"""Batch auto-annotation of a whole dataset: the entrypoint of the Ray job that
``cvat-ray auto-annotate`` submits (and that a KubeRay RayJob runs the same way).

It annotates the chosen tasks one after the other, each with the streaming Ray Data pipeline
of ``cvat_ray.actors.autoannotate``, each as a ``/api/lambda/requests`` row (so progress shows in
the API too). A run has a name; tasks that an earlier attempt of the same run finished are
skipped, so submitting the same command again resumes an interrupted run. At the end it
prints a summary, one line per task and a JSON line with the totals.

The rows it claims name what runs them: on Ray, a lease actor this driver owns (it dies with
the job); with the local engine, this process (``thread@<host>:<pid>``). If the job dies
mid-run, the sweep (``cvat_ray.actors.sweep``) finds its runner gone and fails the row, so the
task is not left blocked; submitting the run again resumes it.

    python -m cvat_ray.actors.dataset_run --function colour-detector --task 1 --task 2
    python -m cvat_ray.actors.dataset_run --function colour-detector --project 3 --run nightly
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from cvat_ray.cluster.settings import Settings, get_settings
from cvat_ray.storage.db import Database


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cvat_ray.actors.dataset_run",
        description="Auto-annotate many tasks with one function, task after task, resumable.",
    )
    p.add_argument("--function", required=True, help="Function id")
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("--task", type=int, action="append", default=[], help="Task id (repeat)")
    scope.add_argument("--project", type=int, default=None, help="Every task of a project")
    scope.add_argument("--organization", default=None, help="Every task of an organization (slug)")
    p.add_argument("--threshold", type=float, default=None, help="Confidence threshold 0..1")
    p.add_argument("--cleanup", action="store_true", help="Delete existing annotations first")
    p.add_argument("--run", default=None, help="Run name (default: derived from the arguments)")
    p.add_argument("--owner", default=None, help="Username the requests belong to (default: admin)")
    p.add_argument(
        "--engine", choices=("ray", "local"), default="ray", help="Pipeline engine (default ray)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    from cvat_ray.storage.db import Database

    args = build_parser().parse_args(argv)
    settings = get_settings()
    db = Database(settings.database_url, pool_size=2)
    try:
        return execute(args, settings, db)
    finally:
        db.dispose()


def execute(
    args: argparse.Namespace, settings: Settings, db: Database, worker: str | None = None
) -> int:
    """Run a parsed dataset run against ``db``; prints per task and a JSON summary.
    ``worker``: the runner name the rows get with the local engine (default: this process)."""
    from sqlalchemy import select

    from cvat_ray.actors.autoannotate import local_results, ray_results, run_request
    from cvat_ray.actors.sweep import thread_worker
    from cvat_ray.cluster.errors import AppError
    from cvat_ray.storage.models import User
    from cvat_ray.storage.services import lambda_functions, lambda_runs

    run = args.run or lambda_runs.default_run_name(
        args.function, args.task, args.project, args.organization
    )
    engine = local_results
    lease: object = None
    worker = worker or thread_worker()
    if args.engine == "ray":
        import ray

        from cvat_ray.actors.runners import take_lease
        from cvat_ray.cluster.names import NAMESPACE

        if not ray.is_initialized():
            # An explicit cluster wins over the RAY_ADDRESS the job supervisor guessed.
            if settings.ray.address:
                os.environ["RAY_ADDRESS"] = settings.ray.address
            ray.init(namespace=NAMESPACE, log_to_driver=False)
        engine = ray_results
        worker, lease = take_lease(run)
    started = time.monotonic()
    try:
        with db.session() as session:
            lambda_functions.get_spec(session, args.function)
            owner = session.scalar(
                select(User.id).where(User.username == (args.owner or settings.admin_username))
            )
            tasks = lambda_runs.dataset_tasks(
                session,
                task_ids=args.task,
                project_id=args.project,
                organization=args.organization,
                function_id=args.function,
                run=run,
            )
    except AppError as exc:
        print(f"Error: {exc.detail}", file=sys.stderr)
        return 2
    params: dict[str, Any] = {"cleanup": args.cleanup}
    if args.threshold is not None:
        params["threshold"] = args.threshold
    print(f"Run {run!r}: function {args.function}, {len(tasks)} task(s).", flush=True)
    totals: dict[str, float] = {
        "tasks": len(tasks),
        "annotated": 0,
        "skipped": 0,
        "failed": 0,
        "objects": 0,
    }
    for task in tasks:
        if task.state != "run":
            totals["skipped"] += 1
            reason = "already annotated by this run" if task.state == "done" else "no data"
            print(f"  task {task.task_id} ({task.name}): skipped, {reason}", flush=True)
            continue
        try:
            with db.session() as session:
                request_id = lambda_runs.new_dataset_request(
                    session,
                    owner_id=owner,
                    task_id=task.task_id,
                    function_id=args.function,
                    run=run,
                    params=params,
                )
        except AppError as exc:
            totals["failed"] += 1
            print(f"  task {task.task_id} ({task.name}): failed, {exc.detail}", flush=True)
            continue
        stats = run_request(db, settings, request_id, worker, engine=engine)
        with db.session() as session:
            status = lambda_functions.retrieve_status(session, request_id)
        if stats is not None:
            totals["objects"] += stats.objects
        if status == "finished":
            totals["annotated"] += 1
        else:
            totals["failed"] += 1
        summary = stats.summary() if stats is not None else "taken by another worker"
        print(f"  task {task.task_id} ({task.name}): {status}, {summary}", flush=True)
    totals["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps({"run": run, **totals}), flush=True)
    del lease  # held until here: the rows of this run are done
    return 0 if totals["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
