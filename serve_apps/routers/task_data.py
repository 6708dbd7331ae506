"""``/api/tasks/{id}/data``: uploads (CVAT's Upload-Start/Multiple/Finish and TUS, share,
URL and cloud files), chunks, frames, context images, previews and meta."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.serve_apps.bodies import body_rule, json_object, validated
from cvat_ray.serve_apps.compat import unless_empty_preferred, upload_action
from cvat_ray.serve_apps.deps import Call, ObjectId
from cvat_ray.serve_apps.media import MediaRenderer, stream_multipart, stream_tus
from cvat_ray.storage.schemas.data import DataMetaPatch, DataMetaRead, DataRequest
from cvat_ray.storage.schemas.requests import RqId
from cvat_ray.storage.services import data_access, data_upload

router = APIRouter(prefix="/api/tasks", tags=["task data"])

DataKind = Literal["chunk", "frame", "preview", "context_image"]
QualityParam = Annotated[Literal["original", "compressed"], Query()]
Number = Annotated[int | None, Query(ge=0, le=2_147_483_647)]

_TUS = {"Tus-Resumable": "1.0.0"}


def _filename(metadata: str | None) -> str:
    """TUS ``Upload-Metadata: filename <base64>, ...``."""
    for item in (metadata or "").split(","):
        key, _, value = item.strip().partition(" ")
        if key == "filename":
            try:
                return base64.b64decode(value, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise InvalidInput("Upload-Metadata filename is not valid base64.") from exc
    raise InvalidInput("Upload-Metadata must carry a filename.")


@router.post("/{task_id}/data", status_code=202, response_model=None)
@body_rule(streamed=("multipart/form-data",))  # files go to disk under upload quotas
async def create_data(task_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``POST /api/tasks/{id}/data/``: ``Upload-Start`` (202), ``Upload-Multiple``
    multipart ``client_files[i]`` (200), TUS creation (``Tus-Resumable`` + ``Upload-Length``,
    201 with an absolute ``Location``), ``Upload-Finish`` (202 ``{"rq_id"}``), or one JSON
    ``DataRequest`` with ``server_files``/``remote_files``/``cloud_storage_id`` (202)."""
    settings = request.app.state.settings
    launch = request.app.state.launcher.submit
    action = upload_action(request.headers, request.headers.get("content-type", ""))
    if action == "start":
        await call(data_upload.upload_start, task_id, settings)
        return JSONResponse({}, status_code=202)
    if action == "tus-create":
        try:
            length = int(request.headers["upload-length"])
        except ValueError as exc:
            raise InvalidInput("Upload-Length must be an integer.") from exc
        name = _filename(request.headers.get("upload-metadata"))
        state = await call(data_upload.tus_create, task_id, settings, name, length)
        location = str(request.url_for("tus_patch", task_id=task_id, upload_id=state.upload_id))
        base = request.app.state.settings.server.public_url
        if base:
            location = (
                base.rstrip("/")
                + request.url_for("tus_patch", task_id=task_id, upload_id=state.upload_id).path
            )
        return Response(
            status_code=201,
            headers={
                **_TUS,
                "Location": location,
                "Upload-Filename": state.filename,
                "Upload-Offset": str(state.offset),
            },
        )
    if action in ("multiple", "multipart"):
        area = await call(data_upload.upload_target, task_id, settings)
        sink = await stream_multipart(request, area)
        if action == "multiple":
            return JSONResponse({}, status_code=200)
        body = validated(DataRequest, sink.fields)
        finished = await call(data_upload.upload_finish, task_id, body, settings, launch)
        return JSONResponse(finished.model_dump(), status_code=202)
    body = validated(DataRequest, await json_object(request))
    service = data_upload.upload_finish if action == "finish" else data_upload.create_data
    rq: RqId = await call(service, task_id, body, settings, launch)
    return JSONResponse(rq.model_dump(), status_code=202)


@router.get("/{task_id}/data", response_model=None)
async def retrieve_data(
    task_id: ObjectId,
    request: Request,
    call: Call,
    type: Annotated[DataKind, Query()],
    number: Number = None,
    quality: QualityParam = "compressed",
) -> Response:
    """CVAT ``GET /api/tasks/{id}/data/?type=chunk|frame|preview|context_image&number=N&
    quality=original|compressed``: imageset chunks are ZIPs with the frames in order, video
    chunks MP4s; frames are images."""
    plan = await call(
        data_access.task_data, task_id, type, number, quality, request.app.state.settings
    )
    media: MediaRenderer = request.app.state.media
    return await media.response(plan)


@router.get("/{task_id}/data/meta", response_model=DataMetaRead)
async def retrieve_data_meta(task_id: ObjectId, call: Call) -> DataMetaRead:
    """CVAT ``GET /api/tasks/{id}/data/meta``: frames (names, sizes), deleted frames."""
    return await call(data_access.task_meta, task_id)


@router.patch("/{task_id}/data/meta", response_model=DataMetaRead)
async def partial_update_data_meta(
    task_id: ObjectId, data: DataMetaPatch, call: Call
) -> DataMetaRead:
    """CVAT ``PATCH /api/tasks/{id}/data/meta``: set the deleted frames."""
    return await call(data_access.update_task_meta, task_id, data)


@router.patch("/{task_id}/data/{upload_id}", name="tus_patch", response_model=None)
@body_rule(streamed=("application/offset+octet-stream",))
async def tus_patch(
    task_id: ObjectId,
    upload_id: str,
    request: Request,
    call: Call,
    upload_offset: Annotated[int, Header(ge=0)],
) -> Response:
    """TUS ``PATCH`` of an upload created on ``POST /api/tasks/{id}/data/``: append from
    ``Upload-Offset`` (409 with the current offset when it does not match)."""
    settings = request.app.state.settings
    area, state = await call(data_upload.tus_target, task_id, settings, upload_id)
    if upload_offset != state.offset:
        return JSONResponse(
            {"detail": f"Upload-Offset {upload_offset} does not match {state.offset}."},
            status_code=409,
            headers={**_TUS, "Upload-Offset": str(state.offset)},
        )
    state = await stream_tus(request, area, upload_id, upload_offset)
    return Response(status_code=204, headers={**_TUS, "Upload-Offset": str(state.offset)})


@router.head("/{task_id}/data/{upload_id}", response_model=None)
async def tus_head(task_id: ObjectId, upload_id: str, request: Request, call: Call) -> Response:
    """TUS ``HEAD``: the upload's current offset (clients resume from it)."""
    settings = request.app.state.settings
    _, state = await call(data_upload.tus_target, task_id, settings, upload_id)
    return Response(
        status_code=200,
        headers={
            **_TUS,
            "Upload-Offset": str(state.offset),
            "Upload-Length": str(state.length),
            "Cache-Control": "no-store",
        },
    )


@router.options("/{task_id}/data", response_model=None)
async def tus_options(task_id: ObjectId) -> Response:
    """TUS discovery."""
    return Response(
        status_code=204,
        headers={**_TUS, "Tus-Version": "1.0.0", "Tus-Extension": "creation"},
    )


@router.get("/{task_id}/preview", response_model=None)
async def retrieve_preview(task_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``GET /api/tasks/{id}/preview``: a JPEG thumbnail of the first frame."""
    plan = await unless_empty_preferred(
        request, call(data_access.task_preview, task_id, request.app.state.settings)
    )
    if plan is None:
        return Response(status_code=204)
    media: MediaRenderer = request.app.state.media
    return await media.response(plan)
