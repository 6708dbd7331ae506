"""``/api/jobs`` shapes."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from cvat_ray.storage.schemas.common import (
    BasicUser,
    CountedLink,
    DbId,
    Link,
    StorageRead,
    WriteModel,
)

JobStage = Literal["annotation", "validation", "acceptance"]
JobState = Literal["new", "in progress", "completed", "rejected"]


class JobRead(BaseModel):
    url: str
    id: int
    task_id: int
    task_name: str | None
    project_id: int | None
    project_name: str | None
    assignee: BasicUser | None
    assignee_updated_date: datetime | None
    guide_id: int | None = None
    dimension: str
    media_type: str
    bug_tracker: str | None
    status: str
    stage: str
    state: str
    mode: str
    frame_count: int
    start_frame: int
    stop_frame: int
    data_chunk_size: int | None
    data_compressed_chunk_type: str | None
    data_original_chunk_type: str | None
    created_date: datetime
    updated_date: datetime
    issues: CountedLink
    labels: Link
    type: str
    organization: int | None
    source_storage: StorageRead | None
    target_storage: StorageRead | None
    parent_job_id: int | None
    consensus_replicas: int = 0


class JobPatch(WriteModel):
    assignee: DbId | None = None
    stage: JobStage | None = None
    state: JobState | None = None
