"""``/api/guides`` (annotation guides of tasks and projects) and ``/api/assets`` (their
images)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Request, Response, status
from fastapi import Path as PathParam
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from cvat_ray.cluster.errors import InvalidInput, NotAuthenticated
from cvat_ray.cluster.settings import Settings
from cvat_ray.iam.principal import Principal
from cvat_ray.serve_apps.deps import Call, ObjectId, read_body
from cvat_ray.storage.schemas.guides import AssetRead, GuidePatch, GuideRead, GuideWrite
from cvat_ray.storage.services import assets as asset_service
from cvat_ray.storage.services import guides as guide_service

router = APIRouter(tags=["guides"])

Uuid = Annotated[str, PathParam(max_length=36)]
# A multipart body carries the file plus a little framing.
_BODY_LIMIT_MB = asset_service.MAX_ASSET_BYTES // 2**20 + 1


def _data_dir(request: Request) -> Path:
    settings: Settings = request.app.state.settings
    return settings.data_dir.resolve()


@router.post("/api/guides", response_model=GuideRead, status_code=status.HTTP_201_CREATED)
async def create_guide(data: GuideWrite, call: Call) -> GuideRead:
    """CVAT ``POST /api/guides``: the guide of a task or a project."""
    return await call(guide_service.create_guide, data)


@router.get("/api/guides/{guide_id}", response_model=GuideRead)
async def retrieve_guide(guide_id: ObjectId, call: Call) -> GuideRead:
    """CVAT ``GET /api/guides/{id}``."""
    return await call(guide_service.retrieve_guide, guide_id)


@router.patch("/api/guides/{guide_id}", response_model=GuideRead)
async def partial_update_guide(
    guide_id: ObjectId, data: GuidePatch, request: Request, call: Call
) -> GuideRead:
    """CVAT ``PATCH /api/guides/{id}``: new markdown (unlinked images are deleted)."""
    return await call(guide_service.partial_update_guide, guide_id, data, _data_dir(request))


@router.delete("/api/guides/{guide_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_guide(guide_id: ObjectId, request: Request, call: Call) -> None:
    """CVAT ``DELETE /api/guides/{id}``: with its images."""
    await call(guide_service.delete_guide, guide_id, _data_dir(request))


def _caller(_session: object, principal: Principal | None) -> Principal | None:
    return principal


async def _once(body: bytes) -> AsyncGenerator[bytes, None]:
    yield body


@router.post("/api/assets", response_model=AssetRead, status_code=status.HTTP_201_CREATED)
async def create_asset(request: Request, call: Call) -> AssetRead:
    """CVAT ``POST /api/assets``: a multipart ``file`` (an image) and ``guide_id``."""
    # Who is calling is known before the body is read; the body is read up to its cap.
    if await call.optional(_caller) is None:
        raise NotAuthenticated()
    body = await read_body(request, _BODY_LIMIT_MB)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInput("Send the file as multipart/form-data.", field="file")
    parser = MultiPartParser(request.headers, _once(body), max_files=1, max_fields=8)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise InvalidInput(exc.message, field="file") from exc
    try:
        upload, guide_raw = form.get("file"), form.get("guide_id")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("This field is required.", field="file")
        if not isinstance(guide_raw, str) or not guide_raw.isdigit() or len(guide_raw) > 10:
            raise InvalidInput("A valid integer is required.", field="guide_id")
        data = await upload.read()
    finally:
        await form.close()
    return await call(
        asset_service.create_asset,
        int(guide_raw),
        upload.filename or "",
        data,
        _data_dir(request),
    )


@router.get("/api/assets/{uuid}", response_model=None)
async def retrieve_asset(uuid: Uuid, request: Request, call: Call) -> Response:
    """CVAT ``GET /api/assets/{uuid}``: the image."""
    data, content_type, _name = await call(asset_service.retrieve_asset, uuid, _data_dir(request))
    return Response(
        data,
        media_type=content_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )


@router.delete("/api/assets/{uuid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_asset(uuid: Uuid, request: Request, call: Call) -> None:
    """CVAT ``DELETE /api/assets/{uuid}``."""
    await call(asset_service.delete_asset, uuid, _data_dir(request))
