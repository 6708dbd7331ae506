"""``/api/cloudstorages``: S3, Azure Blob and Google Cloud Storage buckets tasks read from.

Handlers that reach the provider make their database call (load, authorize, validate) with
``call`` and their provider call with :func:`_outbound`, in the replica's general thread
pool: the database threads never wait on a bucket, and no transaction stays open meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from cvat_ray.cluster.settings import Settings
from cvat_ray.serve_apps.bodies import body_rule, described_body, json_or_form
from cvat_ray.serve_apps.deps import Call, Listing, ObjectId, SettingsDep
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


CloudStorageBody = Annotated[
    CloudStorageWrite,
    Depends(json_or_form(CloudStorageWrite, max_part=_MAX_BODY, lists=("manifests",))),
]
CloudStoragePatchBody = Annotated[
    CloudStoragePatch,
    Depends(json_or_form(CloudStoragePatch, max_part=_MAX_BODY, lists=("manifests",))),
]


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    # JSON, or multipart/form-data (how CVAT clients send a GCS ``key_file``).
    return described_body({"application/json": model, "multipart/form-data": model})


async def _outbound(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run a provider call (no database session) off the database threads."""
    return await run_in_threadpool(fn, *args, **kwargs)


@router.get("", response_model=Paginated[CloudStorageRead])
async def list_cloud_storages(
    request: Request, call: Call, params: Listing
) -> Paginated[CloudStorageRead]:
    """CVAT ``GET /api/cloudstorages``."""
    return paginated(request, params, await call(cloud_service.list_cloud_storages, params))


@router.post(
    "",
    response_model=CloudStorageRead,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_documented(CloudStorageWrite),
)
@body_rule(_MAX_BODY)
async def create_cloud_storage(
    data: CloudStorageBody, call: Call, settings: SettingsDep
) -> CloudStorageRead:
    """CVAT ``POST /api/cloudstorages``: checked to be reachable with the credentials, which
    are stored encrypted and never returned."""
    draft = await call(cloud_service.prepare_create, data, settings)
    await _outbound(cloud_service.check_reachable, draft, settings)
    return await call(cloud_service.create_cloud_storage, draft, settings)


@router.get("/{storage_id}", response_model=CloudStorageRead)
async def retrieve_cloud_storage(storage_id: ObjectId, call: Call) -> CloudStorageRead:
    """CVAT ``GET /api/cloudstorages/{id}``."""
    return await call(cloud_service.retrieve_cloud_storage, storage_id)


@router.patch(
    "/{storage_id}",
    response_model=CloudStorageRead,
    openapi_extra=_documented(CloudStoragePatch),
)
@body_rule(_MAX_BODY)
async def partial_update_cloud_storage(
    storage_id: ObjectId, data: CloudStoragePatchBody, call: Call, settings: SettingsDep
) -> CloudStorageRead:
    """CVAT ``PATCH /api/cloudstorages/{id}``."""
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
    call: Call,
    settings: SettingsDep,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
    page_size: Annotated[int, Query(ge=1, le=10_000)] = 500,
    manifest_path: Annotated[str | None, Query(max_length=1024)] = None,
) -> CloudStorageContent:
    """CVAT ``GET /api/cloudstorages/{id}/content-v2``: entries under ``prefix``, one page
    of the provider's listing at a time (at most ``page_size``, and at most 1000), paged by
    ``next_token`` (``manifest_path`` is accepted and ignored: the bucket is listed)."""
    return await _content(call, settings, storage_id, prefix, next_token, page_size)


@router.get("/{storage_id}/content", response_model=CloudStorageContent)
async def retrieve_content_legacy(
    storage_id: ObjectId,
    call: Call,
    settings: SettingsDep,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
    page_size: Annotated[int, Query(ge=1, le=10_000)] = 500,
) -> CloudStorageContent:
    """CVAT's older ``GET /api/cloudstorages/{id}/content``, answered like ``content-v2``."""
    return await _content(call, settings, storage_id, prefix, next_token, page_size)


async def _content(
    call: Call,
    settings: Settings,
    storage_id: int,
    prefix: str,
    next_token: str | None,
    page_size: int,
) -> CloudStorageContent:
    access, root = await call(cloud_service.content_access, storage_id, settings)
    return await _outbound(
        cloud_service.list_content, access, root, settings, prefix, next_token, page_size
    )


@router.get("/{storage_id}/status", response_model=str)
async def retrieve_status(storage_id: ObjectId, call: Call, settings: SettingsDep) -> JSONResponse:
    """CVAT ``GET /api/cloudstorages/{id}/status``: ``AVAILABLE``, ``NOT_FOUND`` or
    ``FORBIDDEN``."""
    return JSONResponse(await _status(call, settings, storage_id))


@router.get("/{storage_id}/actions", response_model=list[str])
async def retrieve_actions(storage_id: ObjectId, call: Call, settings: SettingsDep) -> list[str]:
    """CVAT ``GET /api/cloudstorages/{id}/actions``: what the server can do with it."""
    return ["read"] if await _status(call, settings, storage_id) == "AVAILABLE" else []


async def _status(call: Call, settings: Settings, storage_id: int) -> str:
    access, _ = await call(cloud_service.view_access, storage_id, settings)
    return await _outbound(cloud_service.probe_status, access, settings)


@router.get("/{storage_id}/preview", response_model=None)
async def retrieve_preview(storage_id: ObjectId, call: Call, settings: SettingsDep) -> Response:
    """CVAT ``GET /api/cloudstorages/{id}/preview``: a thumbnail of its first image."""
    access, root = await call(cloud_service.view_access, storage_id, settings)
    body = await _outbound(cloud_service.build_preview, access, root, settings)
    return Response(body, media_type="image/jpeg")
