"""Request bodies: how much each endpoint may read (:func:`body_rule`, enforced by
:class:`cvat_ray.serve_apps.middleware.BodyGuardMiddleware`), and the bodies routers read
themselves (uploads, forms, raw JSON), parsed and validated into a pydantic model with
DRF-shaped 400s (``{"field.path": ["message"]}``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from cvat_ray.cluster.errors import InvalidInput
from cvat_ray.cluster.settings import Settings

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class BodyRule:
    """How an endpoint's body may be read.

    ``limit``: the most bytes it reads, a number or a function of the settings; None means
    ``api.max_body_mb``. ``public``: callers need no credentials (login, register, logout),
    so the body is read without authenticating first. ``streamed``: content types that the
    endpoint writes to disk as they arrive under quotas of its own (uploads), so no limit is
    set here for them; the caller is still authenticated first.
    """

    limit: int | Callable[[Settings], int] | None = None
    public: bool = False
    streamed: tuple[str, ...] = ()

    def limit_bytes(self, settings: Settings, content_type: str) -> int | None:
        """The cap for this request, None when the endpoint streams this content type."""
        ctype = content_type.split(";", 1)[0].strip().lower()
        if ctype and ctype in self.streamed:
            return None
        if self.limit is None:
            return settings.api.max_body_mb * MIB
        return self.limit if isinstance(self.limit, int) else self.limit(settings)


DEFAULT_RULE = BodyRule()
_RULES: dict[Callable[..., Any], BodyRule] = {}


def body_rule(
    limit: int | Callable[[Settings], int] | None = None,
    *,
    public: bool = False,
    streamed: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Declare an endpoint's :class:`BodyRule`; goes below the ``@router.<method>`` line."""

    def register(endpoint: F) -> F:
        _RULES[endpoint] = BodyRule(limit, public, tuple(s.lower() for s in streamed))
        return endpoint

    return register


def rule_of(endpoint: Callable[..., Any]) -> BodyRule:
    return _RULES.get(endpoint, DEFAULT_RULE)


def size_text(limit: int) -> str:
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit % KIB == 0:
        return f"{limit // KIB} KiB"
    return f"{limit} bytes"


def too_large_message(limit: int) -> str:
    return f"The request body is larger than {size_text(limit)}, the limit of this endpoint."


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
    """The body as a JSON object (its size is capped by the endpoint's :class:`BodyRule`)."""
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
