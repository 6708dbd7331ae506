"""``/api/requests`` shapes (background requests)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

RequestStatus = Literal["queued", "started", "failed", "finished"]


class RequestOperation(BaseModel):
    type: str
    target: str
    project_id: int | None = None
    task_id: int | None = None
    job_id: int | None = None
    format: str | None = None
    function_id: str | None = None


class RequestOwner(BaseModel):
    id: int
    username: str


class RequestRead(BaseModel):
    id: str
    status: RequestStatus
    message: str
    progress: float | None = Field(default=None, ge=0, le=1)
    operation: RequestOperation
    created_date: datetime
    started_date: datetime | None
    finished_date: datetime | None
    expiry_date: datetime | None
    owner: RequestOwner | None
    result_url: str | None
    result_id: int | None


class RqId(BaseModel):
    rq_id: str
