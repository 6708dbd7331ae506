"""``/api/guides`` and ``/api/assets`` shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import BasicUser, DbId, WriteModel

# CVAT keeps a guide's markdown in a text field; cap it so one PATCH cannot store megabytes.
MAX_MARKDOWN = 1_000_000


class GuideRead(BaseModel):
    id: int
    task_id: int | None
    project_id: int | None
    owner: BasicUser | None
    created_date: datetime
    updated_date: datetime
    markdown: str


class GuideWrite(WriteModel):
    task_id: DbId | None = None
    project_id: DbId | None = None
    markdown: str = Field(default="", max_length=MAX_MARKDOWN)


class GuidePatch(WriteModel):
    """Only the text changes; a guide stays with its task or project."""

    markdown: str | None = Field(default=None, max_length=MAX_MARKDOWN)


class AssetRead(BaseModel):
    uuid: str
    filename: str
    created_date: datetime
    owner: BasicUser | None
    guide_id: int
