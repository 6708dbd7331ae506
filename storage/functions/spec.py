"""The function spec: one YAML file per model, validated when it is deployed.

Example::

    id: colour-detector
    name: Colour blobs
    kind: detector
    version: 1
    labels:
      - {name: red, type: rectangle}
    runtime:
      class: colour                   # or torchscript: model.pt / onnx: model.onnx
      options: {width: 16, depth: 2}
    resources: {num_cpus: 1, num_gpus: 0}
    autoscaling: {min_replicas: 1, max_replicas: 2, target_ongoing_requests: 2}
    batching: {max_batch_size: 8, batch_wait_timeout_s: 0.01}

Relative file paths (``torchscript``, ``onnx``, ``weights``) are relative to the spec file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cvat_ray.cluster.errors import InvalidInput

FunctionKind = Literal["detector", "interactor", "tracker", "reid"]
LabelType = Literal[
    "any",
    "rectangle",
    "polygon",
    "polyline",
    "points",
    "ellipse",
    "cuboid",
    "mask",
    "skeleton",
    "tag",
]
InputType = Literal["checkbox", "radio", "number", "text", "select"]

_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_CLOUD_SCHEMES = ("s3://", "gs://", "gcs://", "az://", "abfs://", "http://", "https://")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttributeSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)
    input_type: InputType = "text"
    values: list[str] = Field(default_factory=list)


class LabelSpec(_Strict):
    name: str = Field(min_length=1, max_length=64)
    type: LabelType = "any"
    attributes: list[AttributeSpec] = Field(default_factory=list)
    sublabels: list[LabelSpec] = Field(default_factory=list)
    svg: str | None = None

    @model_validator(mode="after")
    def _unique(self) -> LabelSpec:
        _require_unique([a.name for a in self.attributes], f"label {self.name!r}: attribute")
        _require_unique([s.name for s in self.sublabels], f"label {self.name!r}: sublabel")
        return self


class RuntimeSpec(_Strict):
    """Where the model comes from: a Python class (built-in short name or
    ``package.module:Class``), a TorchScript file or an ONNX file."""

    class_: str | None = Field(default=None, alias="class")
    torchscript: str | None = None
    onnx: str | None = None
    weights: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    input_size: tuple[int, int] | None = None
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_source(self) -> RuntimeSpec:
        given = [k for k in ("class_", "torchscript", "onnx") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("runtime needs exactly one of 'class', 'torchscript' or 'onnx'")
        return self

    def to_loader(self) -> dict[str, Any]:
        """The ``runtime`` dict of ``cvat_ray.actors.functions.loader.load_model``."""
        out: dict[str, Any] = {"options": dict(self.options)}
        if self.class_:
            out["class"] = self.class_
        if self.torchscript:
            out["torchscript"] = self.torchscript
        if self.onnx:
            out["onnx"] = self.onnx
        if self.weights:
            out["weights"] = self.weights
        if self.input_size:
            out["input_size"] = list(self.input_size)
        return out


class ResourcesSpec(_Strict):
    num_cpus: float = Field(default=1.0, ge=0)
    num_gpus: float = Field(default=0.0, ge=0)
    memory: int | None = Field(default=None, gt=0, description="bytes reserved per replica")
    # torch/OpenCV threads per replica; unset: ceil(num_cpus), at least 1
    threads: int | None = Field(default=None, ge=1, le=256)


class AutoscalingSpec(_Strict):
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    downscale_delay_s: float = Field(default=60.0, ge=0)

    @model_validator(mode="after")
    def _range(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class BatchingSpec(_Strict):
    max_batch_size: int = Field(default=8, ge=1, le=1024)
    batch_wait_timeout_s: float = Field(default=0.01, ge=0, le=10)


class InteractorSpec(_Strict):
    min_pos_points: int = Field(default=1, ge=0)
    min_neg_points: int = Field(default=-1, ge=-1)
    startswith_box: bool = False
    startswith_box_optional: bool = False
    animated_gif: str = ""
    help_message: str = ""


class TrackerSpec(_Strict):
    supported_shape_types: list[str] = Field(default_factory=lambda: ["rectangle"])


class FunctionSpec(_Strict):
    id: str
    name: str = Field(min_length=1, max_length=256)
    kind: FunctionKind
    version: int = Field(default=1, ge=1)
    description: str = ""
    labels: list[LabelSpec] = Field(default_factory=list)
    runtime: RuntimeSpec
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    batching: BatchingSpec = Field(default_factory=BatchingSpec)
    interactor: InteractorSpec = Field(default_factory=InteractorSpec)
    tracker: TrackerSpec = Field(default_factory=TrackerSpec)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(
                "id must be 1-63 lowercase letters, digits, '.', '_' or '-', starting with a "
                "letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _labels(self) -> FunctionSpec:
        _require_unique([label.name for label in self.labels], "label")
        if self.kind == "detector" and not self.labels:
            raise ValueError("a detector needs at least one label")
        return self

    @property
    def threads(self) -> int:
        if self.resources.threads:
            return self.resources.threads
        return max(1, int(-(-self.resources.num_cpus // 1)))

    def to_cvat(self) -> dict[str, Any]:
        """CVAT's ``GET /api/lambda/functions`` item."""
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "labels_v2": [_label_cvat(label) for label in self.labels],
            "labels": [label.name for label in self.labels],
            "description": self.description,
            "framework": self._framework(),
            "name": self.name,
            "version": self.version,
        }
        if self.kind == "interactor":
            out.update(self.interactor.model_dump())
        if self.kind == "tracker":
            out["supported_shape_types"] = list(self.tracker.supported_shape_types)
        return out

    def _framework(self) -> str:
        if self.runtime.torchscript:
            return "pytorch"
        if self.runtime.onnx:
            return "onnx"
        return "python"


def _label_cvat(label: LabelSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": label.name,
        "type": label.type,
        "attributes": [a.model_dump() for a in label.attributes],
    }
    if label.sublabels:
        out["sublabels"] = [_label_cvat(s) for s in label.sublabels]
    if label.svg:
        out["svg"] = label.svg
    return out


def _require_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} names must be unique; {name!r} appears twice")
        seen.add(name)


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def parse_spec(data: Any, *, source: str = "spec", base_dir: Path | None = None) -> FunctionSpec:
    """A validated spec from parsed YAML/JSON; relative model files are resolved against
    ``base_dir`` and must exist. Raises InvalidInput naming the file and the field."""
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{source}: a function spec must be a mapping, got {type(data).__name__}"
        )
    try:
        spec = FunctionSpec.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(f"{source}: {_format_errors(exc)}") from None
    if base_dir is None:
        return spec
    runtime = spec.runtime
    updates: dict[str, Any] = {}
    for key in ("torchscript", "onnx", "weights"):
        value = getattr(runtime, key)
        if not value or value.startswith(_CLOUD_SCHEMES):
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            path = (base_dir / path).resolve()
        if not path.is_file():
            raise InvalidInput(f"{source}: runtime.{key}: file {path} does not exist")
        updates[key] = str(path)
    if updates:
        spec = spec.model_copy(update={"runtime": runtime.model_copy(update=updates)})
    return spec


def load_spec_file(path: Path) -> FunctionSpec:
    """Read and validate one spec file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read the spec ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML ({exc})") from None
    return parse_spec(data, source=str(path), base_dir=path.parent.resolve())


def spec_files(folder: Path) -> list[Path]:
    """The spec files of a folder, in name order."""
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
