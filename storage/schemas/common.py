"""Shapes shared by many resources."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

# Database ids are 32-bit integers; larger numbers cannot name an object.
DbId = Annotated[int, Field(ge=0, le=2_147_483_647)]

# CVAT's username rule (Django's UnicodeUsernameValidator).
USERNAME_PATTERN = r"^[\w.@+-]+$"


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("Null characters are not allowed.")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError("Invalid Unicode (lone surrogate).") from exc
    elif isinstance(value, list | tuple):
        for item in value:
            _check_text(item)


class WriteModel(BaseModel):
    """Base of request bodies: unknown keys are ignored, as DRF does, and text that no
    database can store (NUL, lone surrogates) is refused with a 400."""

    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        _check_text(value)
        return value


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
    cloud_storage_id: DbId | None = None


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
