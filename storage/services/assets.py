"""Images of annotation guides (CVAT's assets): uploaded by whoever may edit the guide, read
by whoever may read it, deleted with the guide or when its text stops mentioning them.

Only images are kept, recognised by their first bytes (the client's content type and file
name are not trusted), at most :data:`MAX_ASSET_BYTES` each and :data:`MAX_ASSETS_PER_GUIDE`
per guide. SVG is refused: it can carry scripts.
"""

from __future__ import annotations

import re
import uuid as uuid_module
from pathlib import Path, PurePosixPath

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cvat_ray.cluster.errors import InvalidInput, NotFound, PayloadTooLarge
from cvat_ray.storage.context import RequestContext
from cvat_ray.storage.db import after_commit
from cvat_ray.storage.models import Asset, utcnow
from cvat_ray.storage.schemas.guides import AssetRead
from cvat_ray.storage.services.asset_files import read_file, remove_files, write_file
from cvat_ray.storage.services.guides import get_guide
from cvat_ray.storage.services.users import basic_users

MAX_ASSET_BYTES = 10 * 2**20
MAX_ASSETS_PER_GUIDE = 30

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def sniff_image(data: bytes) -> str | None:
    """The image type the bytes start with, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"BM") and len(data) > 14:
        return "image/bmp"
    return None


def _read(session: Session, ctx: RequestContext, asset: Asset) -> AssetRead:
    owners = basic_users(session, ctx, [asset.owner_id])
    return AssetRead(
        uuid=asset.uuid,
        filename=asset.filename,
        created_date=asset.created_date,
        owner=owners.get(asset.owner_id) if asset.owner_id is not None else None,
        guide_id=asset.guide_id,
    )


def create_asset(
    session: Session,
    ctx: RequestContext,
    guide_id: int,
    filename: str,
    data: bytes,
    data_dir: Path,
) -> AssetRead:
    """CVAT ``POST /api/assets`` (``file`` and ``guide_id``)."""
    guide = get_guide(session, ctx, guide_id, "update")
    if len(data) > MAX_ASSET_BYTES:
        raise PayloadTooLarge(f"An asset may be at most {MAX_ASSET_BYTES // 2**20} MiB.")
    count = session.scalar(
        select(func.count()).select_from(Asset).where(Asset.guide_id == guide.id)
    )
    if (count or 0) >= MAX_ASSETS_PER_GUIDE:
        raise InvalidInput(
            f"A guide may have at most {MAX_ASSETS_PER_GUIDE} assets.", field="guide_id"
        )
    content_type = sniff_image(data)
    if content_type is None:
        raise InvalidInput("Only PNG, JPEG, GIF, WebP and BMP images are accepted.", field="file")
    name = PurePosixPath(filename.replace("\\", "/")).name[:1024] or "image"
    asset = Asset(
        uuid=str(uuid_module.uuid4()),
        guide_id=guide.id,
        filename=name,
        content_type=content_type,
        size=len(data),
        owner_id=ctx.principal.user_id,
        created_date=utcnow(),
    )
    session.add(asset)
    session.flush()
    # Last: every check passed and the row is in; a failed commit leaves at most one file.
    write_file(data_dir, asset.uuid, data)
    return _read(session, ctx, asset)


def _get(session: Session, ctx: RequestContext, uuid: str, scope: str) -> Asset:
    asset = session.get(Asset, uuid.lower()) if _UUID.match(uuid.lower()) else None
    if asset is None:
        raise NotFound("Asset not found.")
    get_guide(session, ctx, asset.guide_id, scope)
    return asset


def retrieve_asset(
    session: Session, ctx: RequestContext, uuid: str, data_dir: Path
) -> tuple[bytes, str, str]:
    """CVAT ``GET /api/assets/{uuid}``: the bytes, their type and the file name."""
    asset = _get(session, ctx, uuid, "view")
    return read_file(data_dir, asset.uuid), asset.content_type, asset.filename


def delete_asset(session: Session, ctx: RequestContext, uuid: str, data_dir: Path) -> None:
    """CVAT ``DELETE /api/assets/{uuid}``."""
    asset = _get(session, ctx, uuid, "update")
    session.delete(asset)
    session.flush()
    gone = asset.uuid
    after_commit(session, lambda: remove_files(data_dir, [gone]))
