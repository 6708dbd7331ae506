"""``/api/projects`` shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import (
    BasicUser,
    CountedLink,
    DbId,
    Link,
    StorageRead,
    StorageWrite,
    WriteModel,
)
from cvat_ray.storage.schemas.labels import LabelWrite


class ProjectRead(BaseModel):
    url: str
    id: int
    name: str
    owner: BasicUser | None
    assignee: BasicUser | None
    assignee_updated_date: datetime | None
    guide_id: int | None = None
    bug_tracker: str
    task_subsets: list[str]
    created_date: datetime
    updated_date: datetime
    status: str
    dimension: str | None
    organization: int | None
    organization_id: int | None
    source_storage: StorageRead | None
    target_storage: StorageRead | None
    tasks: CountedLink
    labels: Link


class ProjectWrite(WriteModel):
    name: str = Field(min_length=1, max_length=256)
    labels: list[LabelWrite] = Field(default_factory=list)
    owner_id: DbId | None = None
    assignee_id: DbId | None = None
    bug_tracker: str = Field(default="", max_length=2000)
    source_storage: StorageWrite | None = None
    target_storage: StorageWrite | None = None


class ProjectPatch(WriteModel):
    name: str | None = Field(default=None, min_length=1, max_length=256)
    labels: list[LabelWrite] = Field(default_factory=list)
    owner_id: DbId | None = None
    assignee_id: DbId | None = None
    bug_tracker: str | None = Field(default=None, max_length=2000)
    organization_id: DbId | None = None
    source_storage: StorageWrite | None = None
    target_storage: StorageWrite | None = None
