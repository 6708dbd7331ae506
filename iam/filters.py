"""A tiny filter language that policies produce for list endpoints.

The storage layer compiles it to SQL, so lists are filtered in the database and never by
loading rows and filtering them in Python. Field names are dotted paths relative to the
listed resource (``owner_id``, ``project.assignee_id``, ``task.owner_id``); each list query
declares which paths it can resolve.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Everything:
    pass


@dataclass(frozen=True)
class Nothing:
    pass


@dataclass(frozen=True)
class Eq:
    field: str
    value: int | str | None


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Filter, ...]


@dataclass(frozen=True)
class AllOf:
    items: tuple[Filter, ...]


Filter = Everything | Nothing | Eq | AnyOf | AllOf

EVERYTHING = Everything()
NOTHING = Nothing()


def any_of(*items: Filter) -> Filter:
    kept = [i for i in items if not isinstance(i, Nothing)]
    if any(isinstance(i, Everything) for i in kept):
        return EVERYTHING
    if not kept:
        return NOTHING
    return kept[0] if len(kept) == 1 else AnyOf(tuple(kept))


def all_of(*items: Filter) -> Filter:
    kept = [i for i in items if not isinstance(i, Everything)]
    if any(isinstance(i, Nothing) for i in kept):
        return NOTHING
    if not kept:
        return EVERYTHING
    return kept[0] if len(kept) == 1 else AllOf(tuple(kept))
