"""The FastAPI application. Built without Ray for tests; wrapped by Serve in production."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from cvat_ray.actors.launcher import Launcher, make_launcher, uses_ray
from cvat_ray.cluster.settings import Settings, get_settings
from cvat_ray.iam.throttle import make_throttle
from cvat_ray.serve_apps import errors
from cvat_ray.serve_apps.bodies import add_described_schemas
from cvat_ray.serve_apps.compat import HeadAsGetMiddleware, TrailingSlashMiddleware
from cvat_ray.serve_apps.deps import DbWorkers
from cvat_ray.serve_apps.functions import FunctionRunner, make_runner
from cvat_ray.serve_apps.media import MediaRenderer, make_cache
from cvat_ray.serve_apps.middleware import BodyGuardMiddleware, RequestIdMiddleware
from cvat_ray.serve_apps.routers import (
    annotations as annotations_api,
)
from cvat_ray.serve_apps.routers import (
    auth,
    backups,
    cloudstorages,
    datasets,
    events,
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
    webhooks,
)
from cvat_ray.serve_apps.routers import (
    lambda_ as lambda_api,
)
from cvat_ray.storage.db import Database
from cvat_ray.storage.events import outbox as events_outbox
from cvat_ray.storage.events.deferred import DeferredEvents
from cvat_ray.storage.webhooks import outbox

ROUTERS = (
    server,
    backups,
    auth,
    users,
    organizations,
    memberships,
    invitations,
    projects,
    tasks,
    task_data,
    datasets,
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
    events,
    webhooks,
)


def _describe_own_bodies(app: FastAPI) -> None:
    """``/api/schema`` also names the models of the bodies that endpoints read themselves
    (``openapi_extra=described_body(...)``)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        built = app.openapi_schema is not None
        schema = generate()
        if not built:
            add_described_schemas(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_app(
    settings: Settings | None = None,
    db: Database | None = None,
    launcher: Launcher | None = None,
    *,
    functions: FunctionRunner | None = None,
    behind_serve_proxy: bool = False,
) -> FastAPI:
    """The API app. Settings are read here (in the replica), never at import time.

    Whether background work runs on Ray is decided here, once (``background.launcher``):
    ``launcher`` runs every background request (the registry's runner actors inside Ray, e.g.
    in a Serve replica; threads of this process otherwise), and online function calls follow
    the same choice unless ``functions.runner`` says otherwise."""
    settings = settings or get_settings()
    logging.getLogger("cvat_ray").setLevel(settings.log_level.upper())
    db = db or Database(
        settings.database_url,
        pool_size=settings.database.pool_size,
        echo=settings.database.echo,
    )
    # webhook deliveries are written with the changes that cause them
    outbox.install()
    on_ray = uses_ray(settings)
    # the analytics consumer of the domain-change hook, in this process
    events_outbox.install(settings.analytics.enabled)
    workers = DbWorkers(settings.api.db_threads)
    launcher = launcher or make_launcher(settings, db, on_ray=on_ray)
    # the media cache's create|read:cache_item events, written to the outbox off the read path
    cache_events = (
        DeferredEvents(db, settings.analytics.flush_interval_s)
        if settings.analytics.enabled
        else None
    )
    media = MediaRenderer(
        make_cache(settings),
        settings.media.serve_threads,
        settings.cache.max_item_bytes,
        events=cache_events,
    )
    functions = functions or make_runner(settings, on_ray=on_ray)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        launcher.open()
        yield
        media.close()
        if cache_events is not None:
            cache_events.close()
        functions.close()
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
    app.state.functions = functions
    for module in ROUTERS:
        app.include_router(module.router)
    _describe_own_bodies(app)
    errors.install(app)
    # Innermost first: the body guard sees stripped paths and its answers carry request ids.
    app.add_middleware(BodyGuardMiddleware)
    app.add_middleware(RequestIdMiddleware, set_header=not behind_serve_proxy)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(TrailingSlashMiddleware)
    return app
