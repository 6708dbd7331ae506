"""List queries: policy filters, CVAT's JSON-logic ``filter``, ``search``, ``sort``, pages.

Each listed resource declares a :class:`ListSpec`: which columns its filters, search and sort
may name. Everything is compiled to SQL; nothing is filtered in Python.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    false,
    func,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import QueryableAttribute, Session, aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from cvat_ray.cluster.errors import InvalidInput, NotFound
from cvat_ray.iam.filters import AllOf, AnyOf, Eq, Everything, Filter, Nothing

# A select of any number of columns.
AnySelect = Select[*tuple[Any, ...]]
# A column or an ORM attribute.
Column = ColumnElement[Any] | QueryableAttribute[Any]
# A policy path either maps to a column, or to a function building a condition from a value
# (for paths that need a subquery, such as "jobs.assignee_id" of a task).
PolicyPath = Column | Callable[[Any], ColumnElement[bool]]


@dataclass(frozen=True)
class ListSpec:
    """One list endpoint's table: the CVAT field names its ``filter``, ``search``, ``sort`` and
    simple ``?name=value`` parameters accept (CVAT's ``filter_fields``, ``search_fields``,
    ``ordering_fields`` and ``simple_filters`` of that endpoint), each mapped to SQL.
    ``tests/serve_apps/test_ui_contract.py`` compares every table with CVAT's schema."""

    policy_paths: Mapping[str, PolicyPath]
    # JSON-logic / equality filter fields -> column
    fields: Mapping[str, Column]
    search_fields: Sequence[str]
    sort_fields: Mapping[str, Column]
    default_sort: Sequence[ColumnElement[Any]]
    # simple equality query params that are accepted (subset of ``fields``)
    simple_filters: Sequence[str] = field(default_factory=tuple)


class split_part(FunctionElement[str]):
    """``split_part(text, separator, n)`` (1-based, ``''`` past the last part) on PostgreSQL
    and SQLite alike, for fields stored inside one column (``"export:dataset"`` holds CVAT's
    ``action`` and ``subresource``)."""

    type = String()
    name = "split_part"
    inherit_cache = True


@compiles(split_part)
def _split_part_default(element: split_part, compiler: SQLCompiler, **kw: Any) -> str:
    text, sep, n = (compiler.process(c, **kw) for c in element.clauses)
    return f"split_part({text}, {sep}, {n})"


@compiles(split_part, "sqlite")
def _split_part_sqlite(element: split_part, compiler: SQLCompiler, **kw: Any) -> str:
    text_c, sep_c, n_c = element.clauses
    n = getattr(n_c, "value", None)
    text, sep = compiler.process(text_c, **kw), compiler.process(sep_c, **kw)
    at = f"instr({text}, {sep})"
    if n == 1:
        return f"(CASE WHEN {at} > 0 THEN substr({text}, 1, {at} - 1) ELSE {text} END)"
    if n == 2:
        # Everything after the first separator (enough for the two-part values stored here).
        return f"(CASE WHEN {at} > 0 THEN substr({text}, {at} + length({sep})) ELSE '' END)"
    raise NotImplementedError("split_part on SQLite takes part 1 or 2")


@dataclass(frozen=True)
class ListParams:
    page: int = 1
    page_size: int = 10
    filter: str | None = None
    search: str | None = None
    sort: str | None = None
    simple: Mapping[str, str] = field(default_factory=dict)


def related(attribute: QueryableAttribute[Any], ref: Column) -> ColumnElement[Any]:
    """``attribute`` of the object whose ``id`` is ``ref``, as a correlated scalar subquery:
    a list field that names a related object (an invitation's owner, a label's parent)
    without a join in the list query. The related table is aliased, so it never correlates
    with a join of the same table in the enclosing query."""
    entity: Any = aliased(attribute.class_)
    value: ColumnElement[Any] = (
        select(getattr(entity, attribute.key))
        .where(entity.id == ref)
        .correlate_except(entity)
        .scalar_subquery()
    )
    return value


def _is_column(value: Any) -> bool:
    """A column or ORM attribute (as opposed to a literal or a condition builder)."""
    return isinstance(value, ColumnElement) or hasattr(value, "__clause_element__")


def compile_policy(flt: Filter, paths: Mapping[str, PolicyPath]) -> ColumnElement[bool]:
    if isinstance(flt, Everything):
        return true()
    if isinstance(flt, Nothing):
        return false()
    if isinstance(flt, Eq):
        target = paths[flt.field]
        if _is_column(target):
            column: Any = target
            condition: ColumnElement[bool] = (
                column.is_(None) if flt.value is None else column == flt.value
            )
            return condition
        return target(flt.value)  # type: ignore[operator]
    if isinstance(flt, AnyOf):
        return or_(*(compile_policy(i, paths) for i in flt.items))
    if isinstance(flt, AllOf):
        return and_(*(compile_policy(i, paths) for i in flt.items))
    raise TypeError(f"unknown filter node {flt!r}")


_COMPARISONS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class _JsonLogic:
    """Compiles the JSON-logic subset that CVAT clients send (cvat_sdk.core.filters)."""

    def __init__(self, fields: Mapping[str, Column]) -> None:
        self.fields = fields

    def operand(self, node: Any) -> Any:
        if isinstance(node, dict) and set(node) == {"var"}:
            name = node["var"]
            if not isinstance(name, str) or name not in self.fields:
                raise InvalidInput(
                    f"Unknown filter field {name!r}. Allowed: {', '.join(sorted(self.fields))}",
                    field="filter",
                )
            return self.fields[name]
        if isinstance(node, dict | list):
            raise InvalidInput("Nested expressions are not supported here", field="filter")
        return node

    @staticmethod
    def align(a: Any, b: Any) -> tuple[Any, Any]:
        """Coerce a literal compared with a column to the column's type."""
        a_col, b_col = _is_column(a), _is_column(b)
        if a_col and not b_col:
            return a, coerce(a, b, "filter")
        if b_col and not a_col:
            return coerce(b, a, "filter"), b
        if not a_col and not b_col:
            raise InvalidInput("A comparison needs a field", field="filter")
        return a, b

    def expr(self, node: Any) -> ColumnElement[bool]:
        if not isinstance(node, dict) or len(node) != 1:
            raise InvalidInput("Each filter node must be an object with one operator", "filter")
        ((op, args),) = node.items()
        if op == "var":
            col = self.operand(node)
            present: ColumnElement[bool] = col.is_not(None)
            return present
        if not isinstance(args, list):
            args = [args]
        if op == "and":
            return and_(true(), *(self.expr(a) for a in args))
        if op == "or":
            return or_(false(), *(self.expr(a) for a in args))
        if op == "!":
            return not_(self.expr(args[0]))
        if op == "!!":
            return self.expr(args[0])
        if op in _COMPARISONS:
            if op == "<=" and len(args) == 3:
                low, col, high = (self.operand(a) for a in args)
                low, col = self.align(low, col)
                col, high = self.align(col, high)
                return and_(low <= col, col <= high)
            if len(args) != 2:
                raise InvalidInput(f"Operator {op!r} takes two operands", field="filter")
            a, b = (self.operand(x) for x in args)
            a, b = self.align(a, b)
            return _COMPARISONS[op](a, b)
        if op == "in":
            if len(args) != 2:
                raise InvalidInput("Operator 'in' takes two operands", field="filter")
            needle, hay = args
            if isinstance(hay, list):
                col = self.operand(needle)
                if not _is_column(col):
                    raise InvalidInput("'in' with a list needs a field first", field="filter")
                member: ColumnElement[bool] = col.in_(
                    [coerce(col, self.operand(v), "filter") for v in hay]
                )
                return member
            col = self.operand(hay)
            value = self.operand(needle)
            if not _is_column(col) or _is_column(value):
                raise InvalidInput("'in' with a string needs a value and a field", field="filter")
            if col.type.python_type is str:
                text = coerce(col, value, "filter")
            else:
                # substring of a number or a date: compare its text (PostgreSQL has no
                # lower() of an integer)
                text, col = str(value), cast(col, String)
            return func.lower(col).contains(str(text).lower(), autoescape=True)
        raise InvalidInput(f"Unsupported filter operator {op!r}", field="filter")


def _json_filter(raw: str, fields: Mapping[str, Column]) -> ColumnElement[bool]:
    try:
        node = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"filter is not valid JSON: {exc.msg}", field="filter") from exc
    return _JsonLogic(fields).expr(node)


def validate_filter(raw: str, fields: Mapping[str, Column], field: str) -> None:
    """A stored filter (e.g. quality settings' ``job_filter``) must compile over ``fields``;
    a 400 naming ``field`` otherwise."""
    try:
        _json_filter(raw, fields)
    except InvalidInput as exc:
        messages = [m for ms in exc.fields.values() for m in ms]
        raise InvalidInput("; ".join(messages), field=field) from exc


def apply_list_params(stmt: AnySelect, spec: ListSpec, params: ListParams) -> AnySelect:
    conditions: list[ColumnElement[bool]] = []
    for name, value in params.simple.items():
        if name not in spec.simple_filters:
            continue
        col = spec.fields[name]
        conditions.append(_typed_equal(col, name, value))
    if params.filter:
        conditions.append(_json_filter(params.filter, spec.fields))
    if params.search:
        term = params.search.lower()
        conditions.append(
            or_(
                *(
                    func.lower(spec.fields[f]).contains(term, autoescape=True)
                    for f in spec.search_fields
                )
            )
        )
    if conditions:
        stmt = stmt.where(and_(*conditions))
    return stmt.order_by(*_order_by(spec, params.sort))


def _typed_equal(col: Column, name: str, value: str) -> ColumnElement[bool]:
    equal: ColumnElement[bool] = col == coerce(col, value, name)
    return equal


_INT_RANGE = (-(2**31), 2**31 - 1)


def coerce(col: Column, value: Any, field: str) -> Any:
    """Turn a query value into the column's type, or raise a 400 (never let the database
    reject it: that would be a 500)."""
    if value is None:
        return None
    try:
        python_type: type | None = col.type.python_type
    except NotImplementedError:
        python_type = None
    try:
        if python_type is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false", "1", "0"):
                return str(value).lower() in ("true", "1")
            raise ValueError(value)
        if python_type is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            number = int(value)
            if not _INT_RANGE[0] <= number <= _INT_RANGE[1]:
                raise ValueError(value)
            return number
        if python_type is datetime:
            parsed = datetime.fromisoformat(str(value))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        if python_type is str:
            if isinstance(value, dict | list):
                raise ValueError(value)
            text = str(value)
            if "\x00" in text:
                raise ValueError(value)
            return text
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Invalid value {value!r} for {field}.", field=field) from exc
    return value


def _order_by(spec: ListSpec, sort: str | None) -> list[ColumnElement[Any]]:
    if not sort:
        return list(spec.default_sort)
    order: list[ColumnElement[Any]] = []
    for raw in sort.split(","):
        key = raw.strip()
        desc = key.startswith("-")
        key = key.lstrip("-")
        if key not in spec.sort_fields:
            raise InvalidInput(
                f"Unknown sort field {key!r}. Allowed: {', '.join(sorted(spec.sort_fields))}",
                field="sort",
            )
        col = spec.sort_fields[key]
        order.append(col.desc() if desc else col.asc())
    return [*order, *spec.default_sort]


def paginate(session: Session, stmt: AnySelect, page: int, page_size: int) -> tuple[int, list[Any]]:
    """Total count and the rows of one page (1-based); a page past the end is a 404, as in DRF."""
    # Count over the ids only: the page's columns (subqueries, joined names) are not needed.
    lean = stmt.with_only_columns(*stmt.selected_columns[:1]).order_by(None)
    count = session.scalar(select(func.count()).select_from(lean.subquery())) or 0
    if page > 1 and (page - 1) * page_size >= count:
        raise NotFound("Invalid page.")
    rows = session.execute(stmt.limit(page_size).offset((page - 1) * page_size)).all()
    return count, list(rows)
