"""Values worked out once per object and found again by the object's identity.

An import's objects share a few objects among them (the attribute dict a reader gives every
annotation of the same values, the list of attribute values the sink makes of it), so each
step of the write path converts, checks or encodes such an object once. The object is kept
with its value, so its id cannot be reused by another object while the entry lives; the
number of entries is capped (a payload whose objects share nothing stops adding them).
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class ByIdentity(Generic[V]):
    """A value per object, by identity, for at most ``limit`` objects."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._found: dict[int, tuple[object, V]] = {}

    def get(self, obj: object) -> V | None:
        hit = self._found.get(id(obj))
        return None if hit is None else hit[1]

    def put(self, obj: object, value: V) -> V:
        if len(self._found) < self.limit:
            self._found[id(obj)] = (obj, value)
        return value
