"""Task data shapes: ``DataRequest`` (what Upload-Finish or a JSON POST carries),
``DataMetaRead`` and its patch."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from cvat_ray.storage.schemas.common import DbId, WriteModel

SortingMethod = Literal["lexicographical", "natural", "predefined", "random"]
_PATH = Field(min_length=1, max_length=1024)


class DataRequest(WriteModel):
    image_quality: int = Field(default=70, ge=1, le=100)
    chunk_size: int | None = Field(default=None, ge=0, le=2_147_483_647)
    start_frame: int = Field(default=0, ge=0, le=2_147_483_647)
    stop_frame: int | None = Field(default=None, ge=0, le=2_147_483_647)
    frame_filter: str = Field(default="", max_length=256)
    server_files: list[str] = Field(default_factory=list, max_length=100_000)
    remote_files: list[str] = Field(default_factory=list, max_length=100_000)
    server_files_exclude: list[str] = Field(default_factory=list, max_length=100_000)
    cloud_storage_id: DbId | None = None
    use_zip_chunks: bool = False
    use_cache: bool = True
    copy_data: bool = False
    storage_method: Literal["cache", "file_system"] | None = None
    sorting_method: SortingMethod = "lexicographical"
    filename_pattern: str | None = Field(default=None, min_length=1, max_length=1024)
    job_file_mapping: list[list[str]] | None = None
    upload_file_order: list[str] = Field(default_factory=list)

    @field_validator("frame_filter")
    @classmethod
    def _step(cls, value: str) -> str:
        if value and not re.fullmatch(r"step\s*=\s*[1-9]\d{0,8}", value.strip()):
            raise ValueError("The only supported syntax is 'step=N' (N >= 1).")
        return value.strip()

    @field_validator("server_files", "remote_files", "server_files_exclude", "upload_file_order")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item or len(item) > 1024:
                raise ValueError("Each entry must have 1 to 1024 characters.")
        return value

    @property
    def step(self) -> int:
        if not self.frame_filter:
            return 1
        return int(self.frame_filter.split("=", 1)[1])


class FrameMeta(BaseModel):
    name: str
    width: int
    height: int
    related_files: int = 0
    has_related_context: bool = False


class DataMetaRead(BaseModel):
    chunks_updated_date: datetime
    chunk_size: int | None
    size: int
    image_quality: int
    start_frame: int
    stop_frame: int
    frame_filter: str
    frames: list[FrameMeta] | None
    deleted_frames: list[int]
    included_frames: list[int] | None = None
    storage: str
    storage_method: str
    sorting_method: str
    cloud_storage_id: int | None
    chapters: list[dict[str, object]] | None = None


class DataMetaPatch(WriteModel):
    deleted_frames: list[int] | None = Field(default=None, max_length=10_000_000)

    @field_validator("deleted_frames")
    @classmethod
    def _frames(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(f < 0 or f > 2_147_483_647 for f in value):
            raise ValueError("Frame numbers must be between 0 and 2147483647.")
        return value
