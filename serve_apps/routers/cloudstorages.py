"""``/api/cloudstorages``: S3, Azure Blob and Google Cloud Storage buckets tasks read from.

Handlers that reach the provider make their database call (load, authorize, validate) with
``call`` and their provider call with :func:`_outbound`, in the replica's general thread
pool: the database threads never wait on a bucket, and no transaction stays open meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.serve_apps.bodies import body_rule, parse_json_object, validated
from cvat_ray.serve_apps.deps import Call, Listing, ObjectId
from cvat_ray.serve_apps.pagination import paginated
from cvat_ray.storage.schemas.cloud_storages import (
    CloudStorageContent,
    CloudStoragePatch,
    CloudStorageRead,
    CloudStorageWrite,
)
from cvat_ray.storage.schemas.common import Paginated
from cvat_ray.storage.services import cloud_storages as cloud_service

router = APIRouter(prefix="/api/cloudstorages", tags=["cloud storages"])

P = ParamSpec("P")
R = TypeVar("R")

_MAX_BODY = 256 * 1024


async def _body(request: Request) -> dict[str, Any]:
    """JSON, or multipart/form-data (how CVAT clients send a GCS ``key_file``)."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=50, max_part_size=_MAX_BODY)
        out: dict[str, Any] = {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                out[key] = (await value.read()).decode("utf-8", "replace")
            elif key == "manifests" or key.startswith("manifests["):
                out.setdefault("manifests", []).append(value)
            else:
                out[key] = value
        return out
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        raise InvalidInput("The request body is too large.")
    return parse_json_object(raw)


async def _outbound(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a provider call (no database session) off the database threads."""
    return await run_in_threadpool(fn, *args, **kwargs)


@router.get("", response_model=Paginated[CloudStorageRead])
async def list_cloud_storages(
    request: Request, call: Call, params: Listing
) -> Paginated[CloudStorageRead]:
    """CVAT ``GET /api/cloudstorages``."""
    return paginated(request, params, await call(cloud_service.list_cloud_storages, params))


@router.post("", response_model=CloudStorageRead, status_code=status.HTTP_201_CREATED)
@body_rule(_MAX_BODY)
async def create_cloud_storage(request: Request, call: Call) -> CloudStorageRead:
    """CVAT ``POST /api/cloudstorages``: checked to be reachable with the credentials, which
    are stored encrypted and never returned."""
    settings = request.app.state.settings
    data = validated(CloudStorageWrite, await _body(request))
    draft = await call(cloud_service.prepare_create, data, settings)
    await _outbound(cloud_service.check_reachable, draft, settings)
    return await call(cloud_service.create_cloud_storage, draft, settings)


@router.get("/{storage_id}", response_model=CloudStorageRead)
async def retrieve_cloud_storage(storage_id: ObjectId, call: Call) -> CloudStorageRead:
    """CVAT ``GET /api/cloudstorages/{id}``."""
    return await call(cloud_service.retrieve_cloud_storage, storage_id)


@router.patch("/{storage_id}", response_model=CloudStorageRead)
@body_rule(_MAX_BODY)
async def partial_update_cloud_storage(
    storage_id: ObjectId, request: Request, call: Call
) -> CloudStorageRead:
    """CVAT ``PATCH /api/cloudstorages/{id}``."""
    settings = request.app.state.settings
    data = validated(CloudStoragePatch, await _body(request))
    draft = await call(cloud_service.prepare_update, storage_id, data, settings)
    await _outbound(cloud_service.check_reachable, draft, settings)
    return await call(cloud_service.partial_update_cloud_storage, draft, settings)


@router.delete("/{storage_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_cloud_storage(storage_id: ObjectId, call: Call) -> None:
    """CVAT ``DELETE /api/cloudstorages/{id}``."""
    await call(cloud_service.delete_cloud_storage, storage_id)


@router.get("/{storage_id}/content-v2", response_model=CloudStorageContent)
async def retrieve_content(
    storage_id: ObjectId,
    request: Request,
    call: Call,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
    page_size: Annotated[int, Query(ge=1, le=10_000)] = 500,
    manifest_path: Annotated[str | None, Query(max_length=1024)] = None,
) -> CloudStorageContent:
    """CVAT ``GET /api/cloudstorages/{id}/content-v2``: entries under ``prefix``, one page
    of the provider's listing at a time (at most ``page_size``, and at most 1000), paged by
    ``next_token`` (``manifest_path`` is accepted and ignored: the bucket is listed)."""
    return await _content(request, call, storage_id, prefix, next_token, page_size)


@router.get("/{storage_id}/content", response_model=CloudStorageContent)
async def retrieve_content_legacy(
    storage_id: ObjectId,
    request: Request,
    call: Call,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
    page_size: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> CloudStorageContent:
    """CVAT's older ``GET /api/cloudstorages/{id}/content``, answered like ``content-v2``."""
    return await _content(request, call, storage_id, prefix, next_token, page_size)


async def _content(
    request: Request,
    call: Call,
    storage_id: int,
    prefix: str,
    next_token: str | None,
    page_size: int,
) -> CloudStorageContent:
    settings = request.app.state.settings
    access, root = await call(cloud_service.content_access, storage_id, settings)
    return await _outbound(
        cloud_service.list_content, access, root, settings, prefix, next_token, page_size
    )


@router.get("/{storage_id}/status", response_model=str)
async def retrieve_status(storage_id: ObjectId, request: Request, call: Call) -> JSONResponse:
    """CVAT ``GET /api/cloudstorages/{id}/status``: ``AVAILABLE``, ``NOT_FOUND`` or
    ``FORBIDDEN``."""
    return JSONResponse(await _status(request, call, storage_id))


@router.get("/{storage_id}/actions", response_model=list[str])
async def retrieve_actions(storage_id: ObjectId, request: Request, call: Call) -> list[str]:
    """CVAT ``GET /api/cloudstorages/{id}/actions``: what the server can do with it."""
    return ["read"] if await _status(request, call, storage_id) == "AVAILABLE" else []


async def _status(request: Request, call: Call, storage_id: int) -> str:
    settings = request.app.state.settings
    access, _ = await call(cloud_service.view_access, storage_id, settings)
    return await _outbound(cloud_service.probe_status, access, settings)


@router.get("/{storage_id}/preview", response_model=None)
async def retrieve_preview(storage_id: ObjectId, request: Request, call: Call) -> Response:
    """CVAT ``GET /api/cloudstorages/{id}/preview``: a thumbnail of its first image."""
    settings = request.app.state.settings
    access, root = await call(cloud_service.view_access, storage_id, settings)
    body = await _outbound(cloud_service.build_preview, access, root, settings)
    return Response(body, media_type="image/jpeg")
