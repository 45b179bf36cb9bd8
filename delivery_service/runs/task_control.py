"""Task control, written once for both modes: `TaskControl` decides; two ports, each mode's one object, do.

- `TaskLog`: a task's event log with a *conditional append*: refused once the task has its terminal
  event, and with a `Condition` only while it holds, which it consumes; so a confirm racing a confirm,
  or a cancel racing a timeout, has exactly one winner.
- `PhaseDispatch`: puts a phase of a task in line and hands it to a worker.

Every deadline is recorded with the task by its mode and ended by `sweep`, the one place that turns an
overdue deadline into the task's terminal event (cluster workers also stop a crew at TASK_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from delivery_service.llm.providers import model_info
from delivery_service.runs.control_messages import (
    CANCELLED_ON_REQUEST,
    NotAwaitingConfirmation,
    ThreadFull,
    decision,
    decision_expired,
    not_awaiting,
    queued_notice,
    revisions_exhausted,
    timed_out,
    worker_lost,
)
from delivery_service.runs.phases import Phase, PhaseWork
from delivery_service.service_errors import ServiceStopping
from delivery_service.settings import Settings
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.records import FollowUp, TaskRecord, WebhookTarget
from delivery_service.store.task_event import EventType

logger = logging.getLogger(__name__)

# For metrics: the status of every task not yet ended, how many wait, busy workers, all workers.
Load = tuple[list[str], int, int, int]

SHUTDOWN_MESSAGE = (
    "The server was stopped while this task was running, so the task did not finish. What it produced so far "
    "is kept; submit the requirement again to run it anew."
)
NOT_DISPATCHED = (
    "The task could not be handed to a worker (the message broker did not answer), so it did not run. "
    "Submit it again shortly.",
    {"error_type": "broker_unavailable"},
)


class Condition(enum.Enum):
    """What must hold for an append to go ahead; the append consumes it."""

    AWAITING = "awaiting"  # the task waits for a decision (confirm)
    DECISION_EXPIRED = "decision_expired"  # ... and its deadline has passed (CONFIRMATION_TIMEOUT_SECONDS)
    LEASE_EXPIRED = "lease_expired"  # its worker's lease has run out (cluster: the worker is gone)
    TASK_EXPIRED = "task_expired"  # it has run for TASK_TIMEOUT_SECONDS (embedded; cluster workers time out)


class AppendRefused(enum.IntEnum):
    """Why an append was refused (an append's result is its sequence, or one of these)."""

    ENDED = 0
    TOO_LARGE = -1
    UNKNOWN_TASK = -2
    CONDITION_FAILED = -3


# The terminal event (type, its words) that ends a task whose deadline passed.
OVERDUE: dict[Condition, tuple[EventType, Callable[[Settings], tuple[str, dict[str, Any]]]]] = {
    Condition.LEASE_EXPIRED: (EventType.ERROR, worker_lost),
    Condition.DECISION_EXPIRED: (EventType.CANCELLED, decision_expired),
    Condition.TASK_EXPIRED: (EventType.ERROR, timed_out),
}


def follow_up_of(parent: TaskRecord, request: str, revision: int) -> FollowUp:
    """A follow-up of `parent` (a completed task), starting from a copy of its deliverables."""
    return FollowUp(parent.task_id, parent.thread_id, revision, request, tuple(parent.deliverables), parent.revision)


@dataclass(frozen=True)
class TaskRequest:
    requirement: str
    skip_confirmation: bool
    stream_tokens: bool
    priority: int
    owner: str | None = None
    webhooks: tuple[WebhookTarget, ...] = ()

    def new_record(self, model: dict[str, Any], follow_up: FollowUp | None = None) -> TaskRecord:
        """The record of a new task for this request, with a fresh id."""
        return TaskRecord(
            task_id=str(uuid.uuid4()),
            requirement=self.requirement,
            skip_confirmation=self.skip_confirmation,
            stream_tokens=self.stream_tokens,
            priority=self.priority,
            model=model,
            owner=self.owner,
            follow_up=follow_up,
            webhooks=self.webhooks,
        )


class TaskLog(Protocol):
    """The tasks' records and event logs, as control needs them (every method on the event loop)."""

    async def create(self, record: TaskRecord, dispatch_id: str) -> None:
        """Store a new task, whose first phase goes out as `dispatch_id` (StoreUnavailable)."""

    async def append(
        self,
        task_id: str,
        event_type: EventType,
        content: str,
        metadata: dict[str, Any],
        condition: Condition | None = None,
        handover: tuple[PhaseWork, str] | None = None,
    ) -> int:
        """Append a System event unless the task has ended or `condition` does not hold: its sequence, or
        an `AppendRefused` code (<= 0). `handover` (the work, the next dispatch id) is saved with it."""

    def revision(self, thread_id: str) -> AbstractAsyncContextManager[int]:
        """The next revision number of a thread, given out to one follow-up at a time."""

    async def awaiting(self, task_id: str) -> tuple[PhaseWork, int] | None:
        """The work and priority of a task waiting for a decision, or None."""

    async def overdue(self) -> list[tuple[str, Condition]]:
        """The tasks whose deadline has passed, with the condition that says which."""

    def sweep_at_deadlines(self, sweep: Callable[[], Awaitable[None]]) -> None:
        """Have `sweep` run when a deadline passes (if this log can tell; else the sweep loop polls)."""


class PhaseDispatch(Protocol):
    """Where the phases of tasks wait for and run on workers."""

    async def check_room(self) -> None:
        """Raise QueueFull when the waiting line is full."""

    async def line_up(self, task_id: str, phase: Phase, priority: int) -> int | None:
        """Put a phase in line (and start what can start): its position if it has to wait, else None."""

    async def send(self, task_id: str, phase: Phase, dispatch_id: str, priority: int) -> None:
        """Hand the phase to the workers (StoreUnavailable when they cannot be reached)."""

    async def position(self, task_id: str) -> int | None: ...

    async def stop_crew(self, task_id: str) -> None:
        """After a cancel: make sure the task's crew stops."""

    async def stop(self, grace_seconds: float) -> list[str]:
        """Start no more phases, give running ones `grace_seconds`: the tasks of this process still unfinished."""

    async def refresh(self) -> None:
        """Forget dead workers and recount the load (each sweep)."""

    def load(self) -> Load: ...

    async def close(self) -> None: ...


class Runner(TaskLog, PhaseDispatch, Protocol):
    """Both ports, which each mode implements in one object."""


class TaskControl:
    """Admission and control of tasks over a mode's `Runner`; see the module docstring."""

    def __init__(self, settings: Settings, runner: Runner) -> None:
        self._settings = settings
        self._log: TaskLog = runner
        self._dispatch: PhaseDispatch = runner
        self.model = model_info(settings)
        self.accepting = True
        runner.sweep_at_deadlines(self.sweep)

    def load(self) -> Load:
        return self._dispatch.load()

    async def queue_position(self, task_id: str) -> int | None:
        return await self._dispatch.position(task_id)

    async def start(self, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """The stored task's record and whether it waits for a worker (ServiceStopping, QueueFull, StoreUnavailable)."""
        return await self._admit(request, None)

    async def _admit(self, request: TaskRequest, follow_up: FollowUp | None) -> tuple[TaskRecord, bool]:
        if not self.accepting:
            raise ServiceStopping()
        await self._dispatch.check_room()
        record = request.new_record(self.model.public(), follow_up)
        dispatch_id = uuid.uuid4().hex
        await self._log.create(record, dispatch_id)
        return record, await self._enqueue(record.task_id, Phase.ANALYSIS, dispatch_id, record.priority)

    async def follow_up(self, parent: TaskRecord, text: str, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """Start a follow-up of `parent` with its thread's next revision number (ThreadFull beyond
        MAX_THREAD_REVISIONS); otherwise as `start`."""
        async with self._log.revision(parent.thread_id) as revision:
            if revision > self._settings.max_thread_revisions:
                raise ThreadFull(self._settings, parent.thread_id)
            return await self._admit(request, follow_up_of(parent, text, revision))

    async def cancel(self, task_id: str) -> bool:
        """End a task that has not ended with `cancelled`; False (and no change) if it had already ended."""
        if await self._log.append(task_id, EventType.CANCELLED, *CANCELLED_ON_REQUEST) <= 0:
            return False
        await self._dispatch.stop_crew(task_id)
        return True

    async def confirm(self, task_id: str, approved: bool, feedback: str) -> None:
        """Continue a task waiting for confirmation, or have its analysis revised (NotAwaitingConfirmation)."""
        waiting = await self._log.awaiting(task_id)
        if waiting is None:
            raise not_awaiting(task_id)
        work, priority = waiting
        if not approved and work.revisions >= self._settings.max_revisions:
            raise NotAwaitingConfirmation(revisions_exhausted(task_id, work.revisions))
        if not approved:
            work.revisions += 1
            work.feedback = feedback
        dispatch_id = uuid.uuid4().hex
        content, metadata = decision(approved, feedback, work.revisions, self._settings.max_revisions)
        appended = await self._log.append(
            task_id, EventType.ACTION, content, metadata, Condition.AWAITING, (work, dispatch_id)
        )
        if appended <= 0:
            raise not_awaiting(task_id)
        await self._enqueue(task_id, Phase.DELIVERY if approved else Phase.ANALYSIS, dispatch_id, priority)

    async def drain(self, grace_seconds: float) -> int:
        """Stop taking tasks, let this process's running ones finish for up to `grace_seconds`, then end
        every one still unfinished with an `error` saying the server stopped; how many were ended so."""
        self.accepting = False
        ended = 0
        for task_id in await self._dispatch.stop(grace_seconds):
            error = {"error_type": "server_stopped"}
            ended += await self._log.append(task_id, EventType.ERROR, SHUTDOWN_MESSAGE, error) > 0
        return ended

    async def sweep(self) -> None:
        """End every task whose deadline has passed with its terminal event, then refresh the load."""
        for task_id, condition in await self._log.overdue():
            event_type, words = OVERDUE[condition]
            if await self._log.append(task_id, event_type, *words(self._settings), condition) > 0:
                logger.warning("task %s ended with %s: %s", task_id, event_type.value, condition.value)
        await self._dispatch.refresh()

    async def sweep_forever(self, period: float) -> None:
        """`sweep` every `period` seconds (the cluster's replicas, where deadlines are polled)."""
        while True:
            try:
                await self.sweep()
            except StoreUnavailable as exc:
                logger.warning("sweeping tasks failed: %s", exc)
            await asyncio.sleep(period)

    async def close(self) -> None:
        await self._dispatch.close()

    async def _enqueue(self, task_id: str, phase: Phase, dispatch_id: str, priority: int) -> bool:
        """Put a phase in line, with the queued notice if it waits, and hand it over; whether it waits."""
        try:
            position = await self._dispatch.line_up(task_id, phase, priority)
            if position is not None:  # before the phase is sent, so no worker can have started it yet
                await self._log.append(task_id, EventType.ACTION, *queued_notice(position))
            await self._dispatch.send(task_id, phase, dispatch_id, priority)
        except StoreUnavailable as exc:
            await self._log.append(task_id, EventType.ERROR, *NOT_DISPATCHED)
            raise StoreUnavailable(f"The task could not be queued: {exc}") from exc
        return position is not None
