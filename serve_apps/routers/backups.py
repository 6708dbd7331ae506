"""``/api/{tasks|projects}/{id}/backup/export``, ``.../backup/download`` and
``/api/{tasks|projects}/backup/`` (restore: multipart, Upload-Start/Finish, TUS, or a file
in a cloud storage)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.serve_apps import tus
from cvat_ray.serve_apps.bodies import BINARY, body_rule, described_body
from cvat_ray.serve_apps.compat import tus_filename, upload_action
from cvat_ray.serve_apps.deps import Call, ObjectId, app_launcher, app_settings
from cvat_ray.serve_apps.media import stream_multipart
from cvat_ray.storage.schemas.requests import RqId
from cvat_ray.storage.services import backups
from cvat_ray.storage.services.backups import Kind, Where

router = APIRouter(tags=["backups"])

_FILE_FIELDS: dict[Kind, re.Pattern[str]] = {
    "task": re.compile(r"^task_file$"),
    "project": re.compile(r"^project_file$"),
}


# The restore bodies (read here: the zip streams to disk).
def _restore_body(kind: Kind) -> dict[str, object]:
    return described_body(
        {
            "multipart/form-data": {
                "type": "object",
                "properties": {f"{kind}_file": BINARY},
                "required": [f"{kind}_file"],
            }
        },
        required=False,
        description="Upload-Start, TUS creation and Upload-Finish send no body (the last one "
        "restores what TUS uploaded); otherwise the backup zip as the form field "
        f"{kind}_file, or nothing with location=cloud_storage and filename.",
    )


LocationParam = Annotated[Literal["local", "cloud_storage"], Query()]
StorageId = Annotated[int | None, Query(ge=0, le=2_147_483_647)]
FileName = Annotated[str | None, Query(max_length=1024)]


async def _export(
    kind: Kind,
    object_id: int,
    request: Request,
    call: Call,
    lightweight: bool,
    where: Where,
) -> RqId:
    rq: RqId = await call(
        backups.export_backup,
        kind,
        object_id,
        lightweight,
        where,
        app_launcher(request).submit,
    )
    return rq


class _ZipResponse(FileResponse):
    # 1 MiB reads instead of Starlette's 64 KiB: a backup is hundreds of MB
    chunk_size = 1 << 20


async def _download(
    kind: Kind, object_id: int, request: Request, call: Call, rq_id: str
) -> Response:
    path, filename = await call(backups.backup_file, kind, object_id, rq_id, app_settings(request))
    # a plain quoted name (no RFC 5987 form): what cvat-sdk parses; the name is already
    # limited to [A-Za-z0-9_-. ]
    return _ZipResponse(
        path,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def _import(
    kind: Kind, request: Request, call: Call, where: Where, patch_route: str
) -> Response:
    settings = app_settings(request)
    launch = app_launcher(request).submit
    action = upload_action(request.headers, request.headers.get("content-type", ""))
    if action == "start":
        await call(backups.import_start, kind, settings)
        return JSONResponse({}, status_code=202)
    if action == "tus-create":
        name = tus_filename(request.headers.get("upload-metadata"))
        length = tus.upload_length(request)
        state = await call(backups.import_tus_create, kind, settings, name, length)
        return tus.created(request, settings, state, patch_route)
    if action in ("multiple", "multipart"):
        if action == "multipart":
            # one request carries the whole backup: a fresh folder, whatever an unfinished
            # upload of the caller left behind
            await call(backups.import_start, kind, settings)
        area = await call(backups.import_target, kind, settings)
        sink = await stream_multipart(request, area, _FILE_FIELDS[kind])
        if action == "multiple":
            return JSONResponse({}, status_code=200)
        if not sink.saved:
            raise InvalidInput(f"Send the backup as the form field {kind}_file.")
        where = Where(where.location, where.cloud_storage_id, sink.saved[-1])
    rq: RqId = await call(backups.import_backup, kind, where, settings, launch)
    return JSONResponse(rq.model_dump(), status_code=202)


async def _tus_patch(
    kind: Kind, upload_id: str, request: Request, call: Call, upload_offset: int
) -> Response:
    settings = app_settings(request)
    area, state = await call(backups.import_tus_target, kind, settings, upload_id)
    return await tus.append(request, area, state, upload_id, upload_offset)


async def _tus_head(kind: Kind, upload_id: str, request: Request, call: Call) -> Response:
    settings = app_settings(request)
    _, state = await call(backups.import_tus_target, kind, settings, upload_id)
    return tus.progress(state)


Offset = Annotated[int, Header(ge=0)]

RqIdParam = Annotated[str, Query(max_length=128)]

# ------------------------------------------------------------------------------ tasks


@router.post("/api/tasks/{task_id}/backup/export", status_code=202, response_model=RqId)
async def export_task_backup(
    task_id: ObjectId,
    request: Request,
    call: Call,
    lightweight: bool = True,
    filename: FileName = None,
    location: LocationParam = "local",
    cloud_storage_id: StorageId = None,
) -> RqId:
    """CVAT ``POST /api/tasks/{id}/backup/export``: 202 ``{"rq_id"}``; the request's
    ``result_url`` is the download (``location=local``)."""
    where = Where(location, cloud_storage_id, filename)
    return await _export("task", task_id, request, call, lightweight, where)


@router.get("/api/tasks/{task_id}/backup/download", response_model=None)
async def download_task_backup(
    task_id: ObjectId, request: Request, call: Call, rq_id: RqIdParam
) -> Response:
    """CVAT ``GET /api/tasks/{id}/backup/download?rq_id=``: the backup zip."""
    return await _download("task", task_id, request, call, rq_id)


@router.post(
    "/api/tasks/backup", status_code=202, response_model=None, openapi_extra=_restore_body("task")
)
@body_rule(streamed=("multipart/form-data",))  # the zip goes to disk under the upload cap
async def import_task_backup(
    request: Request,
    call: Call,
    filename: FileName = None,
    location: LocationParam = "local",
    cloud_storage_id: StorageId = None,
) -> Response:
    """CVAT ``POST /api/tasks/backup/``: ``Upload-Start`` (202), TUS creation (201, absolute
    ``Location``), ``Upload-Finish`` or a multipart ``task_file`` (202 ``{"rq_id"}``), or
    ``location=cloud_storage&filename=`` (202); ``result_id`` is the new task."""
    where = Where(location, cloud_storage_id, filename)
    return await _import("task", request, call, where, "task_backup_tus_patch")


@router.patch(
    "/api/tasks/backup/{upload_id}",
    name="task_backup_tus_patch",
    response_model=None,
    openapi_extra=tus.CHUNK_BODY,
)
@body_rule(streamed=tus.CHUNK_TYPES)
async def task_backup_tus_patch(
    upload_id: str, request: Request, call: Call, upload_offset: Offset
) -> Response:
    """TUS ``PATCH`` of a task backup upload: append from ``Upload-Offset``."""
    return await _tus_patch("task", upload_id, request, call, upload_offset)


@router.head("/api/tasks/backup/{upload_id}", response_model=None)
async def task_backup_tus_head(upload_id: str, request: Request, call: Call) -> Response:
    """TUS ``HEAD`` of a task backup upload: its current offset."""
    return await _tus_head("task", upload_id, request, call)


# ------------------------------------------------------------------------------ projects


@router.post("/api/projects/{project_id}/backup/export", status_code=202, response_model=RqId)
async def export_project_backup(
    project_id: ObjectId,
    request: Request,
    call: Call,
    lightweight: bool = True,
    filename: FileName = None,
    location: LocationParam = "local",
    cloud_storage_id: StorageId = None,
) -> RqId:
    """CVAT ``POST /api/projects/{id}/backup/export``: 202 ``{"rq_id"}``."""
    where = Where(location, cloud_storage_id, filename)
    return await _export("project", project_id, request, call, lightweight, where)


@router.get("/api/projects/{project_id}/backup/download", response_model=None)
async def download_project_backup(
    project_id: ObjectId, request: Request, call: Call, rq_id: RqIdParam
) -> Response:
    """CVAT ``GET /api/projects/{id}/backup/download?rq_id=``: the backup zip."""
    return await _download("project", project_id, request, call, rq_id)


@router.post(
    "/api/projects/backup",
    status_code=202,
    response_model=None,
    openapi_extra=_restore_body("project"),
)
@body_rule(streamed=("multipart/form-data",))
async def import_project_backup(
    request: Request,
    call: Call,
    filename: FileName = None,
    location: LocationParam = "local",
    cloud_storage_id: StorageId = None,
) -> Response:
    """CVAT ``POST /api/projects/backup/``: as for tasks, with ``project_file``;
    ``result_id`` is the new project."""
    where = Where(location, cloud_storage_id, filename)
    return await _import("project", request, call, where, "project_backup_tus_patch")


@router.patch(
    "/api/projects/backup/{upload_id}",
    name="project_backup_tus_patch",
    response_model=None,
    openapi_extra=tus.CHUNK_BODY,
)
@body_rule(streamed=tus.CHUNK_TYPES)
async def project_backup_tus_patch(
    upload_id: str, request: Request, call: Call, upload_offset: Offset
) -> Response:
    """TUS ``PATCH`` of a project backup upload."""
    return await _tus_patch("project", upload_id, request, call, upload_offset)


@router.head("/api/projects/backup/{upload_id}", response_model=None)
async def project_backup_tus_head(upload_id: str, request: Request, call: Call) -> Response:
    """TUS ``HEAD`` of a project backup upload."""
    return await _tus_head("project", upload_id, request, call)
