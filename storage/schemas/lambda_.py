"""Bodies and responses of CVAT's lambda API (``/api/lambda/functions``, ``/requests``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
    model_validator,
)

from cvat_ray.storage.schemas.common import DbId, WriteModel

Threshold = Annotated[float, Field(ge=0, le=1)]
Point = tuple[float, float]


class MappingEntry(WriteModel):
    """Where one model label goes: a task label ``name``, model attribute -> task attribute
    names, and (skeletons) sublabels the same way."""

    name: str = Field(min_length=1, max_length=64)
    attributes: dict[str, str] = Field(default_factory=dict)
    sublabels: dict[str, MappingEntry] | None = None


Mapping = dict[str, MappingEntry]
Roi = Annotated[list[float], Field(min_length=4, max_length=4)]


class FunctionCallRequest(WriteModel):
    """``POST /api/lambda/requests``: the whole task (or one of its jobs)."""

    function: str = Field(min_length=1, max_length=64)
    task: DbId
    job: DbId | None = None
    threshold: Threshold | None = None
    cleanup: bool = False
    conv_mask_to_poly: bool = Field(
        default=False, validation_alias=AliasChoices("conv_mask_to_poly", "convMaskToPoly")
    )
    mapping: Mapping | None = None
    max_distance: float | None = None
    roi: Roi | None = None


class OnlineCallRequest(WriteModel):
    """``POST /api/lambda/functions/{id}``: one frame, synchronously."""

    task: DbId | None = None
    job: DbId | None = None
    frame: Annotated[int, Field(ge=0, le=2_147_483_647)] = 0
    # detectors
    threshold: Threshold | None = None
    mapping: Mapping | None = None
    conv_mask_to_poly: bool = Field(
        default=False, validation_alias=AliasChoices("conv_mask_to_poly", "convMaskToPoly")
    )
    roi: Roi | None = None
    # interactors
    pos_points: list[Point] = Field(default_factory=list, max_length=1000)
    neg_points: list[Point] = Field(default_factory=list, max_length=1000)
    obj_bbox: list[Point] | Roi | None = None
    # trackers: shapes to start, or states (from the previous answer) to continue
    shapes: list[list[float]] | None = Field(default=None, max_length=1000)
    states: list[dict[str, Any]] | None = Field(default=None, max_length=1000)


class DatasetRunRequest(WriteModel):
    """``POST /api/lambda/runs``: annotate many tasks with one function, as a Ray job (ours;
    CVAT has no such endpoint). Exactly one of ``tasks``, ``project``, ``organization``."""

    function: str = Field(min_length=1, max_length=64)
    tasks: list[DbId] = Field(default_factory=list, max_length=10_000)
    project: DbId | None = None
    organization: str | None = Field(default=None, min_length=1, max_length=16)
    threshold: Threshold | None = None
    cleanup: bool = False
    # the same name resumes a run; default: derived from the function and the scope
    run: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

    @model_validator(mode="after")
    def _one_scope(self) -> DatasetRunRequest:
        given = sum(bool(x) for x in (self.tasks, self.project is not None, self.organization))
        if given != 1:
            raise ValueError("Give exactly one of 'tasks', 'project' or 'organization'.")
        return self


class DatasetRunRead(BaseModel):
    run: str
    function: str
    tasks: int
    to_annotate: int
    # the Ray job that runs it (its log ends with a JSON summary); null without Ray
    job_id: str | None


class FunctionCallParams(BaseModel):
    id: str | None
    task: int | None
    threshold: float | None
    # CVAT's schema: optional and not nullable, so it is left out when the call has no job
    # (cvat-sdk refuses a null there).
    job: int | None = None

    @model_serializer(mode="wrap")
    def _without_null_job(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("job") is None:
            data.pop("job", None)
        return data


class FunctionCall(BaseModel):
    """CVAT's ``FunctionCall``; ``progress`` is 0..100 as RQ reports it."""

    id: str
    function: FunctionCallParams
    status: Literal["queued", "started", "finished", "failed"] | None
    progress: int | None
    enqueued: datetime | None
    started: datetime | None
    ended: datetime | None
    exc_info: str | None
