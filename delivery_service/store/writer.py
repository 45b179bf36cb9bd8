"""Makes events durable before anyone sees them, in batches, on one thread of its own.

The writer thread applies everything that has arrived to its tasks' records, stores records, events and
webhook messages in one transaction (group commit), and only then hands the batch to the event loop, so a
client's Last-Event-ID is always a stored sequence. A failed write puts the records back as they were and
is retried with backoff; `failure` says why meanwhile (/readyz reports it).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from delivery_service.store.base import StoreUnavailable, TaskStore
from delivery_service.store.outbox import messages_for
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import EncodedEvent

logger = logging.getLogger(__name__)

RETRY_FIRST_SECONDS = 0.2
RETRY_MAX_SECONDS = 5.0


class EventTarget(Protocol):
    """Where a stored event goes: its task's record and, after storage, its stream."""

    record: TaskRecord


@dataclass(slots=True)
class PendingEvent:
    target: EventTarget
    encoded: EncodedEvent
    published: float = field(default_factory=time.time)


@dataclass
class PendingTask:
    record: TaskRecord
    stored: Future[None] = field(default_factory=Future)


_CLOSE = object()

Deliver = Callable[[list[PendingEvent]], None]


class EventWriter:
    def __init__(
        self, store: TaskStore, loop: asyncio.AbstractEventLoop, deliver: Deliver, public_url: str = ""
    ) -> None:
        self._store = store
        self._public_url = public_url  # for the links in webhook messages
        self._loop = loop
        self._deliver = deliver
        self._queue: queue.SimpleQueue[PendingEvent | PendingTask | object] = queue.SimpleQueue()
        self.failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def create_task(self, record: TaskRecord) -> Future[None]:
        """Store a new task; the future completes once it is durable (or fails with StoreUnavailable)."""
        pending = PendingTask(record)
        self._queue.put(pending)
        return pending.stored

    def submit(self, target: EventTarget, encoded: EncodedEvent) -> None:
        """Queue one event for storage and delivery (thread-safe, never blocks)."""
        self._queue.put(PendingEvent(target, encoded))

    def close(self) -> None:
        """Store and deliver what is queued, then stop the thread (blocking: call off the loop)."""
        self._queue.put(_CLOSE)
        self._thread.join()

    def _take(self, timeout: float | None) -> list[PendingEvent | PendingTask | object]:
        """Everything queued, waiting up to `timeout` (None: for ever) for the first item."""
        try:
            items = [self._queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while not self._queue.empty():  # this thread alone takes from the queue
            items.append(self._queue.get_nowait())
        return items

    def _run(self) -> None:
        unsaved: list[PendingEvent] = []
        delay = RETRY_FIRST_SECONDS
        retry_in: float | None = None  # while a failed batch waits: how long before the next attempt
        closing = False
        while True:
            batch = [] if closing else self._take(timeout=retry_in)
            closing = closing or _CLOSE in batch
            new_tasks = [item for item in batch if isinstance(item, PendingTask)]
            unsaved += [item for item in batch if isinstance(item, PendingEvent)]
            if not new_tasks and not unsaved:
                if closing:
                    return
                continue
            records = list({item.target.record.task_id: item.target.record for item in unsaved}.values())
            before = [record.snapshot() for record in records]
            changed: dict[str, TaskRecord] = {}
            messages = []
            for item in unsaved:
                record = item.target.record
                if record.apply(item.encoded.event):
                    changed[record.task_id] = record
                messages += messages_for(record, item.encoded.event, self._public_url)
            try:
                self._store.save(
                    [task.record for task in new_tasks] + list(changed.values()),
                    [item.encoded for item in unsaved],
                    messages,
                )
            except StoreUnavailable as exc:
                for record, previous in zip(records, before, strict=True):
                    record.restore(previous)
                self.failure = str(exc)
                logger.error("storing events failed, will retry: %s", exc)
                for task in new_tasks:
                    task.stored.set_exception(exc)
                if closing:
                    logger.error("%d events could not be stored before shutdown: %s", len(unsaved), exc)
                    return
                retry_in, delay = delay, min(delay * 2, RETRY_MAX_SECONDS)
                continue
            delay, retry_in = RETRY_FIRST_SECONDS, None
            self.failure = None
            for task in new_tasks:
                task.stored.set_result(None)
            if unsaved:
                self._loop.call_soon_threadsafe(self._deliver, unsaved)
                unsaved = []
            if closing:
                return
