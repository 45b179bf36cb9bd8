"""Makes events durable before anyone sees them, in batches, on one thread of its own.

Publishers (crew threads) hand sequenced events to `EventWriter.submit` and return at once. The
writer thread takes everything that has arrived, advances each task's record, stores records and
events in one transaction (group commit: one disk sync for many events), and only then hands the
batch to the event loop with `asyncio.run_coroutine_threadsafe`, where the streams show it to their
subscribers. So a client's Last-Event-ID is always a stored sequence, and neither a crew nor the loop
ever waits for the disk. If a write fails (disk full, database locked) the records are put back as
they were, and the batch is kept and retried with backoff; `failure` says why meanwhile, and /readyz
reports it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from task_events import TaskEvent
from task_records import TaskRecord
from task_store import StoreUnavailable, TaskStore

logger = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0


class EventTarget(Protocol):
    """Where a stored event goes: its task's record and, after storage, its stream."""

    record: TaskRecord


@dataclass
class PendingEvent:
    target: EventTarget
    event: TaskEvent
    frame: bytes
    published: float = field(default_factory=time.time)


@dataclass
class PendingTask:
    record: TaskRecord
    stored: Future[None] = field(default_factory=Future)


Deliver = Callable[[list[PendingEvent]], Awaitable[None]]


class EventWriter:
    """The single writer of a TaskStore; see the module docstring."""

    def __init__(self, store: TaskStore, loop: asyncio.AbstractEventLoop, deliver: Deliver) -> None:
        self._store = store
        self._loop = loop
        self._deliver = deliver
        self._condition = threading.Condition()
        self._pending: list[PendingEvent | PendingTask] = []
        self._closing = False
        self.failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def create_task(self, record: TaskRecord) -> Future[None]:
        """Store a new task; the future completes once it is durable (or fails with StoreUnavailable)."""
        pending = PendingTask(record)
        self._enqueue(pending)
        return pending.stored

    def submit(self, target: EventTarget, event: TaskEvent, frame: bytes) -> None:
        """Queue one event for storage and delivery (thread-safe, never blocks on I/O)."""
        self._enqueue(PendingEvent(target, event, frame))

    def _enqueue(self, item: PendingEvent | PendingTask) -> None:
        with self._condition:
            self._pending.append(item)
            if len(self._pending) == 1:
                self._condition.notify()

    def close(self) -> None:
        """Store and deliver what is queued, then stop the thread (blocking: call off the loop)."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join()

    def _run(self) -> None:
        unsaved: list[PendingEvent] = []
        delay = RETRY_FIRST_SECONDS
        while True:
            with self._condition:
                while not self._pending and not self._closing and not unsaved:
                    self._condition.wait()
                batch, self._pending = self._pending, []
                closing = self._closing
            new_tasks = [item for item in batch if isinstance(item, PendingTask)]
            unsaved += [item for item in batch if isinstance(item, PendingEvent)]
            if not new_tasks and not unsaved:
                if closing:
                    return
                continue
            records = _distinct_records(unsaved)
            before = [record.snapshot() for record in records]
            for item in unsaved:
                item.target.record.apply(item.event)
            try:
                self._store.save([task.record for task in new_tasks] + records, [item.event for item in unsaved])
            except StoreUnavailable as exc:
                for record, previous in zip(records, before, strict=True):
                    record.restore(previous)
                self._on_failure(exc, new_tasks)
                if closing:
                    logger.error("%d events could not be stored before shutdown: %s", len(unsaved), exc)
                    return
                with self._condition:
                    self._condition.wait(timeout=delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay = RETRY_FIRST_SECONDS
            self.failure = None
            for task in new_tasks:
                task.stored.set_result(None)
            if unsaved:
                asyncio.run_coroutine_threadsafe(self._deliver(unsaved), self._loop)
                unsaved = []

    def _on_failure(self, exc: StoreUnavailable, new_tasks: list[PendingTask]) -> None:
        self.failure = str(exc)
        logger.error("storing events failed, will retry: %s", exc)
        for task in new_tasks:
            task.stored.set_exception(exc)


def _distinct_records(items: list[PendingEvent]) -> list[TaskRecord]:
    records: dict[str, TaskRecord] = {}
    for item in items:
        records[item.target.record.task_id] = item.target.record
    return list(records.values())
