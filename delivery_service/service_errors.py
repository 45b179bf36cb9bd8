"""The failures every front door reports alike: which failure, which status, which Retry-After.

A `ServiceError`'s message says what happened and what to do; `status` is its HTTP status, `retry_after`
its Retry-After seconds (None: no header). The table is docs/api.md's "Which failure, which status, which
Retry-After". The store and the runners raise them too, so this module imports nothing of ours.
"""

from __future__ import annotations


class ServiceError(Exception):
    """A request the service refuses; the message says what happened and what to do."""

    status: int = 500
    retry_after: int | None = None

    @property
    def detail(self) -> object:
        """The `detail` of the JSON error body."""
        return str(self)


class InvalidRequest(ServiceError):
    """One field of the request is refused: the body is FastAPI's validation list, `loc` naming the field."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field

    @property
    def detail(self) -> object:
        return [{"loc": ["body", self.field], "msg": str(self), "type": "value_error"}]


class NotFound(ServiceError):
    """No such thing for this caller (another key's task does not exist for it)."""

    status = 404


class Conflict(ServiceError):
    """The task is not in the state the request needs (not waiting for a decision, not finished...)."""

    status = 409


class LimitReached(ServiceError):
    """A limit of this client or of the service was reached; retry after `retry_after` seconds."""

    status = 429
    retry_after = 5

    def __init__(self, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after


class Unavailable(ServiceError):
    """The task store (SQLite, or Redis in the cluster mode) cannot answer now."""

    status = 503
    retry_after = 30


class ServiceStopping(ServiceError):
    """The service is shutting down and takes no new tasks."""

    status = 503
    retry_after = 5

    def __init__(self) -> None:
        super().__init__("The service is shutting down and takes no new tasks. Submit the task again shortly.")
