"""Wire shapes of ``/api/events`` (CVAT's ``EventSerializer`` and ``ClientEventsSerializer``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator

from cvat_ray.storage.schemas.common import WriteModel

UInt = Annotated[int, Field(ge=0, le=2**63 - 1)]


class EventWrite(WriteModel):
    scope: str = Field(max_length=255)
    obj_name: str | None = Field(default=None, max_length=4096)
    obj_id: UInt | None = None
    obj_val: str | None = Field(default=None, max_length=65536)
    source: str | None = Field(default="client", max_length=255)
    timestamp: datetime
    count: Annotated[int, Field(ge=0, le=65535)] | None = None
    duration: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    project_id: UInt | None = None
    task_id: UInt | None = None
    job_id: UInt | None = None
    user_id: UInt | None = None
    user_name: str | None = Field(default=None, max_length=4096)
    user_email: str | None = Field(default=None, max_length=4096)
    org_id: UInt | None = None
    org_slug: str | None = Field(default=None, max_length=4096)
    payload: str | None = Field(default=None, max_length=1_000_000)

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        # DRF reads a naive time in the server's zone (UTC here)
        from datetime import UTC

        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class ClientEventsWrite(WriteModel):
    events: list[EventWrite] = Field(default_factory=list, max_length=100_000)
    previous_event: EventWrite | None = None
    timestamp: datetime

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        from datetime import UTC

        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class ExportParams(BaseModel):
    """Query parameters of the events export (both flows)."""

    org_id: int | None = None
    project_id: int | None = None
    task_id: int | None = None
    job_id: int | None = None
    user_id: int | None = None
    from_: AwareDatetime | None = None
    to: AwareDatetime | None = None
    filename: str | None = None
    location: Literal["local", "cloud_storage"] | None = None
    cloud_storage_id: int | None = None


class ExportAccepted(BaseModel):
    rq_id: str


class QueryAccepted(BaseModel):
    query_id: str
