"""The FastAPI application. Built without Ray for tests; wrapped by Serve in production."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cvat_ray.actors.launcher import Launcher, make_launcher
from cvat_ray.actors.runs import DatasetRunner, make_dataset_runner, make_run_launcher
from cvat_ray.cluster.settings import Settings, get_settings
from cvat_ray.iam.throttle import LoginThrottle, MemoryStore, RedisStore, ThrottleStore
from cvat_ray.serve_apps import errors
from cvat_ray.serve_apps.compat import HeadAsGetMiddleware, TrailingSlashMiddleware
from cvat_ray.serve_apps.deps import DbWorkers
from cvat_ray.serve_apps.functions import FunctionRunner, make_runner
from cvat_ray.serve_apps.media import MediaRenderer, make_cache
from cvat_ray.serve_apps.middleware import RequestIdMiddleware
from cvat_ray.serve_apps.routers import (
    annotations as annotations_api,
)
from cvat_ray.serve_apps.routers import (
    auth,
    cloudstorages,
    guides,
    invitations,
    issues,
    job_data,
    jobs,
    labels,
    memberships,
    organizations,
    projects,
    quality,
    requests,
    server,
    task_data,
    tasks,
    users,
)
from cvat_ray.serve_apps.routers import (
    lambda_ as lambda_api,
)
from cvat_ray.storage.db import Database

ROUTERS = (
    server,
    auth,
    users,
    organizations,
    memberships,
    invitations,
    projects,
    tasks,
    task_data,
    jobs,
    job_data,
    labels,
    requests,
    cloudstorages,
    annotations_api,
    issues,
    lambda_api,
    guides,
    quality,
)


def make_throttle(settings: Settings) -> LoginThrottle:
    store: ThrottleStore = RedisStore(settings.redis.url) if settings.redis.url else MemoryStore()
    return LoginThrottle(
        store, settings.iam.login_max_failures, settings.iam.login_failure_window_s
    )


def build_app(
    settings: Settings | None = None,
    db: Database | None = None,
    launcher: Launcher | None = None,
    *,
    runs: Launcher | None = None,
    functions: FunctionRunner | None = None,
    dataset_runs: DatasetRunner | None = None,
    behind_serve_proxy: bool = False,
) -> FastAPI:
    """The API app. Settings are read here (in the replica), never at import time.

    ``launcher`` starts background requests; by default Ray actors when the app runs inside
    Ray (a Serve replica), threads of this process otherwise (``media.launcher``)."""
    settings = settings or get_settings()
    logging.getLogger("cvat_ray").setLevel(settings.log_level.upper())
    db = db or Database(
        settings.database_url,
        pool_size=settings.database.pool_size,
        echo=settings.database.echo,
    )
    workers = DbWorkers(settings.api.db_threads)
    launcher = launcher or make_launcher(settings, db)
    media = MediaRenderer(make_cache(settings), settings.media.serve_threads)
    runs = runs or make_run_launcher(settings, db)
    functions = functions or make_runner(settings)
    dataset_runs = dataset_runs or make_dataset_runner(settings, db)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        media.close()
        functions.close()
        dataset_runs.close()
        runs.close()
        launcher.close()
        workers.close()
        db.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="cvat-ray",
        version=server.VERSION,
        description="CVAT 2.80-compatible REST API served by Ray Serve",
        openapi_url="/api/schema",
        docs_url="/api/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.workers = workers
    app.state.throttle = make_throttle(settings)
    app.state.launcher = launcher
    app.state.media = media
    app.state.runs = runs
    app.state.functions = functions
    app.state.dataset_runs = dataset_runs
    for module in ROUTERS:
        app.include_router(module.router)
    errors.install(app)
    app.add_middleware(RequestIdMiddleware, set_header=not behind_serve_proxy)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(TrailingSlashMiddleware)
    return app
