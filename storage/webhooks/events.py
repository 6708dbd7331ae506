"""CVAT 2.80's webhook event keys (SDK ``EventsEnum``) and who may subscribe to what."""

from __future__ import annotations

from typing import Literal

WebhookType = Literal["organization", "project", "server"]
WEBHOOK_TYPES: tuple[str, ...] = ("organization", "project", "server")

_CRUD = ("create", "update", "delete")

# background requests whose completion (finished or failed) fires an event
REQUEST_OPERATIONS: tuple[str, ...] = (
    "calculate:quality",
    "create:task",
    "export:annotations",
    "export:backup",
    "export:dataset",
    "merge:job",
    "merge:task",
)


def request_event(operation_type: str) -> str:
    return f"completed:request[{operation_type}]"


_RESOURCES = ("task", "project", "job", "issue", "comment", "membership", "organization", "user")

ALL_EVENTS: frozenset[str] = frozenset(
    [f"{a}:{r}" for a in _CRUD for r in _RESOURCES]
    + ["create:invitation", "delete:invitation"]
    + [request_event(op) for op in REQUEST_OPERATIONS]
)

# Project webhooks: what happens inside the project (no create:project, no organization,
# membership or invitation events), as in CVAT.
_PROJECT_EVENTS = frozenset(
    [f"{a}:{r}" for a in _CRUD for r in ("task", "job", "issue", "comment")]
    + ["update:project", "delete:project"]
    + [request_event(op) for op in REQUEST_OPERATIONS]
)

# Organization webhooks: everything of the organization. An organization webhook is deleted
# with its organization, so it can never see the organization's creation or deletion; user
# accounts belong to no organization (server webhooks see them).
_ORGANIZATION_EVENTS = ALL_EVENTS - {
    "create:organization",
    "delete:organization",
    "create:user",
    "update:user",
    "delete:user",
}

EVENTS_BY_TYPE: dict[str, frozenset[str]] = {
    "project": _PROJECT_EVENTS,
    "organization": _ORGANIZATION_EVENTS,
    "server": ALL_EVENTS,
}

_GROUPS = {
    "task": "Task",
    "project": "Project",
    "job": "Job",
    "issue": "Issue",
    "comment": "Comment",
    "membership": "Membership",
    "organization": "Organization",
    "user": "User",
    "invitation": "Invitation",
}


def group_of(key: str) -> str:
    """The display group of an event key (``/api/webhooks/events``)."""
    if key.startswith("completed:request"):
        return "Requests"
    return _GROUPS.get(key.partition(":")[2], key.partition(":")[2].title())


def events_of(webhook_type: str) -> list[str]:
    """Sorted keys a webhook of this type (or ``all``) may subscribe to."""
    if webhook_type == "all":
        return sorted(ALL_EVENTS)
    return sorted(EVENTS_BY_TYPE[webhook_type])


def invalid_events(webhook_type: str, events: list[str]) -> list[str]:
    allowed = EVENTS_BY_TYPE[webhook_type]
    return sorted({e for e in events if e not in allowed})
