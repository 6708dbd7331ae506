"""``/api/issues`` and ``/api/comments`` shapes (CVAT's IssueRead, CommentRead, ...)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import BasicUser, CountedLink, DbId, WriteModel

Frame = int


class IssueRead(BaseModel):
    id: int
    frame: int
    position: list[float]
    job: int
    owner: BasicUser | None
    assignee: BasicUser | None
    created_date: datetime
    updated_date: datetime | None
    resolved: bool
    comments: CountedLink


class IssueWrite(WriteModel):
    frame: int = Field(ge=0, le=2_147_483_647)
    position: list[float] = Field(min_length=2, max_length=10_000)
    job: DbId
    # CVAT opens an issue with its first comment.
    message: str = Field(min_length=1, max_length=4096)
    assignee: DbId | None = None
    resolved: bool = False


class IssuePatch(WriteModel):
    position: list[float] | None = Field(default=None, min_length=2, max_length=10_000)
    assignee: DbId | None = None
    resolved: bool | None = None


class CommentRead(BaseModel):
    id: int
    issue: int
    owner: BasicUser | None
    message: str
    created_date: datetime
    updated_date: datetime


class CommentWrite(WriteModel):
    issue: DbId
    message: str = Field(min_length=1, max_length=4096)


class CommentPatch(WriteModel):
    message: str = Field(min_length=1, max_length=4096)
