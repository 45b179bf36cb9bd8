"""What the rest of the service needs from a task store. Writes come from one thread, the `EventWriter`'s;
reads from worker threads (`asyncio.to_thread`), never from the event loop."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from delivery_service.service_errors import Unavailable
from delivery_service.store.outbox import Outbox, OutboxMessage
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import EncodedEvent


class StoreUnavailable(Unavailable):
    """The store cannot be opened, read or written; the message says what to do (503, Retry-After 30)."""


class TaskReads(Protocol):
    """What every mode's store answers (blocking: call off the event loop)."""

    def task(self, task_id: str) -> TaskRecord | None:
        """A task with its deliverables, or None."""

    def tasks(self, limit: int, offset: int, owner: str | None) -> tuple[list[TaskRecord], int]:
        """Tasks newest first (without deliverables), and how many there are; only `owner`'s unless None."""

    def thread(self, thread_id: str) -> list[TaskRecord]:
        """The tasks of a thread (its first task and every follow-up), oldest first, without deliverables."""

    def waive(self, task_id: str, waiver: dict[str, str], messages: Sequence[OutboxMessage]) -> bool:
        """Record a person's waiver of a completed task's gate with the webhook messages it causes, all or
        nothing; False if the task has a waiver already (the one write outside the task's event log)."""

    def purge_finished_before(self, timestamp: str) -> int:
        """Delete tasks finished before `timestamp` (ISO 8601 UTC) with their events; how many went."""

    def check(self) -> None:
        """Raise StoreUnavailable unless the store answers (SQLite: from the files it opened)."""

    def close(self) -> None: ...


class TaskStore(TaskReads, Protocol):
    """The embedded mode's store: the reads, and what its event writer and start-up need."""

    outbox: Outbox  # the webhook messages `save` stored, for the sender and the delivery log

    def save(
        self, records: list[TaskRecord], events: list[EncodedEvent], messages: Sequence[OutboxMessage] = ()
    ) -> None:
        """Store task records, new events and the webhook messages they cause, all or nothing (a record's
        `last_sequence` need not be stored: reads take it from the events)."""

    def event_payloads(self, task_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        """(sequence, JSON) of a task's events with a sequence above `after`, in order."""

    def unfinished(self) -> list[TaskRecord]:
        """Tasks stored as queued, running or awaiting confirmation."""

    def checkpoint(self) -> None:
        """Fold recent writes into the main database file, off the write path (blocking: call off the loop)."""
