"""Shapes shared by many resources."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

# CVAT's username rule (Django's UnicodeUsernameValidator).
USERNAME_PATTERN = r"^[\w.@+-]+$"


class WriteModel(BaseModel):
    """Base of request bodies: unknown keys are ignored, as DRF does."""

    model_config = ConfigDict(extra="ignore")


class BasicUser(BaseModel):
    url: str
    id: int
    username: str
    first_name: str
    last_name: str


class StorageRead(BaseModel):
    id: int | None = None
    location: Literal["local", "cloud_storage"] = "local"
    cloud_storage_id: int | None = None


class StorageWrite(WriteModel):
    location: Literal["local", "cloud_storage"] = "local"
    cloud_storage_id: int | None = Field(default=None, ge=0)


class CountedLink(BaseModel):
    url: str
    count: int = 0


class Link(BaseModel):
    url: str


class Page(BaseModel, Generic[T]):
    """One page of a list as a service returns it; routers add next/previous links."""

    count: int
    results: list[T]


class Paginated(BaseModel, Generic[T]):
    count: int
    next: str | None
    previous: str | None
    results: list[T]


class Detail(BaseModel):
    detail: str = ""
