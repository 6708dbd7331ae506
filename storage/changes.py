"""The one hook every domain change passes through.

A service that creates, updates or deletes something the outside world can watch (a task, a
job, a membership, ...) calls :func:`record` with a :class:`Change`, inside the session that
makes the change. Every registered consumer then runs in that same session, so what it writes
(a webhook delivery to make, an analytics event to ship) is an outbox row that commits with the
change and disappears with a rollback. Consumers never do I/O here: they only add rows; the
sending happens later, from the outbox, in a background worker woken after commit.

Consumers register once per process (``register``), by name; the API app and the background
workers import the modules that register them. The hook knows nothing of webhooks or
analytics: adding a third consumer is one ``register`` call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from cvat_ray.storage.context import RequestContext

logger = logging.getLogger("cvat_ray.changes")

JsonObject = Mapping[str, Any]


@dataclass(frozen=True)
class Actor:
    """Who made the change (``None`` fields for the system itself)."""

    user_id: int | None = None
    username: str | None = None
    org_id: int | None = None
    access_token_id: int | None = None
    request_id: str | None = None
    # The client's address (added for analytics events; None outside a request).
    remote_addr: str | None = None
    # The user's display names where the request's credential lookup read them.
    first_name: str | None = None
    last_name: str | None = None

    @classmethod
    def of(cls, ctx: RequestContext | None) -> Actor:
        if ctx is None:
            return cls()
        return cls(
            user_id=ctx.principal.user_id,
            username=ctx.principal.username,
            org_id=ctx.org.org_id,
            access_token_id=ctx.principal.access_token_id,
            request_id=ctx.request_id or None,
            remote_addr=ctx.remote_addr or None,
            first_name=ctx.principal.first_name,
            last_name=ctx.principal.last_name,
        )


@dataclass(frozen=True)
class Scope:
    """The objects a change belongs to, resolved by the service (also for cascades)."""

    org_id: int | None = None
    project_id: int | None = None
    task_id: int | None = None
    job_id: int | None = None


@dataclass(frozen=True)
class Change:
    """One domain change.

    ``action`` is CVAT's verb (``create``, ``update``, ``delete``, ``completed``, ``call``, ...)
    and ``resource`` CVAT's resource name (``task``, ``job``, ``membership``, ``request``, ...),
    so ``scope`` reads like CVAT's event scopes and webhook event keys (``update:task``).
    ``after`` is the resource as the API shows it after the change (``None`` for a delete);
    ``before`` as it was before (``None`` for a create). Both are JSON-ready dicts.
    """

    action: str
    resource: str
    after: JsonObject | None = None
    before: JsonObject | None = None
    scope_ids: Scope = field(default_factory=Scope)
    actor: Actor = field(default_factory=Actor)
    # Anything a consumer needs that is not the resource itself (e.g. annotation counts).
    extra: JsonObject = field(default_factory=dict)

    @property
    def scope(self) -> str:
        return f"{self.action}:{self.resource}"

    @property
    def subject(self) -> JsonObject | None:
        """The object the change is about: after it, or before it for a delete."""
        return self.after if self.after is not None else self.before

    def changed_fields(self) -> dict[str, Any]:
        """For an update: each top-level field whose value changed, with its old value."""
        if self.before is None or self.after is None:
            return {}
        return {
            name: self.before.get(name)
            for name, value in self.after.items()
            if name in self.before and self.before.get(name) != value
        }


Consumer = Callable[[Session, Change], None]

_lock = threading.Lock()
_consumers: dict[str, Consumer] = {}


def register(name: str, consumer: Consumer) -> None:
    """Add (or replace) the consumer called ``name``."""
    with _lock:
        _consumers[name] = consumer


def unregister(name: str) -> None:
    with _lock:
        _consumers.pop(name, None)


def consumers() -> dict[str, Consumer]:
    with _lock:
        return dict(_consumers)


def record(session: Session, change: Change) -> None:
    """Hand ``change`` to every consumer, in the caller's transaction.

    A consumer that raises fails the change itself: an outbox row that could not be written
    must not let the change commit without it (that is the "never lost" contract)."""
    for consumer in consumers().values():
        consumer(session, change)
