"""Task and project backups: CVAT's ``/api/{tasks|projects}/{id}/backup/export``, the
download of the result, and ``/api/{tasks|projects}/backup/`` (restore).

Both directions are background requests (``export:backup``, ``import:backup``) run by the
launcher after commit: :func:`run_export` writes the zip into ``exports/<request id>/`` of
the data dir (and, for ``location=cloud_storage``, copies it into the bucket), and
:func:`run_import` restores a zip that was uploaded (multipart, Upload-Start/Finish or TUS
into the caller's own upload folder) or named in a cloud storage. A restore is one database
transaction; its media is written into a staging folder that becomes the task's data folder
only after the commit, and is removed on any failure, so a failed restore leaves nothing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import AppError, Conflict, InvalidInput, NotFound
from cvat_ray.cluster.paths import relative_parts, safe_join
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import Resource, authorize
from cvat_ray.storage.annotations import reads
from cvat_ray.storage.backups import reader, writer
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import Database
from cvat_ray.storage.media import cloud
from cvat_ray.storage.media.uploads import TusState, UploadArea, client_basename
from cvat_ray.storage.models import BackgroundRequest, CloudStorage, Project, Task
from cvat_ray.storage.schemas.requests import RqId
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.cloud_storages import access_for, cloud_resource
from cvat_ray.storage.services.data_processing import Progress, data_dir
from cvat_ray.storage.services.resources import (
    get_project,
    get_task,
    project_resource,
    task_resource,
)

logger = logging.getLogger("cvat_ray.backups")

EXPORT = "export:backup"
IMPORT = "import:backup"
Kind = Literal["task", "project"]
Location = Literal["local", "cloud_storage"]

_NAME = re.compile(r"[^A-Za-z0-9_\-. ]+")


@dataclass(frozen=True)
class Where:
    """``location``, ``cloud_storage_id`` and ``filename`` of an export or a restore."""

    location: Location = "local"
    cloud_storage_id: int | None = None
    filename: str | None = None


def exports_dir(settings: Settings) -> Path:
    return settings.data_dir / "exports"


def restores_dir(settings: Settings) -> Path:
    """Uploaded backups handed to a restore request (``<request id>.zip``)."""
    return settings.uploads_dir / "backups" / "requests"


def upload_area(settings: Settings, kind: Kind, user_id: int) -> UploadArea:
    """The caller's own upload of a backup (one per user and kind, as in CVAT)."""
    return UploadArea.at(
        safe_join(settings.uploads_dir / "backups", f"{kind}/{user_id}"),
        settings.media.max_upload_bytes,
    )


def safe_filename(name: str) -> str:
    """A name the clients accept in Content-Disposition (``[A-Za-z0-9_-. ]``, an
    extension, no leading dot)."""
    cleaned = _NAME.sub("_", name).strip(" .")[:200] or "backup"
    return cleaned if cleaned.lower().endswith(".zip") else f"{cleaned}.zip"


def _cloud(session: Session, ctx: RequestContext, where: Where) -> None:
    if where.location != "cloud_storage":
        return
    if where.cloud_storage_id is None:
        raise InvalidInput("Give the cloud storage's id.", field="cloud_storage_id")
    storage = session.get(CloudStorage, where.cloud_storage_id)
    if storage is None:
        raise InvalidInput("The cloud storage does not exist.", field="cloud_storage_id")
    authorize(ctx.principal, ctx.org, "view", cloud_resource(storage))


# ------------------------------------------------------------------------------- export


def export_backup(
    session: Session,
    ctx: RequestContext,
    kind: Kind,
    object_id: int,
    lightweight: bool,
    where: Where,
    launch: request_service.Submit,
) -> RqId:
    """CVAT ``POST /api/{tasks|projects}/{id}/backup/export``: a queued ``export:backup``."""
    if kind == "task":
        task = get_task(session, object_id)
        authorize(ctx.principal, ctx.org, "export:backup", task_resource(session, task))
        name, org_id, project_id = task.name, task.organization_id, task.project_id
    else:
        project = get_project(session, object_id)
        authorize(ctx.principal, ctx.org, "export:backup", project_resource(project))
        name, org_id, project_id = project.name, project.organization_id, project.id
    _cloud(session, ctx, where)
    stamp = datetime.now(UTC).strftime("%Y_%m_%d_%H_%M_%S")
    filename = safe_filename(where.filename or f"{kind}_{name}_backup_{stamp}")
    key = None
    if where.location == "cloud_storage":
        # the object's key in the bucket, as the client named it
        key = str(relative_parts(where.filename or filename, field="filename"))
    row = request_service.new_request(
        session,
        ctx,
        EXPORT,
        kind,
        task_id=object_id if kind == "task" else None,
        project_id=project_id,
        params={
            "lightweight": lightweight,
            "filename": filename,
            "key": key,
            "location": where.location,
            "cloud_storage_id": where.cloud_storage_id,
            "base_url": ctx.base_url,
        },
    )
    row.organization_id = org_id
    request_service.launch_after_commit(session, row, launch)
    return RqId(rq_id=row.id)


def backup_file(
    session: Session,
    ctx: RequestContext,
    kind: Kind,
    object_id: int,
    request_id: str,
    settings: Settings,
) -> tuple[Path, str]:
    """The finished backup of ``/backup/download?rq_id=``: its path and file name."""
    if kind == "task":
        task = get_task(session, object_id)
        authorize(ctx.principal, ctx.org, "export:backup", task_resource(session, task))
    else:
        project = get_project(session, object_id)
        authorize(ctx.principal, ctx.org, "export:backup", project_resource(project))
    row = session.get(BackgroundRequest, request_id)
    same = row is not None and row.operation_type == EXPORT and row.target == kind
    if not same or (row.task_id if kind == "task" else row.project_id) != object_id:  # type: ignore[union-attr]
        raise NotFound("No such backup request for this object.")
    assert row is not None
    if row.owner_id != ctx.principal.user_id and not ctx.principal.is_superuser:
        raise NotFound("No such backup request for this object.")
    if row.status != "finished":
        raise Conflict(f"The backup is not ready (the request is {row.status}).")
    filename = str(row.params.get("filename") or "backup.zip")
    path = safe_join(exports_dir(settings), f"{request_id}/{filename}")
    if row.params.get("location") == "cloud_storage":
        raise InvalidInput("This backup was saved to a cloud storage.")
    if not path.is_file():
        raise NotFound("The backup file has expired; export it again.")
    return path, filename


def _progress(db: Database, request_id: str) -> writer.Progress:
    tick = Progress(db, request_id)

    def report(fraction: float, message: str) -> None:
        tick(fraction, message)

    return report


def _failure(exc: BaseException, what: str, request_id: str) -> str:
    if isinstance(exc, AppError):
        return str(exc.detail) if not isinstance(exc, InvalidInput) else reader.describe(exc)
    logger.exception("%s %s failed", what, request_id)
    return f"Internal error while {what} ({type(exc).__name__}: {exc})."


def run_export(db: Database, settings: Settings, request_id: str, worker: str) -> None:
    """Write the backup of an ``export:backup`` request (no-op when already claimed)."""
    with db.session() as session:
        if not request_service.claim(session, request_id, worker):
            return
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        kind = row.target
        object_id = row.task_id if kind == "task" else row.project_id
        params = dict(row.params or {})
    folder = safe_join(exports_dir(settings), request_id)
    progress = _progress(db, request_id)
    try:
        filename = str(params["filename"])
        path = safe_join(folder, filename)
        folder.mkdir(parents=True, exist_ok=True)
        lightweight = bool(params.get("lightweight", True))
        progress(0.0, "Writing the backup")
        with db.session() as session:
            reads.begin_snapshot(session)
            with writer.open_zip(path) as zf:
                if kind == "task":
                    task = session.get(Task, object_id)
                    if task is None:
                        raise NotFound("The task was deleted.")
                    writer.write_task(
                        zf, session, settings, task, lightweight=lightweight, progress=progress
                    )
                else:
                    project = session.get(Project, object_id)
                    if project is None:
                        raise NotFound("The project was deleted.")
                    writer.write_project(
                        zf, session, settings, project, lightweight=lightweight, progress=progress
                    )
        result_url = None
        if params.get("location") == "cloud_storage":
            key = str(params.get("key") or filename)
            _upload(db, settings, int(params["cloud_storage_id"]), path, key)
            shutil.rmtree(folder, ignore_errors=True)
        else:
            base = str(params.get("base_url", "")).rstrip("/")
            result_url = f"{base}/api/{kind}s/{object_id}/backup/download?rq_id={request_id}"
        with db.session() as session:
            request_service.transition(
                session, request_id, "finished", result_url=result_url, message=""
            )
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        message = _failure(exc, "writing the backup", request_id)
        with db.session() as session:
            request_service.fail_if_unfinished(session, request_id, message)


def _access(db: Database, settings: Settings, storage_id: int) -> cloud.CloudAccess:
    with db.session() as session:
        storage = session.get(CloudStorage, storage_id)
        if storage is None:
            raise InvalidInput("The cloud storage was deleted.")
        return access_for(storage, settings)


def _upload(db: Database, settings: Settings, storage_id: int, path: Path, key: str) -> None:
    access = _access(db, settings, storage_id)
    try:
        cloud.filesystem(access, settings.cloud.timeout_s).put_file(str(path), access.path(key))
    except Exception as exc:
        raise cloud.failure(access, exc, f"take {key}") from exc


def _download(db: Database, settings: Settings, storage_id: int, key: str, dest: Path) -> None:
    access = _access(db, settings, storage_id)
    try:
        cloud.filesystem(access, settings.cloud.timeout_s).get_file(access.path(key), str(dest))
    except FileNotFoundError as exc:
        raise InvalidInput(f"{key}: not found in the cloud storage.") from exc
    except Exception as exc:
        raise cloud.failure(access, exc, f"give {key}") from exc


# ------------------------------------------------------------------------------- import


def _may_import(ctx: RequestContext, kind: Kind) -> None:
    authorize(ctx.principal, ctx.org, "import:backup", Resource(kind=kind))


def import_start(session: Session, ctx: RequestContext, kind: Kind, settings: Settings) -> None:
    """``Upload-Start`` of a backup: a fresh upload folder of the caller."""
    _may_import(ctx, kind)
    upload_area(settings, kind, ctx.principal.user_id).start()


def import_target(
    session: Session, ctx: RequestContext, kind: Kind, settings: Settings
) -> UploadArea:
    """Where a multipart backup goes (a single POST starts an upload too)."""
    _may_import(ctx, kind)
    area = upload_area(settings, kind, ctx.principal.user_id)
    if not area.started:
        area.start()
    return area


def import_tus_create(
    session: Session, ctx: RequestContext, kind: Kind, settings: Settings, name: str, length: int
) -> TusState:
    _may_import(ctx, kind)
    area = upload_area(settings, kind, ctx.principal.user_id)
    if not area.started:
        area.start()
    return area.tus_create(name, length)


def import_tus_target(
    session: Session, ctx: RequestContext, kind: Kind, settings: Settings, upload_id: str
) -> tuple[UploadArea, TusState]:
    _may_import(ctx, kind)
    area = upload_area(settings, kind, ctx.principal.user_id)
    return area, area.tus_state(upload_id)


def import_backup(
    session: Session,
    ctx: RequestContext,
    kind: Kind,
    where: Where,
    settings: Settings,
    launch: request_service.Submit,
) -> RqId:
    """``Upload-Finish`` (or the end of a multipart POST, or a cloud storage file): a queued
    ``import:backup`` that owns the uploaded file from now on."""
    _may_import(ctx, kind)
    _cloud(session, ctx, where)
    source: Path | None = None
    if where.location == "local":
        area = upload_area(settings, kind, ctx.principal.user_id)
        area.require_started()
        if area.pending_tus():
            raise InvalidInput("The backup's upload is not complete.", field="filename")
        names = area.names()
        if where.filename:
            name = client_basename(where.filename)
            if name not in names:
                raise InvalidInput(f"{name} was not uploaded.", field="filename")
        elif len(names) == 1:
            name = names[0]
        else:
            raise InvalidInput("Upload one backup file (and name it in filename).")
        source = area.file(name)
    elif not where.filename:
        raise InvalidInput("Name the backup file in the cloud storage.", field="filename")
    else:
        relative_parts(where.filename, field="filename")
    row = request_service.new_request(
        session,
        ctx,
        IMPORT,
        kind,
        params={
            "location": where.location,
            "cloud_storage_id": where.cloud_storage_id,
            "filename": where.filename,
        },
    )
    if source is not None:
        target = safe_join(restores_dir(settings), f"{row.id}.zip")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        area.clear()
    request_service.launch_after_commit(session, row, launch)
    return RqId(rq_id=row.id)


def run_import(db: Database, settings: Settings, request_id: str, worker: str) -> None:
    """Restore the backup of an ``import:backup`` request (no-op when already claimed)."""
    with db.session() as session:
        if not request_service.claim(session, request_id, worker):
            return
        row = session.get(BackgroundRequest, request_id)
        assert row is not None
        kind, owner_id, org_id = row.target, row.owner_id, row.organization_id
        params = dict(row.params or {})
    path = safe_join(restores_dir(settings), f"{request_id}.zip")
    staging = safe_join(settings.media_dir / "staging", request_id)
    report = _progress(db, request_id)
    # SQLite has one writer: the restore's transaction holds it, so progress is reported
    # only before it begins there
    sqlite = db.engine.dialect.name == "sqlite"

    def progress(fraction: float, message: str) -> None:
        if not (sqlite and in_transaction):
            report(fraction, message)

    in_transaction = False
    moved: list[Path] = []
    try:
        if params.get("location") == "cloud_storage":
            path.parent.mkdir(parents=True, exist_ok=True)
            progress(0.0, "Fetching the backup from the cloud storage")
            _download(db, settings, int(params["cloud_storage_id"]), str(params["filename"]), path)
        if not path.is_file():
            raise InvalidInput("The uploaded backup is gone; upload it again.")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        backup = reader.Backup(path, staging)
        progress(0.05, "Restoring")
        try:
            in_transaction = True
            with db.session() as session:
                if kind == "task":
                    restored = [
                        reader.restore_task(
                            session,
                            settings,
                            backup,
                            prefix="",
                            owner_id=owner_id,
                            organization_id=org_id,
                            project=None,
                            project_labels=None,
                            staging=staging / "task",
                            progress=progress,
                        )
                    ]
                    result_id = restored[0].task_id
                else:
                    result_id, restored = reader.restore_project(
                        session,
                        settings,
                        backup,
                        owner_id=owner_id,
                        organization_id=org_id,
                        staging=staging,
                        progress=progress,
                    )
                row = request_service.transition(
                    session, request_id, "finished", result_id=result_id, message=""
                )
                if kind == "task":
                    row.task_id = result_id
                else:
                    row.project_id = result_id
                # the media moves into place inside the transaction: a failure to commit
                # removes it again below
                for item in restored:
                    if item.data_id is not None and item.media is not None:
                        target = data_dir(settings, item.data_id)
                        shutil.rmtree(target, ignore_errors=True)  # an orphan of a reused id
                        target.parent.mkdir(parents=True, exist_ok=True)
                        os.rename(item.media, target)
                        moved.append(target)
                # gone before the request shows as finished
                _remove(staging, path)
        finally:
            backup.close()
    except Exception as exc:
        for target in moved:
            shutil.rmtree(target, ignore_errors=True)
        _remove(staging, path)
        message = _failure(exc, "restoring the backup", request_id)
        with db.session() as session:
            request_service.fail_if_unfinished(session, request_id, message)


def _remove(staging: Path, upload: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
    upload.unlink(missing_ok=True)


# ------------------------------------------------------------------------- housekeeping


def collect_backups(db: Database, settings: Settings, *, keep_s: float | None = None) -> int:
    """Remove exported backups older than ``backups.keep_s``, uploaded backups no request
    runs any more, and backup uploads idle for ``media.upload_expiry_s``."""
    keep = settings.backups.keep_s if keep_s is None else keep_s
    removed = 0
    now = time.time()
    with db.session() as session:
        running = set(
            session.scalars(
                select(BackgroundRequest.id).where(
                    BackgroundRequest.status.in_(("queued", "started"))
                )
            )
        )
    exports = exports_dir(settings)
    if exports.is_dir():
        for entry in exports.iterdir():
            if entry.name not in running and now - entry.stat().st_mtime > keep:
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    restores = restores_dir(settings)
    if restores.is_dir():
        for entry in restores.iterdir():
            if entry.stem not in running and now - entry.stat().st_mtime > 60:
                entry.unlink(missing_ok=True)
                removed += 1
    for kind in ("task", "project"):
        folder = settings.uploads_dir / "backups" / kind
        if folder.is_dir():
            for entry in folder.iterdir():
                area = UploadArea.at(entry, settings.media.max_upload_bytes)
                if area.remove_if_idle(settings.media.upload_expiry_s):
                    removed += 1
    return removed
