"""``/api/quality/settings`` shapes (CVAT's quality-control settings of a task or project)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from cvat_ray.storage.schemas.common import WriteModel

# CVAT's defaults of every comparison parameter.
DEFAULT_PARAMS: dict[str, Any] = {
    "job_filter": '{"==": [{"var": "type"}, "annotation"]}',
    "target_metric": "accuracy",
    "target_metric_threshold": 0.7,
    "max_validations_per_job": 0,
    "iou_threshold": 0.4,
    "oks_sigma": 0.09,
    "point_size_base": "group_bbox_size",
    "line_thickness": 0.01,
    "low_overlap_threshold": 0.8,
    "compare_line_orientation": True,
    "line_orientation_threshold": 0.1,
    "compare_groups": True,
    "group_match_threshold": 0.5,
    "check_covered_annotations": True,
    "object_visibility_threshold": 0.05,
    "panoptic_comparison": True,
    "compare_attributes": True,
    "empty_is_annotated": False,
}

TargetMetric = Literal["accuracy", "precision", "recall"]
PointSizeBase = Literal["image_size", "group_bbox_size"]


class QualitySettingsRead(BaseModel):
    id: int
    task_id: int | None
    project_id: int | None
    inherit: bool
    job_filter: str
    target_metric: TargetMetric
    target_metric_threshold: float
    max_validations_per_job: int
    iou_threshold: float
    oks_sigma: float
    point_size_base: PointSizeBase
    line_thickness: float
    low_overlap_threshold: float
    compare_line_orientation: bool
    line_orientation_threshold: float
    compare_groups: bool
    group_match_threshold: float
    check_covered_annotations: bool
    object_visibility_threshold: float
    panoptic_comparison: bool
    compare_attributes: bool
    empty_is_annotated: bool
    created_date: datetime
    updated_date: datetime


def _fraction() -> Any:
    return Field(default=None, ge=0, le=1, allow_inf_nan=False)


class QualitySettingsPatch(WriteModel):
    """Every field optional; ``task_id``/``project_id`` are fixed once the settings exist."""

    inherit: bool | None = None
    job_filter: str | None = Field(default=None, max_length=1024)
    target_metric: TargetMetric | None = None
    target_metric_threshold: float | None = _fraction()
    max_validations_per_job: int | None = Field(default=None, ge=0, le=2_147_483_647)
    iou_threshold: float | None = _fraction()
    oks_sigma: float | None = _fraction()
    point_size_base: PointSizeBase | None = None
    line_thickness: float | None = _fraction()
    low_overlap_threshold: float | None = _fraction()
    compare_line_orientation: bool | None = None
    line_orientation_threshold: float | None = _fraction()
    compare_groups: bool | None = None
    group_match_threshold: float | None = _fraction()
    check_covered_annotations: bool | None = None
    object_visibility_threshold: float | None = _fraction()
    panoptic_comparison: bool | None = None
    compare_attributes: bool | None = None
    empty_is_annotated: bool | None = None
