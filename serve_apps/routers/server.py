"""``/api/server``."""

from __future__ import annotations

from fastapi import APIRouter

from cvat_ray.storage.schemas.server import About

router = APIRouter(prefix="/api/server", tags=["server"])

VERSION = "2.80.0"


@router.get("/about", response_model=About)
async def about() -> About:
    """CVAT ``GET /api/server/about``: public; cvat-sdk checks ``version`` before logging in."""
    return About(
        name="cvat-ray",
        description="A CVAT-compatible annotation server running on Ray",
        version=VERSION,
        logo_url="",
        subtitle="CVAT 2.80 API on Ray Serve",
    )
