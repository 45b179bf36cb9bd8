"""What admission and control say in both modes: the refusals (their exceptions and words) and the queued notice.

Control (runs/task_control.py) refuses the same requests in the same words in both modes (a full line
is counted by each mode's dispatch, in its own words); each refusal is a `ServiceError`
(service_errors.py), which carries its status code and Retry-After to every front door.
"""

from __future__ import annotations

from typing import Any

from delivery_service.service_errors import Conflict, LimitReached
from delivery_service.settings import Settings

QUEUE_FULL_RETRY_AFTER_SECONDS = 30


class QueueFull(LimitReached):
    """Every worker slot is busy and the waiting line is full (the message says which limit)."""

    retry_after = QUEUE_FULL_RETRY_AFTER_SECONDS


class ThreadFull(Conflict):
    """The thread already has MAX_THREAD_REVISIONS revisions."""

    def __init__(self, settings: Settings, thread_id: str) -> None:
        super().__init__(
            f"Thread {thread_id} already has {settings.max_thread_revisions} revisions (MAX_THREAD_REVISIONS): start "
            "a new task with the whole requirement, or raise MAX_THREAD_REVISIONS."
        )


class NotAwaitingConfirmation(Conflict):
    """A decision was sent for a task that is not waiting for one."""


def not_awaiting(task_id: str) -> NotAwaitingConfirmation:
    return NotAwaitingConfirmation(f"Task {task_id} is not waiting for a confirmation.")


def queued_notice(position: int | None) -> tuple[str, dict[str, Any]]:
    """The `action` event of a task put in line behind others: its content and metadata."""
    return f"Waiting for a worker: position {position} in the queue.", {"kind": "queued", "queue_position": position}
