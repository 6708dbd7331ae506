"""Dataset export and import in CVAT's formats (``storage/services/datasets.py``).

- ``POST /api/{jobs|tasks|projects}/{id}/dataset/export?format=&save_images=&filename=&
  location=&cloud_storage_id=`` -> 202 ``{rq_id}`` (409 ``{rq_id}`` while an identical one
  runs); ``GET .../dataset/download?rq_id=`` -> the file (``result_url`` points here).
- ``POST /api/{jobs|tasks}/{id}/annotations?format=`` and ``POST /api/projects/{id}/dataset
  ?format=``: CVAT's upload flows (Upload-Start, TUS creation with an absolute ``Location``,
  TUS PATCH/HEAD on ``.../<upload id>``, Upload-Finish -> 202 ``{rq_id}``), a multipart
  ``annotation_file``/``dataset_file`` in one request, or ``location=cloud_storage``.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from cvat_ray.serve_apps import tus
from cvat_ray.serve_apps.bodies import BINARY, body_rule, described_body
from cvat_ray.serve_apps.compat import tus_filename, upload_action
from cvat_ray.serve_apps.deps import Call, ObjectId, app_launcher, app_settings
from cvat_ray.serve_apps.media import stream_multipart
from cvat_ray.storage.services import datasets as service

router = APIRouter(tags=["datasets"])

_FILE_PART = re.compile(r"^(annotation_file|dataset_file)$")


def _base_url(request: Request) -> str:
    public = app_settings(request).server.public_url
    return str(public or request.base_url).rstrip("/")


def _query(request: Request) -> dict[str, str]:
    return dict(request.query_params.items())


# ---------------------------------------------------------------------------------- export


async def _export(kind: str, obj_id: int, request: Request, call: Call) -> Response:
    rq = await call(
        service.request_export,
        kind,
        obj_id,
        _query(request),
        _base_url(request),
        app_settings(request),
        app_launcher(request).submit,
    )
    return JSONResponse(rq.model_dump(), status_code=202)


async def _download(kind: str, obj_id: int, request: Request, call: Call) -> Response:
    found: service.Download = await call(
        service.export_download,
        kind,
        obj_id,
        request.query_params.get("rq_id"),
        app_settings(request),
    )
    # a plain quoted filename: the SDK reads ``filename=`` only (not RFC 5987's ``filename*``)
    return FileResponse(
        found.path,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{found.filename}"'},
    )


@router.post("/api/tasks/{task_id}/dataset/export", status_code=202, response_model=None)
async def export_task_dataset(task_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``POST /api/tasks/{id}/dataset/export``."""
    return await _export("task", task_id, request, call)


@router.post("/api/jobs/{job_id}/dataset/export", status_code=202, response_model=None)
async def export_job_dataset(job_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``POST /api/jobs/{id}/dataset/export``."""
    return await _export("job", job_id, request, call)


@router.post("/api/projects/{project_id}/dataset/export", status_code=202, response_model=None)
async def export_project_dataset(project_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``POST /api/projects/{id}/dataset/export``."""
    return await _export("project", project_id, request, call)


@router.get("/api/tasks/{task_id}/dataset/download", response_model=None)
async def download_task_dataset(task_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``GET /api/tasks/{id}/dataset/download?rq_id=`` (the export's ``result_url``)."""
    return await _download("task", task_id, request, call)


@router.get("/api/jobs/{job_id}/dataset/download", response_model=None)
async def download_job_dataset(job_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``GET /api/jobs/{id}/dataset/download?rq_id=``."""
    return await _download("job", job_id, request, call)


@router.get("/api/projects/{project_id}/dataset/download", response_model=None)
async def download_project_dataset(project_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``GET /api/projects/{id}/dataset/download?rq_id=``."""
    return await _download("project", project_id, request, call)


# ---------------------------------------------------------------------------------- import


async def _import(
    kind: str, obj_id: int, request: Request, call: Call, patch_route: str
) -> Response:
    settings = app_settings(request)
    submit = app_launcher(request).submit
    query = _query(request)
    action = upload_action(request.headers, request.headers.get("content-type", ""))
    if action == "start":
        await call(service.import_start, kind, obj_id, settings)
        return JSONResponse({}, status_code=202)
    if action == "tus-create":
        name = tus_filename(request.headers.get("upload-metadata"))
        length = tus.upload_length(request)
        state = await call(service.import_tus_create, kind, obj_id, settings, name, length)
        return tus.created(request, settings, state, patch_route, **{f"{kind}_id": obj_id})
    if action in ("multiple", "multipart"):
        area = await call(service.import_upload_target, kind, obj_id, settings)
        await stream_multipart(request, area, _FILE_PART)
        if action == "multiple":
            return JSONResponse({}, status_code=200)
    rq = await call(service.import_finish, kind, obj_id, query, settings, submit)
    return JSONResponse(rq.model_dump(), status_code=202)


async def _tus_patch(
    kind: str, obj_id: int, upload_id: str, offset: int, request: Request, call: Call
) -> Response:
    settings = app_settings(request)
    area, state = await call(service.import_tus_target, kind, obj_id, settings, upload_id)
    return await tus.append(request, area, state, upload_id, offset)


async def _tus_head(
    kind: str, obj_id: int, upload_id: str, request: Request, call: Call
) -> Response:
    settings = app_settings(request)
    _, state = await call(service.import_tus_target, kind, obj_id, settings, upload_id)
    return tus.progress(state)


Offset = Annotated[int, Header(ge=0)]
_STREAMED = ("multipart/form-data",)


def _import_body(field: str) -> dict[str, object]:
    """The import body (read here: the file streams to disk), for /api/schema."""
    return described_body(
        {
            "multipart/form-data": {
                "type": "object",
                "properties": {field: BINARY},
                "required": [field],
            }
        },
        required=False,
        description="Upload-Start, TUS creation and Upload-Finish send no body; otherwise the "
        f"file as the form field {field}, or nothing with location=cloud_storage and filename.",
    )


@router.post(
    "/api/tasks/{task_id}/annotations",
    status_code=202,
    response_model=None,
    openapi_extra=_import_body("annotation_file"),
)
@body_rule(streamed=_STREAMED)
async def import_task_annotations(task_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``POST /api/tasks/{id}/annotations/?format=``: import (replaces the task's)."""
    return await _import("task", task_id, request, call, "task_annotations_tus")


@router.post(
    "/api/jobs/{job_id}/annotations",
    status_code=202,
    response_model=None,
    openapi_extra=_import_body("annotation_file"),
)
@body_rule(streamed=_STREAMED)
async def import_job_annotations(job_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``POST /api/jobs/{id}/annotations/?format=``: import (replaces the job's)."""
    return await _import("job", job_id, request, call, "job_annotations_tus")


@router.post(
    "/api/projects/{project_id}/dataset",
    status_code=202,
    response_model=None,
    openapi_extra=_import_body("dataset_file"),
)
@body_rule(streamed=_STREAMED)
async def import_project_dataset(project_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``POST /api/projects/{id}/dataset/?format=``: annotations for the project's
    tasks, matched by image name."""
    return await _import("project", project_id, request, call, "project_dataset_tus")


@router.patch(
    "/api/tasks/{task_id}/annotations/{upload_id}",
    name="task_annotations_tus",
    response_model=None,
    openapi_extra=tus.CHUNK_BODY,
)
@body_rule(streamed=tus.CHUNK_TYPES)
async def task_annotations_tus(
    task_id: ObjectId, upload_id: str, request: Request, call: Call, upload_offset: Offset
) -> Response:
    """TUS ``PATCH`` of an annotation file for a task."""
    return await _tus_patch("task", task_id, upload_id, upload_offset, request, call)


@router.patch(
    "/api/jobs/{job_id}/annotations/{upload_id}",
    name="job_annotations_tus",
    response_model=None,
    openapi_extra=tus.CHUNK_BODY,
)
@body_rule(streamed=tus.CHUNK_TYPES)
async def job_annotations_tus(
    job_id: ObjectId, upload_id: str, request: Request, call: Call, upload_offset: Offset
) -> Response:
    """TUS ``PATCH`` of an annotation file for a job."""
    return await _tus_patch("job", job_id, upload_id, upload_offset, request, call)


@router.patch(
    "/api/projects/{project_id}/dataset/{upload_id}",
    name="project_dataset_tus",
    response_model=None,
    openapi_extra=tus.CHUNK_BODY,
)
@body_rule(streamed=tus.CHUNK_TYPES)
async def project_dataset_tus(
    project_id: ObjectId, upload_id: str, request: Request, call: Call, upload_offset: Offset
) -> Response:
    """TUS ``PATCH`` of a dataset file for a project."""
    return await _tus_patch("project", project_id, upload_id, upload_offset, request, call)


@router.head("/api/tasks/{task_id}/annotations/{upload_id}", response_model=None)
async def task_annotations_tus_head(
    task_id: ObjectId, upload_id: str, request: Request, call: Call
) -> Response:
    """TUS ``HEAD``: the upload's offset."""
    return await _tus_head("task", task_id, upload_id, request, call)


@router.head("/api/jobs/{job_id}/annotations/{upload_id}", response_model=None)
async def job_annotations_tus_head(
    job_id: ObjectId, upload_id: str, request: Request, call: Call
) -> Response:
    """TUS ``HEAD``: the upload's offset."""
    return await _tus_head("job", job_id, upload_id, request, call)


@router.head("/api/projects/{project_id}/dataset/{upload_id}", response_model=None)
async def project_dataset_tus_head(
    project_id: ObjectId, upload_id: str, request: Request, call: Call
) -> Response:
    """TUS ``HEAD``: the upload's offset."""
    return await _tus_head("project", project_id, upload_id, request, call)
