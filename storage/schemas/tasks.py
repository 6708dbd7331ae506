"""``/api/tasks`` shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import (
    BasicUser,
    DbId,
    Link,
    StorageRead,
    StorageWrite,
    WriteModel,
)
from cvat_ray.storage.schemas.labels import LabelWrite


class JobsSummary(BaseModel):
    url: str
    count: int
    completed: int | None
    validation: int | None


class TaskRead(BaseModel):
    url: str
    id: int
    name: str
    project_id: int | None
    project_name: str | None
    mode: str
    owner: BasicUser | None
    assignee: BasicUser | None
    assignee_updated_date: datetime | None
    bug_tracker: str
    created_date: datetime
    updated_date: datetime
    overlap: int | None
    segment_size: int
    status: str
    data_chunk_size: int | None
    data_compressed_chunk_type: str | None
    data_original_chunk_type: str | None
    data_cloud_storage_id: int | None
    image_quality: int
    data: int | None
    dimension: str
    media_type: str
    subset: str
    organization: int | None
    organization_id: int | None
    size: int
    source_storage: StorageRead | None
    target_storage: StorageRead | None
    jobs: JobsSummary
    labels: Link
    guide_id: int | None = None
    validation_mode: str | None = None
    consensus_enabled: bool = False
    initial_replicas: int = 0


class TaskWrite(WriteModel):
    name: str = Field(min_length=1, max_length=256)
    project_id: DbId | None = None
    labels: list[LabelWrite] = Field(default_factory=list)
    owner_id: DbId | None = None
    assignee_id: DbId | None = None
    bug_tracker: str = Field(default="", max_length=2000)
    overlap: int | None = Field(default=None, ge=0, le=2147483647)
    segment_size: int = Field(default=0, ge=0, le=2147483647)
    subset: str = Field(default="", max_length=64)
    consensus_replicas: int = Field(default=0, ge=0, le=10)
    source_storage: StorageWrite | None = None
    target_storage: StorageWrite | None = None


class TaskPatch(WriteModel):
    name: str | None = Field(default=None, min_length=1, max_length=256)
    project_id: DbId | None = None
    labels: list[LabelWrite] = Field(default_factory=list)
    owner_id: DbId | None = None
    assignee_id: DbId | None = None
    bug_tracker: str | None = Field(default=None, max_length=2000)
    subset: str | None = Field(default=None, max_length=64)
    organization_id: DbId | None = None
    source_storage: StorageWrite | None = None
    target_storage: StorageWrite | None = None
