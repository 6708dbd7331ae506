"""Request bodies: how much each endpoint may read (:func:`body_rule`, enforced by
:class:`cvat_ray.serve_apps.middleware.BodyGuardMiddleware`); the description of the bodies
that endpoints read themselves (:func:`described_body`, so ``/api/schema`` shows them); and
their parsing into a pydantic model with DRF-shaped 400s (``{"field.path": ["message"]}``).

Most endpoints declare their body as a typed parameter (``data: TaskWrite``), which FastAPI
parses and documents. An endpoint reads its body itself only where it must: annotation
bodies too large to parse in the event loop, uploads streamed to disk, and bodies that come
as JSON or as a form (:func:`json_or_form`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
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


def json_model(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that validates the body as ``model`` straight from its bytes (pydantic's
    JSON mode: large bodies, e.g. thousands of client events, skip the dict in between); a
    body that fails is parsed again to give the usual 400 with field paths. Declare the body
    with :func:`described_body` and its cap with :func:`body_rule`."""

    async def parse(request: Request) -> M:
        raw = await request.body()
        try:
            return model.model_validate_json(raw or b"{}")
        except ValidationError:
            return validated(model, parse_json_object(raw))

    return parse


def json_or_form(
    model: type[M], *, max_part: int, lists: tuple[str, ...] = ()
) -> Callable[[Request], Awaitable[M]]:
    """A dependency that reads the body as ``model``, sent as JSON or as
    multipart/form-data (a file part is read as UTF-8 text; a field in ``lists`` may repeat,
    also as ``name[i]``). Declare the body with :func:`described_body` and its cap with
    :func:`body_rule`."""

    async def parse(request: Request) -> M:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return validated(model, await json_object(request))
        form = await request.form(max_files=1, max_fields=50, max_part_size=max_part)
        try:
            fields: dict[str, Any] = {}
            for key, value in form.multi_items():
                name = key.split("[", 1)[0]
                if not isinstance(value, str):
                    fields[key] = (await value.read()).decode("utf-8", "replace")
                elif name in lists:
                    fields.setdefault(name, []).append(value)
                else:
                    fields[key] = value
        finally:
            await form.close()
        return validated(model, fields)

    return parse


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


# The types that described bodies name (pydantic models, or msgspec structs for the bodies
# decoded with msgspec); their schemas join the OpenAPI components.
_MODELS: dict[str, type[BaseModel]] = {}
_STRUCTS: dict[str, type[msgspec.Struct]] = {}
_REF = "#/components/schemas/{name}"

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}

BodyPart = type[BaseModel] | type[msgspec.Struct] | Mapping[str, Any]


def _schema_of(part: BodyPart) -> dict[str, Any]:
    if isinstance(part, type) and issubclass(part, BaseModel):
        _MODELS.setdefault(part.__name__, part)
    elif isinstance(part, type) and issubclass(part, msgspec.Struct):
        _STRUCTS.setdefault(part.__name__, part)
    else:
        return dict(part)
    return {"$ref": _REF.format(name=part.__name__)}


def described_body(
    content: Mapping[str, BodyPart],
    *,
    required: bool = True,
    description: str | None = None,
) -> dict[str, Any]:
    """The ``openapi_extra`` of an endpoint that reads its own body: ``content`` maps each
    media type it accepts to a model (or a JSON schema). Passed as
    ``@router.put(..., openapi_extra=described_body({...}))``; :func:`add_described_schemas`
    puts the models into the schema's components."""
    body: dict[str, Any] = {
        "required": required,
        "content": {media: {"schema": _schema_of(part)} for media, part in content.items()},
    }
    if description:
        body["description"] = description
    return {"requestBody": body}


def with_files(model: BodyPart, **files: Mapping[str, Any]) -> dict[str, Any]:
    """A multipart form's schema: ``model``'s fields and the file fields ``files``."""
    return {
        "allOf": [
            _schema_of(model),
            {"type": "object", "properties": {name: dict(s) for name, s in files.items()}},
        ]
    }


def add_described_schemas(openapi: dict[str, Any]) -> None:
    """Add the models of described bodies (and the models they use) to ``openapi``'s
    components, as FastAPI does for the bodies it parses."""
    schemas: dict[str, Any] = openapi.setdefault("components", {}).setdefault("schemas", {})
    found: dict[str, Any] = {}
    for name, model in _MODELS.items():
        schema = model.model_json_schema(ref_template=_REF.replace("{name}", "{model}"))
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    if _STRUCTS:
        _, components = msgspec.json.schema_components(_STRUCTS.values(), ref_template=_REF)
        found.update(components)
    for name, schema in found.items():
        if schemas.setdefault(name, schema) != schema:
            raise RuntimeError(f"Two different schemas are named {name!r} in the API schema.")
