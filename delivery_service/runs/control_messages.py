"""What control (runs/task_control.py) says in both modes: its refusals (`ServiceError`s) and the System
events it publishes. A full line is counted by each mode's dispatch, in its own words."""

from __future__ import annotations

from typing import Any

from delivery_service.agents import AGENTS
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


def revisions_exhausted(task_id: str, revisions: int) -> str:
    return (
        f"The analysis of task {task_id} was already revised {revisions} times (MAX_REVISIONS). "
        "Approve it, or cancel the task and submit a clearer requirement."
    )


def decision(approved: bool, feedback: str, revision: int, max_revisions: int) -> tuple[str, dict[str, Any]]:
    """The `action` event (content, metadata) that resumes a task after a decision on its analysis."""
    if approved:
        return "The analysis was approved: the delivery continues.", {"kind": "resumed", "decision": "approved"}
    return (
        f"The analysis was rejected with feedback: the {AGENTS[0].name} revises it (revision {revision} of "
        f"{max_revisions}).",
        {"kind": "resumed", "decision": "rejected", "feedback": feedback, "revision": revision},
    )


CANCELLED_ON_REQUEST = ("The task was cancelled at the requester's request.", {"reason": "requested"})


def timed_out(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The `error` (content, metadata) of a task that ran past TASK_TIMEOUT_SECONDS."""
    return (
        f"The task ran longer than TASK_TIMEOUT_SECONDS={settings.task_timeout_seconds:g} s, so it was "
        "stopped. Raise TASK_TIMEOUT_SECONDS for long runs, or submit a smaller requirement.",
        {"error_type": "task_timeout"},
    )


def decision_expired(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The `cancelled` (content, metadata) of a task nobody confirmed within CONFIRMATION_TIMEOUT_SECONDS."""
    return (
        "No decision on the requirements analysis arrived within CONFIRMATION_TIMEOUT_SECONDS="
        f"{settings.confirmation_timeout_seconds:g} s, so the task was cancelled. Submit it again, "
        "or start it with skip_confirmation: true.",
        {"reason": "confirmation_timeout"},
    )


def worker_lost(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The `error` (content, metadata) of a task whose worker stopped renewing its lease (cluster)."""
    return (
        "The worker running this task's crew stopped answering (no sign of life for WORKER_LEASE_SECONDS="
        f"{settings.worker_lease_seconds:g} s) before the crew finished, so the task stopped. What it produced so "
        "far is kept; submit the requirement again. If it keeps happening, check the workers' logs and memory.",
        {"error_type": "worker_died"},
    )
