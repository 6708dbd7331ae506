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

# The job fields a settings' job_filter may name (CVAT's list).
JOB_FILTER_FIELDS = ("assignee", "id", "stage", "state", "task_id", "task_name", "type")

TargetMetric = Literal["accuracy", "precision", "recall"]
PointSizeBase = Literal["image_size", "group_bbox_size"]


def _about(text: str) -> Any:
    return Field(description=text)


class QualitySettings(BaseModel):
    """The settings as read. Named as CVAT names it: CVAT's UI shows each field's
    ``description`` from ``components.schemas.QualitySettings`` of ``/api/schema/`` as help
    on its Quality page (and fails to load the page without it)."""

    id: int
    task_id: int | None
    project_id: int | None
    inherit: bool = _about("Use the project's settings for this task (tasks in projects only)")
    job_filter: str = _about(
        "JSON-logic filter choosing the jobs to check, over: " + ", ".join(JOB_FILTER_FIELDS)
    )
    target_metric: TargetMetric = _about("Metric that decides whether a job is good enough")
    target_metric_threshold: float = _about("Lowest acceptable value of the target metric")
    max_validations_per_job: int = _about(
        "How many times an assignee may send a job for validation (0: no limit)"
    )
    iou_threshold: float = _about("Overlap (IoU) from which two shapes count as matched")
    oks_sigma: float = _about(
        "For points: radius around a ground-truth point, as a share of the object's size"
    )
    point_size_base: PointSizeBase = _about(
        "What the object size of points is taken from: the image or the group's bounding box"
    )
    line_thickness: float = _about(
        "For polylines: width of the band around the ground-truth line, relative to the image"
    )
    low_overlap_threshold: float = _about(
        "Overlap below which a match is reported as a weak (low overlap) match"
    )
    compare_line_orientation: bool = _about("Report polylines drawn in the opposite direction")
    line_orientation_threshold: float = _about(
        "Gain in overlap from reversing a line above which it counts as reversed"
    )
    compare_groups: bool = _about("Check that grouped annotations are grouped alike")
    group_match_threshold: float = _about("Overlap from which two groups count as matched")
    check_covered_annotations: bool = _about("Report annotations hidden under others")
    object_visibility_threshold: float = _about(
        "Visible share of an area below which an annotation counts as covered"
    )
    panoptic_comparison: bool = _about("Compare only the visible parts of masks and polygons")
    compare_attributes: bool = _about("Compare attribute values of matched annotations")
    empty_is_annotated: bool = _about(
        "Count frames that have no annotations in both as matching (accuracy 1, not 0)"
    )
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
