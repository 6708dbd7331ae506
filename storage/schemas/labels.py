"""Labels, sublabels and attributes (``/api/labels`` and inside tasks and projects)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import DbId, WriteModel

LabelType = Literal[
    "any",
    "cuboid",
    "ellipse",
    "mask",
    "points",
    "polygon",
    "polyline",
    "rectangle",
    "skeleton",
    "interval",
    "tag",
]
InputType = Literal["checkbox", "radio", "number", "text", "select"]


class AttributeRead(BaseModel):
    id: int
    name: str
    mutable: bool
    input_type: InputType
    default_value: str
    values: list[str]


class AttributeWrite(WriteModel):
    id: DbId | None = None
    name: str | None = Field(default=None, min_length=1, max_length=64)
    mutable: bool | None = None
    input_type: InputType | None = None
    default_value: str | None = Field(default=None, max_length=128)
    values: list[str] | None = None
    deleted: bool = False


class SublabelRead(BaseModel):
    id: int
    name: str
    color: str
    type: LabelType
    attributes: list[AttributeRead]
    has_parent: bool = True


class LabelRead(BaseModel):
    id: int
    name: str
    color: str
    type: LabelType
    svg: str
    attributes: list[AttributeRead]
    sublabels: list[SublabelRead]
    has_parent: bool
    parent_id: int | None
    task_id: int | None
    project_id: int | None


class LabelWrite(WriteModel):
    """A label in a task/project create or patch (``PatchedLabelRequest``), also used for
    skeleton sublabels."""

    id: DbId | None = None
    name: str | None = Field(default=None, min_length=1, max_length=64)
    color: str | None = Field(default=None, max_length=8)
    type: LabelType | None = None
    svg: str | None = None
    attributes: list[AttributeWrite] = Field(default_factory=list)
    sublabels: list[LabelWrite] = Field(default_factory=list)
    deleted: bool = False


class LabelPatch(WriteModel):
    """``PATCH /api/labels/{id}``."""

    name: str | None = Field(default=None, min_length=1, max_length=64)
    color: str | None = Field(default=None, max_length=8)
    type: LabelType | None = None
    svg: str | None = None
    attributes: list[AttributeWrite] = Field(default_factory=list)
    sublabels: list[LabelWrite] = Field(default_factory=list)
