"""Receiving task data: CVAT's upload protocol (Upload-Start, Upload-Multiple, TUS,
Upload-Finish) and JSON requests naming share files, URLs or cloud storage files.

Each call checks ``upload:data`` on the task. Upload-Finish and the JSON requests write a
``create:task`` request row and hand it to the launcher after commit; the data itself is
processed in the background (``cvat_ray.storage.services.data_processing``).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import Conflict, InvalidInput
from cvat_ray.cluster.outbound import OutboundGuard
from cvat_ray.cluster.paths import relative_parts, safe_join
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.authz import authorize
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.media.uploads import TusState, UploadArea
from cvat_ray.storage.models import BackgroundRequest, CloudStorage, Task
from cvat_ray.storage.schemas.data import DataRequest
from cvat_ray.storage.schemas.requests import RqId
from cvat_ray.storage.services import requests as request_service
from cvat_ray.storage.services.cloud_storages import cloud_resource
from cvat_ray.storage.services.resources import get_task, task_resource

Launch = request_service.Submit
CREATE_TASK = "create:task"


def upload_area(settings: Settings, task_id: int) -> UploadArea:
    return UploadArea(settings.uploads_dir, task_id, settings.media.max_upload_bytes)


def active_request(session: Session, task_id: int) -> BackgroundRequest | None:
    return session.scalar(
        select(BackgroundRequest).where(
            BackgroundRequest.task_id == task_id,
            BackgroundRequest.operation_type == CREATE_TASK,
            BackgroundRequest.status.in_(("queued", "started")),
        )
    )


def _writable_task(session: Session, ctx: RequestContext, task_id: int) -> Task:
    task = get_task(session, task_id, for_update=True)
    authorize(ctx.principal, ctx.org, "upload:data", task_resource(session, task))
    if task.data_id is not None:
        raise InvalidInput("The task already has data; adding more is not supported.")
    if active_request(session, task_id) is not None:
        raise Conflict("The task's data is being processed; wait for that request to end.")
    return task


def upload_start(session: Session, ctx: RequestContext, task_id: int, settings: Settings) -> None:
    """CVAT ``Upload-Start``: a fresh upload area for the task."""
    _writable_task(session, ctx, task_id)
    upload_area(settings, task_id).start()


def upload_target(
    session: Session, ctx: RequestContext, task_id: int, settings: Settings
) -> UploadArea:
    """Where the files of an ``Upload-Multiple`` body go (after the checks). A plain
    multipart POST without Upload-Start starts an upload too."""
    _writable_task(session, ctx, task_id)
    area = upload_area(settings, task_id)
    if not area.started:
        area.start()
    return area


def tus_create(
    session: Session,
    ctx: RequestContext,
    task_id: int,
    settings: Settings,
    filename: str,
    length: int,
) -> TusState:
    _writable_task(session, ctx, task_id)
    return upload_area(settings, task_id).tus_create(filename, length)


def tus_target(
    session: Session, ctx: RequestContext, task_id: int, settings: Settings, upload_id: str
) -> tuple[UploadArea, TusState]:
    """The upload a TUS PATCH or HEAD is about (after the checks)."""
    _writable_task(session, ctx, task_id)
    area = upload_area(settings, task_id)
    return area, area.tus_state(upload_id)


def _new_request(
    session: Session,
    ctx: RequestContext,
    task: Task,
    source: str,
    body: DataRequest,
    settings: Settings,
    launch: Launch,
) -> RqId:
    if body.chunk_size and body.chunk_size > settings.media.max_chunk_size:
        raise InvalidInput(
            f"Ensure this value is less than or equal to {settings.media.max_chunk_size} "
            "(the most frames per chunk on this server).",
            field="chunk_size",
        )
    row = request_service.new_request(
        session,
        ctx,
        CREATE_TASK,
        "task",
        task_id=task.id,
        project_id=task.project_id,
        # base_url: the links of the jobs' create:job payloads, made in the background
        params={
            "source": source,
            "data": body.model_dump(mode="json"),
            "base_url": ctx.base_url,
        },
    )
    row.organization_id = task.organization_id
    request_service.launch_after_commit(session, row, launch)
    return RqId(rq_id=row.id)


def upload_finish(
    session: Session,
    ctx: RequestContext,
    task_id: int,
    body: DataRequest,
    settings: Settings,
    launch: Launch,
) -> RqId:
    """CVAT ``Upload-Finish``: process the uploaded files (or, when the body names share,
    URL or cloud files instead, those)."""
    task = _writable_task(session, ctx, task_id)
    area = upload_area(settings, task_id)
    if body.server_files or body.remote_files:
        return _external(session, ctx, task, body, settings, launch)
    area.require_started()
    if area.pending_tus():
        raise InvalidInput("Some TUS uploads are not complete.", field="client_files")
    names = area.names()
    if not names:
        raise InvalidInput("No files were uploaded.", field="client_files")
    if len(names) > settings.media.max_files:
        raise InvalidInput(
            f"{len(names)} files were uploaded; at most {settings.media.max_files} are allowed.",
            field="client_files",
        )
    if body.sorting_method == "predefined" and body.upload_file_order:
        missing = sorted(set(body.upload_file_order) - set(names))
        if missing:
            raise InvalidInput(
                f"upload_file_order names files that were not uploaded: {missing[:5]}",
                field="upload_file_order",
            )
    return _new_request(session, ctx, task, "local", body, settings, launch)


def create_data(
    session: Session,
    ctx: RequestContext,
    task_id: int,
    body: DataRequest,
    settings: Settings,
    launch: Launch,
) -> RqId:
    """CVAT ``POST /api/tasks/{id}/data/`` with a JSON ``DataRequest`` (share, URL or cloud
    files), without the upload headers."""
    task = _writable_task(session, ctx, task_id)
    if not body.server_files and not body.remote_files:
        area = upload_area(settings, task_id)
        if area.names():  # files were uploaded without Upload-Finish: treat as finish
            return upload_finish(session, ctx, task_id, body, settings, launch)
        raise InvalidInput(
            "No files were given: upload client_files, or name server_files or remote_files.",
            field="client_files",
        )
    return _external(session, ctx, task, body, settings, launch)


def _external(
    session: Session,
    ctx: RequestContext,
    task: Task,
    body: DataRequest,
    settings: Settings,
    launch: Launch,
) -> RqId:
    if body.server_files and body.remote_files:
        raise InvalidInput("Give server_files or remote_files, not both.", field="server_files")
    count = len(body.server_files) + len(body.remote_files)
    if count > settings.media.max_files:
        raise InvalidInput(
            f"{count} files were named; at most {settings.media.max_files} are allowed.",
            field="server_files",
        )
    if body.remote_files:
        # Only what needs no network here (scheme, host, IP literals): names are resolved
        # and checked by the background request, never on a database thread holding the
        # task's row lock.
        guard = OutboundGuard.from_settings(settings)
        for url in body.remote_files:
            guard.check_url_form(url, field="remote_files")
        return _new_request(session, ctx, task, "remote", body, settings, launch)
    if body.cloud_storage_id is not None:
        storage = session.get(CloudStorage, body.cloud_storage_id)
        if storage is None:
            raise InvalidInput("The cloud storage does not exist.", field="cloud_storage_id")
        authorize(ctx.principal, ctx.org, "view", cloud_resource(storage))
        for name in (*body.server_files, *body.server_files_exclude):
            if name.rstrip("*").strip("/"):
                relative_parts(name.rstrip("*").strip("/"), field="server_files")
        return _new_request(session, ctx, task, "cloud", body, settings, launch)
    root = settings.media.share_root
    if root is None:
        raise InvalidInput("This server has no file share.", field="server_files")
    for name in body.server_files:
        # CVAT clients may name share files from the share's root ("/images/a.jpg")
        target = safe_join(root, name.lstrip("/"), field="server_files", allow_root=True)
        if not target.exists():
            raise InvalidInput(f"{name}: no such file in the share.", field="server_files")
    return _new_request(session, ctx, task, "share", body, settings, launch)
