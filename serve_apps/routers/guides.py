"""``/api/guides`` (annotation guides of tasks and projects) and ``/api/assets`` (their
images)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Response, UploadFile, status
from fastapi import Path as PathParam

from cvat_ray.serve_apps.bodies import MIB, body_rule
from cvat_ray.serve_apps.deps import Call, ObjectId, SettingsDep
from cvat_ray.storage.schemas.common import DbId
from cvat_ray.storage.schemas.guides import AssetRead, GuidePatch, GuideRead, GuideWrite
from cvat_ray.storage.services import assets as asset_service
from cvat_ray.storage.services import guides as guide_service

router = APIRouter(tags=["guides"])

Uuid = Annotated[str, PathParam(max_length=36)]
# A multipart body carries the file plus a little framing.
_BODY_LIMIT = asset_service.MAX_ASSET_BYTES + MIB


def _data_dir(settings: SettingsDep) -> Path:
    return settings.data_dir.resolve()


DataDir = Annotated[Path, Depends(_data_dir)]


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
    guide_id: ObjectId, data: GuidePatch, call: Call, data_dir: DataDir
) -> GuideRead:
    """CVAT ``PATCH /api/guides/{id}``: new markdown (unlinked images are deleted)."""
    return await call(guide_service.partial_update_guide, guide_id, data, data_dir)


@router.delete("/api/guides/{guide_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_guide(guide_id: ObjectId, call: Call, data_dir: DataDir) -> None:
    """CVAT ``DELETE /api/guides/{id}``: with its images."""
    await call(guide_service.delete_guide, guide_id, data_dir)


@router.post("/api/assets", response_model=AssetRead, status_code=status.HTTP_201_CREATED)
@body_rule(_BODY_LIMIT)
async def create_asset(
    file: Annotated[UploadFile, File()],
    guide_id: Annotated[DbId, Form()],
    call: Call,
    data_dir: DataDir,
) -> AssetRead:
    """CVAT ``POST /api/assets``: a multipart ``file`` (an image) and ``guide_id``. The body
    guard authenticates the caller before the form is read, and caps it."""
    try:
        data = await file.read(asset_service.MAX_ASSET_BYTES + 1)
    finally:
        await file.close()
    return await call(asset_service.create_asset, guide_id, file.filename or "", data, data_dir)


@router.get("/api/assets/{uuid}", response_model=None)
async def retrieve_asset(uuid: Uuid, call: Call, data_dir: DataDir) -> Response:
    """CVAT ``GET /api/assets/{uuid}``: the image."""
    data, content_type, _name = await call(asset_service.retrieve_asset, uuid, data_dir)
    return Response(
        data,
        media_type=content_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, max-age=3600"},
    )


@router.delete("/api/assets/{uuid}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_asset(uuid: Uuid, call: Call, data_dir: DataDir) -> None:
    """CVAT ``DELETE /api/assets/{uuid}``."""
    await call(asset_service.delete_asset, uuid, data_dir)
