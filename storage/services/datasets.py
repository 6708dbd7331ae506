"""Dataset exports and imports in CVAT's formats: the requests and the work they run.

Export: ``POST /api/{jobs|tasks|projects}/{id}/dataset/export?format=&save_images=...``
writes an ``export:dataset`` (with images) or ``export:annotations`` request and hands it to
the launcher; the worker streams the dataset into a ZIP under ``<data dir>/exports`` (or
writes it to a cloud storage) and sets the absolute ``result_url``
(``.../dataset/download?rq_id=``). While an identical export is queued or running, the POST
answers 409 with its ``rq_id``; a finished one is reused (202, its ``rq_id``) while the
object's ``updated_date`` is unchanged and the file has not expired. Expired files are
removed by the sweep (:func:`remove_expired`).

Import: ``POST /api/{jobs|tasks}/{id}/annotations?format=`` and ``POST
/api/projects/{id}/dataset?format=`` take the file by CVAT's upload flows (multipart
``annotation_file``/``dataset_file``, Upload-Start/TUS/Upload-Finish) or from a cloud
storage (``location=cloud_storage&cloud_storage_id=&filename=``), and write an
``import:annotations`` / ``import:dataset`` request. The worker parses the file
incrementally, matches items, labels and attributes by name and writes everything in one
transaction through the bulk paths: a task or job import replaces its annotations, a project
import of annotations replaces those of the project's tasks whose frames the items name, and a
project import whose archive holds images makes a task per subset of them
(:mod:`cvat_ray.storage.services.dataset_tasks`). Any failure leaves the annotations as they
were, makes no task and fails the request with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import AppError, Conflict, InvalidInput, NotFound
from cvat_ray.cluster.paths import safe_join
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import Resource, authorize
from cvat_ray.storage import changes
from cvat_ray.storage.annotations import bulk, reads
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import Database, forked_session
from cvat_ray.storage.formats import forked, registry
from cvat_ray.storage.formats.archive import Archive, ZipOut
from cvat_ray.storage.formats.model import Parsed, Undivided
from cvat_ray.storage.formats.sink import (
    FrameIndex,
    LabelIndex,
    ahead,
    iter_labeled_data,
    masks_to_polygons,
)
from cvat_ray.storage.formats.source import (
    DbDataset,
    job_dataset,
    project_dataset,
    task_dataset,
)
from cvat_ray.storage.media import cloud
from cvat_ray.storage.media.archives import UnpackBudget
from cvat_ray.storage.media.uploads import TusState, UploadArea, client_basename
from cvat_ray.storage.models import BackgroundRequest, CloudStorage, Job, Project, Task, utcnow
from cvat_ray.storage.schemas.annotations import LabeledData, gc_relaxed
from cvat_ray.storage.schemas.requests import RqId
from cvat_ray.storage.services import dataset_tasks, recorded
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.annotations import (
    CopyChunk,
    ImportWriter,
    job_range,
    task_job_ranges,
)
from cvat_ray.storage.services.cloud_storages import access_for, destination
from cvat_ray.storage.services.data_processing import data_dir
from cvat_ray.storage.services.resources import (
    get_job,
    get_project,
    get_task,
    job_resource,
    project_resource,
    task_resource,
)

logger = logging.getLogger("cvat_ray.datasets")

EXPORT_DATASET = "export:dataset"
EXPORT_ANNOTATIONS = "export:annotations"
IMPORT_DATASET = "import:dataset"
IMPORT_ANNOTATIONS = "import:annotations"
EXPORTS = (EXPORT_DATASET, EXPORT_ANNOTATIONS)
IMPORTS = (IMPORT_DATASET, IMPORT_ANNOTATIONS)

Kind = str  # "task" | "job" | "project"


class ExportRunning(Conflict):
    """An identical export is queued or running: 409 with its ``rq_id`` (as CVAT)."""

    def __init__(self, rq_id: str) -> None:
        super().__init__("An identical export is in progress.")
        self.rq_id = rq_id

    def body(self) -> object:
        return {"rq_id": self.rq_id}


@dataclass
class Target:
    kind: Kind
    id: int
    resource: Resource
    stamp: str
    name: str
    task_id: int | None = None
    project_id: int | None = None
    job_id: int | None = None
    organization_id: int | None = None
    target_storage: dict[str, Any] | None = None


def formats(session: Session, ctx: RequestContext) -> dict[str, list[dict[str, object]]]:
    """CVAT ``GET /api/server/annotation/formats``: any signed-in user."""
    authorize(ctx.principal, ctx.org, "view", None)
    return registry.listing()


def _target(session: Session, kind: Kind, obj_id: int) -> Target:
    if kind == "task":
        task = get_task(session, obj_id)
        return Target(
            kind, task.id, task_resource(session, task), task.updated_date.isoformat(),
            task.name, task_id=task.id, project_id=task.project_id,
            organization_id=task.organization_id, target_storage=task.target_storage,
        )  # fmt: skip
    if kind == "job":
        job = get_job(session, obj_id)
        task = get_task(session, job.task_id)
        stamp = max(job.updated_date, task.updated_date).isoformat()
        return Target(
            kind, job.id, job_resource(session, job), stamp, f"{task.name}_job_{job.id}",
            task_id=task.id, project_id=task.project_id, job_id=job.id,
            organization_id=task.organization_id, target_storage=task.target_storage,
        )  # fmt: skip
    if kind == "project":
        project = get_project(session, obj_id)
        latest = session.scalar(
            select(func.max(Task.updated_date)).where(Task.project_id == project.id)
        )
        stamp = max(filter(None, (project.updated_date, latest))).isoformat()
        return Target(
            kind, project.id, project_resource(project), stamp, project.name,
            project_id=project.id, organization_id=project.organization_id,
            target_storage=project.target_storage,
        )  # fmt: skip
    raise NotFound()


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise InvalidInput(f"'{value}' is not a boolean.")


_SAFE_NAME = re.compile(r"[^A-Za-z0-9_\-. ]+")


def download_name(kind: Kind, name: str, fmt: str, stamp: str) -> str:
    """A file name the SDK accepts (``[A-Za-z0-9_\\-. ]+`` with an extension)."""
    tag = re.sub(r"\D", "", stamp)[:14]
    base = _SAFE_NAME.sub("_", f"{kind}_{name}_dataset_{tag}_{fmt}".replace(" ", "_"))
    base = base.strip("._ ")
    return (base or kind)[:200] + ".zip"


def _ids(target: Target) -> dict[str, Any]:
    return {"task_id": target.task_id, "project_id": target.project_id, "job_id": target.job_id}


def _same(row: BackgroundRequest, params: dict[str, Any]) -> bool:
    got = row.params or {}
    return all(got.get(k) == params.get(k) for k in ("filename", "location", "cloud_storage_id"))


def request_export(
    session: Session,
    ctx: RequestContext,
    kind: Kind,
    obj_id: int,
    query: dict[str, str],
    base_url: str,
    settings: Settings,
    submit: request_service.Submit,
) -> RqId:
    """CVAT ``POST /api/{kind}s/{id}/dataset/export``: 202 ``{rq_id}`` (a finished export of
    the unchanged object is reused), 409 ``{rq_id}`` while an identical one runs."""
    target = _target(session, kind, obj_id)
    save_images = _bool(query.get("save_images"))
    op = EXPORT_DATASET if save_images else EXPORT_ANNOTATIONS
    authorize(ctx.principal, ctx.org, op, target.resource)
    fmt = registry.check_export(query.get("format"))
    dest = destination(
        session, ctx, query.get("location"), query.get("cloud_storage_id"), target.target_storage
    )
    filename = query.get("filename") or ""
    if filename:
        client_basename(filename)
        if dest.location == "local" and _SAFE_NAME.search(filename):
            raise InvalidInput(
                "may hold only letters, digits, '_', '-', '.' and spaces.", field="filename"
            )
    params = {
        "save_images": save_images,
        "filename": filename,
        "location": dest.location,
        "cloud_storage_id": dest.cloud_storage_id,
        "stamp": target.stamp,
        "base_url": base_url.rstrip("/"),
    }
    column = {"task": BackgroundRequest.task_id, "job": BackgroundRequest.job_id,
              "project": BackgroundRequest.project_id}[kind]  # fmt: skip
    rows = session.scalars(
        select(BackgroundRequest)
        .where(
            BackgroundRequest.operation_type == op,
            BackgroundRequest.target == kind,
            column == obj_id,
            BackgroundRequest.format == fmt,
            BackgroundRequest.owner_id == ctx.principal.user_id,
            BackgroundRequest.status != "failed",
        )
        .order_by(BackgroundRequest.created_date.desc())
    )
    now = utcnow()
    for row in rows:
        if not _same(row, params):
            continue
        if row.status in ("queued", "started"):
            raise ExportRunning(row.id)
        if (
            row.status == "finished"
            and (row.params or {}).get("stamp") == target.stamp
            and dest.location == "local"
            and row.expiry_date is not None
            and row.expiry_date > now
            and result_path(row.id, settings).exists()
        ):
            return RqId(rq_id=row.id)
    row = request_service.new_request(
        session, ctx, op, kind, format=fmt, params=params, **_ids(target)
    )
    row.organization_id = target.organization_id
    _record_io(session, ctx, "export", target, fmt, dest.cloud_storage_id, save_images=save_images)
    request_service.launch_after_commit(session, row, submit)
    return RqId(rq_id=row.id)


def _record_io(
    session: Session,
    ctx: RequestContext,
    action: str,
    target: Target,
    fmt: str,
    cloud_storage_id: int | None,
    **fields: Any,
) -> None:
    """CVAT's ``export:dataset`` / ``import:dataset`` event of a request made (annotations
    or a whole dataset, a project, task or job): ``payload.format``, ``cloud_storage.id``
    when one is used, and ``save_images`` for an export."""
    payload: dict[str, Any] = {"format": fmt, **fields}
    if cloud_storage_id is not None:
        payload["cloud_storage"] = {"id": cloud_storage_id}
    recorded.record(
        session,
        ctx,
        action,
        "dataset",
        scope=changes.Scope(
            org_id=target.organization_id,
            project_id=target.project_id,
            task_id=target.task_id,
            job_id=target.job_id,
        ),
        extra={"event": {"payload": payload}},
    )


def result_path(request_id: str, settings: Settings) -> Path:
    return safe_join(settings.exports_dir, f"{request_id}.zip")


@dataclass
class Download:
    path: Path
    filename: str


def export_download(
    session: Session, ctx: RequestContext, kind: Kind, obj_id: int, rq_id: str | None,
    settings: Settings,
) -> Download:  # fmt: skip
    """CVAT ``GET /api/{kind}s/{id}/dataset/download?rq_id=``: the finished export's file."""
    if not rq_id:
        raise InvalidInput("rq_id is required.", field="rq_id")
    target = _target(session, kind, obj_id)
    row = session.get(BackgroundRequest, rq_id)
    if (
        row is None
        or row.operation_type not in EXPORTS
        or row.target != kind
        or row.owner_id != ctx.principal.user_id
        or _ids(target)[f"{kind}_id"] != obj_id
    ):
        raise NotFound("Export request not found.")
    authorize(ctx.principal, ctx.org, row.operation_type, target.resource)
    if row.status != "finished":
        raise InvalidInput(f"The export is {row.status}, not finished.", field="rq_id")
    path = result_path(row.id, settings)
    if (row.params or {}).get("location") != "local":
        raise InvalidInput("The export was written to a cloud storage.", field="rq_id")
    if not path.exists() or (row.expiry_date is not None and row.expiry_date <= utcnow()):
        raise NotFound("The export has expired; export again.")
    name = (row.params or {}).get("filename") or download_name(
        kind, target.name, row.format or "dataset", (row.params or {}).get("stamp", "")
    )
    return Download(path, name)


# ---------------------------------------------------------------------------------- the work


class Progress:
    def __init__(self, db: Database, request_id: str) -> None:
        self.db = db
        self.request_id = request_id

    def __call__(self, value: float, message: str) -> None:
        with self.db.session() as session:
            request_service.transition(
                session, self.request_id, "started", progress=value, message=message
            )


def _reporter(db: Database, request_id: str, every_s: float = 1.0) -> Callable[[float], None]:
    """Progress of an export, written at most every ``every_s`` seconds; raises Conflict
    once the request was cancelled (failed), which stops the export."""
    last = [0.0]

    def report(share: float) -> None:
        now = time.monotonic()
        if now - last[0] < every_s:
            return
        last[0] = now
        Progress(db, request_id)(0.9 * share, "Writing the dataset")

    return report


def _reason(exc: AppError) -> str:
    """The error's message, with the field it is about (``shapes[3].points: ...``)."""
    if isinstance(exc, InvalidInput):
        parts = [
            " ".join(msgs) if key == "non_field_errors" else f"{key}: {' '.join(msgs)}"
            for key, msgs in exc.fields.items()
        ]
        if parts:
            return "; ".join(parts)
    return exc.detail


def _fail(db: Database, request_id: str, message: str) -> None:
    with db.session() as session:
        request_service.fail_if_unfinished(session, request_id, message)


def _dataset(session: Session, settings: Settings, row: BackgroundRequest) -> DbDataset:
    if row.target == "job":
        assert row.job_id is not None
        job = session.get(Job, row.job_id)
        if job is None:
            raise NotFound("The job was deleted.")
        return job_dataset(session, settings, job)
    if row.target == "project":
        project = session.get(Project, row.project_id)
        if project is None:
            raise NotFound("The project was deleted.")
        return project_dataset(session, settings, project)
    task = session.get(Task, row.task_id)
    if task is None:
        raise NotFound("The task was deleted.")
    return task_dataset(session, settings, task)


def run_export(db: Database, settings: Settings, request_id: str, worker: str) -> None:
    """Run one export request (no-op when another worker claimed it)."""
    with db.session() as session:
        if not request_service.claim(session, request_id, worker):
            return
    tmp = settings.exports_dir / f"{request_id}.part"
    try:
        Progress(db, request_id)(0.0, "Writing the dataset")
        settings.exports_dir.mkdir(parents=True, exist_ok=True)
        with db.session() as session:
            reads.begin_snapshot(session)
            row = session.get(BackgroundRequest, request_id)
            assert row is not None
            params = dict(row.params or {})
            module = registry.exporter(row.format)
            dataset = _dataset(session, settings, row)
            dataset.on_page = _reporter(db, request_id)
            with ZipOut(tmp) as out, gc_relaxed():
                module.write(dataset, out, row.format, bool(params.get("save_images")))
            kind = row.target
            obj_id = {"task": row.task_id, "job": row.job_id, "project": row.project_id}[kind]
            name = params.get("filename") or download_name(
                kind, dataset.meta.name, row.format or "dataset", params.get("stamp", "")
            )
        result_url: str | None = None
        if params.get("location") == "cloud_storage":
            Progress(db, request_id)(0.9, "Writing to the cloud storage")
            with db.session() as session:
                storage = session.get(CloudStorage, params.get("cloud_storage_id"))
                if storage is None:
                    raise InvalidInput("The cloud storage was deleted.")
                access = access_for(storage, settings)
            cloud.upload(access, name, tmp, settings.cloud.timeout_s)
            tmp.unlink(missing_ok=True)
        else:
            os.replace(tmp, result_path(request_id, settings))
            result_url = (
                f"{params.get('base_url', '')}/api/{kind}s/{obj_id}/dataset/download"
                f"?rq_id={request_id}"
            )
        with db.session() as session:
            row = request_service.transition(
                session, request_id, "finished", message="", result_url=result_url
            )
            row.expiry_date = utcnow() + timedelta(seconds=settings.datasets.result_ttl_s)
    except AppError as exc:
        tmp.unlink(missing_ok=True)
        _fail(db, request_id, f"The export failed: {_reason(exc)}")
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        logger.exception("export %s failed", request_id)
        _fail(db, request_id, f"The export failed: {type(exc).__name__}: {exc}")


def remove_expired(db: Database, settings: Settings) -> int:
    """Remove export files past their expiry (and stray partial files of dead workers)."""
    folder = settings.exports_dir
    if not folder.is_dir():
        return 0
    now = utcnow()
    with db.session() as session:
        live = {
            r.id
            for r in session.scalars(
                select(BackgroundRequest).where(
                    BackgroundRequest.operation_type.in_(EXPORTS),
                    BackgroundRequest.status.in_(("queued", "started", "finished")),
                )
            )
            if r.status != "finished" or (r.expiry_date is not None and r.expiry_date > now)
        }
    removed = 0
    for entry in folder.iterdir():
        if entry.stem not in live:
            entry.unlink(missing_ok=True)
            removed += 1
    # imports whose requests ended leave their file behind only if a worker died
    imports = settings.imports_dir
    if imports.is_dir():
        with db.session() as session:
            pending = set(
                session.scalars(
                    select(BackgroundRequest.id).where(
                        BackgroundRequest.operation_type.in_(IMPORTS),
                        BackgroundRequest.status.in_(("queued", "started")),
                    )
                )
            )
        for entry in imports.iterdir():
            if entry.name not in pending:
                shutil.rmtree(entry, ignore_errors=True)
    return removed


# ---------------------------------------------------------------------------------- imports


def _import_target(session: Session, ctx: RequestContext, kind: Kind, obj_id: int) -> Target:
    target = _target(session, kind, obj_id)
    op = IMPORT_DATASET if kind == "project" else IMPORT_ANNOTATIONS
    authorize(ctx.principal, ctx.org, op, target.resource)
    return target


def import_area(settings: Settings, ctx: RequestContext, kind: Kind, obj_id: int) -> UploadArea:
    """Where a client's annotation file waits between Upload-Start and Upload-Finish (per
    object and user, so two users' uploads never mix)."""
    return UploadArea(
        settings.uploads_dir / "imports",
        f"{kind}-{obj_id}-u{ctx.principal.user_id}",
        settings.datasets.max_import_bytes,
    )


def import_start(
    session: Session, ctx: RequestContext, kind: Kind, obj_id: int, settings: Settings
) -> None:
    _import_target(session, ctx, kind, obj_id)
    import_area(settings, ctx, kind, obj_id).start()


def import_upload_target(
    session: Session, ctx: RequestContext, kind: Kind, obj_id: int, settings: Settings
) -> UploadArea:
    """The area a multipart body is parsed into (a fresh one: a one-request import)."""
    _import_target(session, ctx, kind, obj_id)
    area = import_area(settings, ctx, kind, obj_id)
    area.start()
    return area


def import_tus_create(
    session: Session, ctx: RequestContext, kind: Kind, obj_id: int, settings: Settings,
    filename: str, length: int,
) -> TusState:  # fmt: skip
    _import_target(session, ctx, kind, obj_id)
    area = import_area(settings, ctx, kind, obj_id)
    if not area.started:
        area.start()
    return area.tus_create(filename, length)


def import_tus_target(
    session: Session, ctx: RequestContext, kind: Kind, obj_id: int, settings: Settings,
    upload_id: str,
) -> tuple[UploadArea, TusState]:  # fmt: skip
    _import_target(session, ctx, kind, obj_id)
    area = import_area(settings, ctx, kind, obj_id)
    return area, area.tus_state(upload_id)


def import_finish(
    session: Session,
    ctx: RequestContext,
    kind: Kind,
    obj_id: int,
    query: dict[str, str],
    settings: Settings,
    submit: request_service.Submit,
) -> RqId:
    """Upload-Finish (or a multipart body, or a cloud storage file): an import request."""
    target = _import_target(session, ctx, kind, obj_id)
    fmt = registry.check_import(query.get("format"))
    conv_mask_to_poly = _bool(query.get("conv_mask_to_poly"), default=True)
    op = IMPORT_DATASET if kind == "project" else IMPORT_ANNOTATIONS
    running = session.scalar(
        select(BackgroundRequest.id).where(
            BackgroundRequest.operation_type.in_(IMPORTS),
            BackgroundRequest.task_id == target.task_id if kind != "project"
            else BackgroundRequest.project_id == target.project_id,
            BackgroundRequest.status.in_(("queued", "started")),
        )
    )  # fmt: skip
    if running is not None:
        raise Conflict(f"An import into this {kind} is in progress (request {running}).")
    source = query.get("location") or ""
    # base_url: the links of the payloads of the tasks a project import makes
    params: dict[str, Any] = {
        "conv_mask_to_poly": conv_mask_to_poly,
        "base_url": ctx.base_url,
        recorded.ORIGIN: recorded.origin_of(ctx),
    }
    row = request_service.new_request(
        session, ctx, op, kind, format=fmt, params=dict(params), **_ids(target)
    )
    row.organization_id = target.organization_id
    folder = safe_join(settings.imports_dir, row.id)
    if source == "cloud_storage":
        dest = destination(session, ctx, "cloud_storage", query.get("cloud_storage_id"), None)
        key = query.get("filename") or ""
        if not key:
            raise InvalidInput("name the file in the cloud storage.", field="filename")
        params.update(cloud_storage_id=dest.cloud_storage_id, key=key)
        params["file"] = client_basename(key)
    else:
        area = import_area(settings, ctx, kind, obj_id)
        area.require_started()
        if area.pending_tus():
            raise InvalidInput("The upload is not complete.", field="filename")
        names = area.names()
        wanted = query.get("filename")
        if wanted:
            wanted = client_basename(wanted)
            if wanted not in names:
                raise InvalidInput(f"{wanted} was not uploaded.", field="filename")
        elif len(names) == 1:
            wanted = names[0]
        else:
            raise InvalidInput(
                "Upload one annotation file (or name it with filename).", field="filename"
            )
        folder.mkdir(parents=True, exist_ok=True)
        os.replace(area.file(wanted), safe_join(folder, wanted))
        area.clear()
        params["file"] = wanted
    row.params = dict(params)
    _record_io(session, ctx, "import", target, fmt, params.get("cloud_storage_id"))
    request_service.launch_after_commit(session, row, submit)
    return RqId(rq_id=row.id)


def _archive(settings: Settings, path: Path) -> Archive:
    budget = UnpackBudget(
        max_members=settings.media.max_archive_members,
        max_bytes=settings.media.max_unpacked_bytes,
        max_ratio=settings.media.max_compression_ratio,
    )
    return Archive(path, budget, path.name)


def _forks(archive: Archive, settings: Settings | None) -> bool:
    """Whether an import's chunks are made in a forked process (storage/formats/forked.py):
    for uploads from ``datasets.fork_reader_from_bytes`` on; smaller ones in a thread, where
    a fork's milliseconds would be a share of the import."""
    if settings is None or not forked.available():
        return False
    return archive.size >= settings.datasets.fork_reader_from_bytes


def _write_task(
    session: Session,
    task: Task,
    jobs: list[Any],
    parsed: Parsed,
    actor: changes.Actor,
    job_id: int | None = None,
    archive: Archive | None = None,
    settings: Settings | None = None,
) -> int:
    """Write the dataset chunk by chunk (the first clears the jobs) in the caller's
    transaction, each chunk's annotation events recorded under ``actor``. The chunks are
    made while the previous one is written: for a large ``archive`` (:func:`_forks`) in
    forked processes, on PostgreSQL by several at once where the reader can divide its file
    (:func:`_write_shares`), else in one; in a thread otherwise."""
    frames = FrameIndex(
        session, task, [f for j in jobs for f in range(j.start, j.stop + 1) if j.holds(f)]
    )
    labels = LabelIndex(session, task)
    forks = archive is not None and _forks(archive, settings)
    if forks and settings is not None and _divides(session, parsed, settings):
        assert archive is not None
        try:
            with session.begin_nested():
                return _write_shares(session, task, jobs, parsed, actor, job_id, archive,
                                     (frames, labels), settings.datasets.import_processes)  # fmt: skip
        except (Undivided, OSError) as exc:
            logger.info("The import's file cannot be divided (%s): read by one process", exc)
    writer = ImportWriter(session, task, jobs, actor, job_id)

    def checked() -> Iterator[LabeledData]:
        return (writer.check(d) for d in iter_labeled_data(parsed, labels, frames))

    source: Iterator[LabeledData]
    if forks:
        assert archive is not None
        source = forked.chunks_in_child(checked, LabeledData, archive.reopen)
    else:
        source = checked()
    total = 0
    # a failed write stops the making of chunks
    with contextlib.closing(ahead(source)) as chunks:
        for data in chunks:
            writer.write(data)
            total += _count(data)
    return total


def _divides(session: Session, parsed: Parsed, settings: Settings) -> bool:
    """Whether an import is read in shares by several processes: on PostgreSQL (each
    process takes ids on a connection of its own), with ``datasets.import_processes`` of 2
    or more, by a reader that can divide its file."""
    return (
        session.get_bind().dialect.name == "postgresql"
        and settings.datasets.import_processes > 1
        and parsed.divide is not None
        and not parsed.items
        and not parsed.tracks
    )


def _write_shares(
    session: Session,
    task: Task,
    jobs: list[Any],
    parsed: Parsed,
    actor: changes.Actor,
    job_id: int | None,
    archive: Archive,
    indexes: tuple[FrameIndex, LabelIndex],
    processes: int,
) -> int:
    """The dataset read in ``processes`` shares, each by a forked process that makes its
    chunks into rows (matched, checked, split into jobs, ids taken on a connection of its
    own: :meth:`ImportWriter.rows`); this process only writes them, in turn. Raises
    :class:`Undivided` (or OSError: no process) where the file cannot be read so; the
    caller undoes what was written and reads it whole."""
    frames, labels = indexes
    writer = ImportWriter(session, task, jobs, actor, job_id)

    def share(k: int) -> Iterator[CopyChunk]:
        # the parent's session stays referenced (by ``writer``) and unused here
        ids = bulk.IdAllocator(forked_session(session))
        for data in iter_labeled_data(parsed.share(k, processes), labels, frames):
            yield writer.rows(writer.check(data), ids)

    made = forked.streams_in_children(
        [functools.partial(share, k) for k in range(processes)], CopyChunk, archive.reopen
    )
    total = 0
    # the next chunk is read while this one is written
    with contextlib.closing(ahead(made)) as chunks:
        for chunk in chunks:
            writer.write_rows(chunk)
            total += chunk.count
    return total


def _count(data: LabeledData) -> int:
    return len(data.tags) + len(data.shapes) + len(data.tracks)


def _write_project(session: Session, project: Project, parsed: Any, actor: changes.Actor) -> int:
    """Items go to the project's tasks whose frames they name (first task by id wins)."""
    tasks = list(
        session.scalars(
            select(Task).where(Task.project_id == project.id, Task.data_id.is_not(None))
        ).all()
    )
    if not tasks:
        raise InvalidInput("The project has no task with data to import annotations into.")
    indexes = [(t, FrameIndex(session, t)) for t in sorted(tasks, key=lambda t: t.id)]
    per_task: dict[int, list[Any]] = {t.id: [] for t in tasks}
    unmatched: list[str] = []
    for item in parsed.all_items():
        if not item.tags and not item.shapes:
            continue
        for task, index in indexes:
            try:
                index.match(item)
            except InvalidInput:
                continue
            per_task[task.id].append(item)
            break
        else:
            unmatched.append(item.name)
    if unmatched:
        raise InvalidInput(
            f"{len(unmatched)} items match no frame of the project's tasks, e.g. '{unmatched[0]}'."
        )
    if parsed.tracks:
        raise InvalidInput("Tracks cannot be imported into a project; import them into a task.")
    total = 0
    for task, _ in indexes:
        if not per_task[task.id]:
            continue
        sub = Parsed(
            items=per_task[task.id],
            normalized=parsed.normalized,
            soft_attributes=parsed.soft_attributes,
        )
        total += _write_task(session, task, task_job_ranges(session, task.id), sub, actor)
    return total


def _new_task_writer(actor: changes.Actor) -> Callable[[Session, Task, Parsed], int]:
    """How a project import that made a task writes the task's annotations."""

    def write(session: Session, task: Task, parsed: Parsed) -> int:
        return _write_task(session, task, task_job_ranges(session, task.id), parsed, actor)

    return write


def run_import(db: Database, settings: Settings, request_id: str, worker: str) -> None:
    """Run one import request (no-op when another worker claimed it)."""
    with db.session() as session:
        if not request_service.claim(session, request_id, worker):
            return
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        params = dict(row.params or {})
        fmt = row.format or ""
        kind = row.target
        access = None
        if params.get("cloud_storage_id") is not None:
            storage = session.get(CloudStorage, params["cloud_storage_id"])
            if storage is not None:
                access = access_for(storage, settings)
    folder = safe_join(settings.imports_dir, request_id)
    staging = safe_join(settings.media_dir / "staging", request_id)
    created: list[dataset_tasks.NewTask] = []
    moved: list[Path] = []
    # SQLite has one writer, held by the import's transaction: no progress reports there
    quiet = db.engine.dialect.name == "sqlite"

    def progress(share: float, message: str) -> None:
        if not quiet:
            Progress(db, request_id)(0.1 + 0.8 * share, message)

    try:
        path = safe_join(folder, str(params.get("file") or "dataset"))
        if params.get("key") is not None:
            if access is None:
                raise InvalidInput("The cloud storage was deleted.")
            Progress(db, request_id)(0.0, "Reading the file from the cloud storage")
            folder.mkdir(parents=True, exist_ok=True)
            cloud.download(access, str(params["key"]), path, settings.cloud.timeout_s)
        if not path.exists():
            raise InvalidInput("The uploaded file is gone (was the request run twice?).")
        Progress(db, request_id)(0.1, "Reading and writing the annotations")
        module = registry.importer(fmt)
        with _archive(settings, path) as archive, db.session() as session, gc_relaxed():
            parsed = module.read(archive, fmt)
            actor = recorded.background_actor(session, row, params.get(recorded.ORIGIN))
            if params.get("conv_mask_to_poly", True):
                masks_to_polygons(parsed)
            if kind == "project":
                project = session.get(Project, row.project_id)
                if project is None:
                    raise NotFound("The project was deleted.")
                if dataset_tasks.has_images(archive):
                    owner = recorded.background_context(
                        session, row.owner_id, str(params.get("base_url") or "")
                    )
                    count, created = dataset_tasks.create_tasks(
                        session, settings, project, archive, parsed, staging, progress,
                        _new_task_writer(actor), owner,
                    )  # fmt: skip
                else:
                    count = _write_project(session, project, parsed, actor)
            else:
                task = session.get(Task, row.task_id)
                if task is None:
                    raise NotFound("The task was deleted.")
                job_id = None
                if kind == "job":
                    job = session.get(Job, row.job_id)
                    if job is None:
                        raise NotFound("The job was deleted.")
                    jobs = [job_range(session, job)]
                    job_id = job.id
                else:
                    jobs = task_job_ranges(session, task.id)
                count = _write_task(session, task, jobs, parsed, actor, job_id, archive, settings)
            request_service.transition(
                session, request_id, "finished", message=f"Imported {count} objects."
            )
            # the new tasks' media moves into place inside the transaction: a failure to
            # commit removes it again below
            for new in created:
                target = data_dir(settings, new.data_id)
                shutil.rmtree(target, ignore_errors=True)  # an orphan of a reused id
                target.parent.mkdir(parents=True, exist_ok=True)
                os.rename(new.media, target)
                moved.append(target)
    except AppError as exc:
        _unmove(moved)
        _fail(db, request_id, f"The import failed: {_reason(exc)}")
    except Exception as exc:
        _unmove(moved)
        logger.exception("import %s failed", request_id)
        _fail(db, request_id, f"The import failed: {type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)


def _unmove(moved: list[Path]) -> None:
    """The new tasks' media folders of an import that was rolled back."""
    for target in moved:
        shutil.rmtree(target, ignore_errors=True)
