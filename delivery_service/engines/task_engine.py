"""`TaskEngine`: what the layers above need from the service's engine, whichever mode runs it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, Protocol

from delivery_service.llm.providers import ModelInfo
from delivery_service.runs.task_control import Load, TaskRequest
from delivery_service.store.records import TaskRecord
from delivery_service.task_streams import StreamView
from delivery_service.webhooks.async_outbox import AsyncOutbox


class TaskEngine(Protocol):
    """The running service as the layers above see it. Store reads run off the event loop inside."""

    outbox: AsyncOutbox  # the webhook messages: the sender's work, the delivery log, redelivery
    rate_limit_storage: str | None  # where RATE_LIMIT's counters live (None: this process)
    stored_in: str  # where tasks are stored, in words for the start-up log

    @property
    def accepting(self) -> bool:
        """False once the service drains: no new tasks."""

    @property
    def model(self) -> ModelInfo: ...

    def load(self) -> Load: ...

    async def start(self, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """A new task: its record and whether it waits for a worker (ServiceStopping, QueueFull, StoreUnavailable)."""

    async def follow_up(self, parent: TaskRecord, text: str, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """A follow-up of `parent`, a completed task (also ThreadFull)."""

    async def cancel(self, task_id: str) -> bool:
        """End a task with `cancelled`; False if it had already ended."""

    async def confirm(self, task_id: str, approved: bool, feedback: str) -> None:
        """Decide on a task's analysis (NotAwaitingConfirmation unless it waits for a decision)."""

    async def waive(self, record: TaskRecord, waiver: dict[str, str]) -> bool:
        """Record a waiver of a completed task's gate and its `task.waived` messages; False if it has one."""

    async def queue_position(self, task_id: str) -> int | None: ...

    async def task(self, task_id: str) -> TaskRecord | None:
        """The task as its store has it, or None (StoreUnavailable)."""

    async def current_task(self, task_id: str) -> TaskRecord | None:
        """The task as the engine knows it now, or None: a record held live in memory, else the store's."""

    async def tasks(self, limit: int, offset: int, owner: str | None) -> tuple[list[TaskRecord], int]:
        """Tasks newest first, and how many there are; only `owner`'s unless None."""

    async def thread(self, thread_id: str) -> list[TaskRecord]:
        """A thread's tasks, oldest first."""

    async def settled(self, task_id: str) -> None:
        """Return once every event published for the task so far is stored and readable."""

    def frames_after(self, task_id: str, last_sequence: int) -> AsyncIterator[bytes]:
        """The task's SSE frames after `last_sequence`, replayed then live, until its terminal event."""

    def streams(self) -> Sequence[StreamView]:
        """The streams this process holds (for /api/streams and the subscriber gauge)."""

    async def readiness(self) -> dict[str, str]:
        """What /readyz reports: each check's name and "ok", or what is wrong."""

    async def drain(self, grace_seconds: float) -> int:
        """Stop taking tasks, give running ones `grace_seconds`, end the rest; how many were ended so."""

    def background_jobs(self) -> list[Coroutine[Any, Any, None]]:
        """The loops this mode runs while the service is up (the lifespan starts and cancels them)."""

    def wake_webhooks_with(self, wake: Callable[[], None]) -> None:
        """Call `wake` when stored events have caused webhook messages (if this mode can tell)."""

    async def close(self) -> None:
        """Deliver what is queued, then release the store, streams and connections."""
