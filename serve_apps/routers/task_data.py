"""``/api/tasks/{id}/data``: uploads (CVAT's Upload-Start/Multiple/Finish and TUS, share,
URL and cloud files), chunks, frames, context images, previews and meta."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from cvat_ray.serve_apps import tus
from cvat_ray.serve_apps.bodies import (
    BINARY,
    body_rule,
    described_body,
    json_object,
    validated,
    with_files,
)
from cvat_ray.serve_apps.compat import tus_filename, unless_empty_preferred, upload_action
from cvat_ray.serve_apps.deps import Call, LauncherDep, MediaDep, ObjectId, SettingsDep
from cvat_ray.serve_apps.media import stream_multipart
from cvat_ray.storage.schemas.data import DataMetaPatch, DataMetaRead, DataRequest
from cvat_ray.storage.schemas.requests import RqId
from cvat_ray.storage.services import data_access, data_upload

router = APIRouter(prefix="/api/tasks", tags=["task data"])

DataKind = Literal["chunk", "frame", "preview", "context_image"]
QualityParam = Annotated[Literal["original", "compressed"], Query()]
Number = Annotated[int | None, Query(ge=0, le=2_147_483_647)]
UploadId = Annotated[str, Path(max_length=128)]

# The body of POST .../data (read here: uploads stream to disk).
_DATA_BODY = described_body(
    {
        "application/json": DataRequest,
        "multipart/form-data": with_files(
            DataRequest, client_files={"type": "array", "items": BINARY}
        ),
    },
    required=False,
    description="Upload-Start and TUS creation send no body; Upload-Multiple sends the "
    "files (client_files[i]); Upload-Finish and share, URL or cloud storage files the "
    "DataRequest as JSON (or as form fields with the files).",
)
# CVAT's upload protocol headers: which step a POST is (see compat.upload_action).
Flag = Annotated[str | None, Header(max_length=64)]


@router.post("/{task_id}/data", status_code=202, response_model=None, openapi_extra=_DATA_BODY)
@body_rule(streamed=("multipart/form-data",))  # files go to disk under upload quotas
async def create_data(
    task_id: ObjectId,
    request: Request,
    call: Call,
    settings: SettingsDep,
    launcher: LauncherDep,
    upload_start: Flag = None,
    upload_multiple: Flag = None,
    upload_finish: Flag = None,
    tus_resumable: Flag = None,
    upload_length: Annotated[int | None, Header(ge=0)] = None,
    upload_metadata: Annotated[str | None, Header(max_length=4096)] = None,
) -> Response:
    """CVAT ``POST /api/tasks/{id}/data/``: ``Upload-Start`` (202), ``Upload-Multiple``
    multipart ``client_files[i]`` (200), TUS creation (``Tus-Resumable`` + ``Upload-Length``,
    201 with an absolute ``Location``), ``Upload-Finish`` (202 ``{"rq_id"}``), or one JSON
    ``DataRequest`` with ``server_files``/``remote_files``/``cloud_storage_id`` (202)."""
    launch = launcher.submit
    flags = {
        "upload-start": upload_start,
        "upload-multiple": upload_multiple,
        "upload-finish": upload_finish,
        "tus-resumable": tus_resumable,
        "upload-length": upload_length,
    }
    sent = {name: str(value) for name, value in flags.items() if value is not None}
    action = upload_action(sent, request.headers.get("content-type", ""))
    if action == "start":
        await call(data_upload.upload_start, task_id, settings)
        return JSONResponse({}, status_code=202)
    if action == "tus-create":
        assert upload_length is not None  # "tus-create" means it was sent
        name = tus_filename(upload_metadata)
        state = await call(data_upload.tus_create, task_id, settings, name, upload_length)
        return tus.created(request, settings, state, "tus_patch", task_id=task_id)
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
    call: Call,
    settings: SettingsDep,
    media: MediaDep,
    type: Annotated[DataKind, Query()],
    number: Number = None,
    quality: QualityParam = "compressed",
) -> Response:
    """CVAT ``GET /api/tasks/{id}/data/?type=chunk|frame|preview|context_image&number=N&
    quality=original|compressed``: imageset chunks are ZIPs with the frames in order, video
    chunks MP4s; frames are images."""
    plan = await call(data_access.task_data, task_id, type, number, quality, settings)
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


@router.patch(
    "/{task_id}/data/{upload_id}",
    name="tus_patch",
    response_model=None,
    openapi_extra=tus.CHUNK_BODY,
)
@body_rule(streamed=tus.CHUNK_TYPES)
async def tus_patch(
    task_id: ObjectId,
    upload_id: UploadId,
    request: Request,
    call: Call,
    settings: SettingsDep,
    upload_offset: Annotated[int, Header(ge=0)],
) -> Response:
    """TUS ``PATCH`` of an upload created on ``POST /api/tasks/{id}/data/``: append from
    ``Upload-Offset`` (409 with the current offset when it does not match)."""
    area, state = await call(data_upload.tus_target, task_id, settings, upload_id)
    return await tus.append(request, area, state, upload_id, upload_offset)


@router.head("/{task_id}/data/{upload_id}", response_model=None)
async def tus_head(
    task_id: ObjectId, upload_id: UploadId, call: Call, settings: SettingsDep
) -> Response:
    """TUS ``HEAD``: the upload's current offset (clients resume from it)."""
    _, state = await call(data_upload.tus_target, task_id, settings, upload_id)
    return tus.progress(state)


@router.options("/{task_id}/data", response_model=None)
async def tus_options(task_id: ObjectId) -> Response:
    """TUS discovery."""
    return Response(
        status_code=204,
        headers={**tus.RESUMABLE, "Tus-Version": "1.0.0", "Tus-Extension": "creation"},
    )


@router.get("/{task_id}/preview", response_model=None)
async def retrieve_preview(
    task_id: ObjectId, request: Request, call: Call, settings: SettingsDep, media: MediaDep
) -> Response:
    """CVAT ``GET /api/tasks/{id}/preview``: a JPEG thumbnail of the first frame."""
    plan = await unless_empty_preferred(request, call(data_access.task_preview, task_id, settings))
    if plan is None:
        return Response(status_code=204)
    return await media.response(plan)
