"""Request bodies that routers read themselves (uploads, forms, raw JSON): parsed and
validated into a pydantic model with DRF-shaped 400s (``{"field.path": ["message"]}``)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from cvat_ray.cluster.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from ``raw``; an empty body is ``{}``."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"JSON parse error - {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("Expected a JSON object.")
    return value


async def json_object(request: Request) -> dict[str, Any]:
    return parse_json_object(await request.body())


def validated(model: type[M], raw: dict[str, Any]) -> M:
    """``raw`` as ``model``, or a 400 naming each failing field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        fields: dict[str, list[str]] = {}
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "non_field_errors"
            fields.setdefault(key, []).append(str(err["msg"]).removeprefix("Value error, "))
        raise InvalidInput(fields) from exc
