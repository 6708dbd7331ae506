"""The application's error tree.

Services raise these; the API renders them in the shapes CVAT clients parse
(``{"detail": "..."}`` or ``{"field": ["message", ...]}``). Nothing else may reach HTTP:
an unexpected exception is a bug and is reported as a 500 with a request id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class AppError(Exception):
    """Base of every error a client may see. ``status`` is the HTTP status code."""

    status: int = 400
    default_detail: str = "Bad request"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def body(self) -> object:
        return {"detail": self.detail}


class NotAuthenticated(AppError):
    """No credentials, or credentials that do not identify an active user (401)."""

    status = 401
    default_detail = "Authentication credentials were not provided."


class PermissionDenied(AppError):
    """The caller is known but the policy refuses the action (403)."""

    status = 403
    default_detail = "You do not have permission to perform this action."


class NotFound(AppError):
    """The object does not exist, or the caller may not know it exists (404)."""

    status = 404
    default_detail = "Not found."


class Conflict(AppError):
    """The request contradicts the current state (409), e.g. a duplicate unique name."""

    status = 409
    default_detail = "Conflict."


class PayloadTooLarge(AppError):
    """The request body is larger than the server accepts (413)."""

    status = 413
    default_detail = "Request body is too large."


class TooManyRequests(AppError):
    """The caller is throttled (429); ``retry_after`` seconds become a Retry-After header."""

    status = 429
    default_detail = "Request was throttled."

    def __init__(self, detail: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(AppError):
    """A dependency (directory, cluster, storage) cannot be reached right now (503)."""

    status = 503
    default_detail = "Service temporarily unavailable."


class InvalidInput(AppError):
    """Input failed validation (400). ``fields`` maps a field path to its messages."""

    status = 400
    default_detail = "Invalid input."

    def __init__(
        self,
        fields: Mapping[str, Sequence[str]] | str | None = None,
        field: str | None = None,
    ) -> None:
        if isinstance(fields, str):
            message = fields
            self.fields: dict[str, list[str]] = (
                {field: [message]} if field else {"non_field_errors": [message]}
            )
        else:
            self.fields = {k: list(v) for k, v in (fields or {}).items()}
            message = "; ".join(f"{k}: {' '.join(v)}" for k, v in self.fields.items())
        super().__init__(message or self.default_detail)

    def body(self) -> object:
        return self.fields
