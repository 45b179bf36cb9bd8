"""Per-task event streams: an ordered, append-only log with live fan-out to any number of subscribers.

Publishing sequences and frames an event once and hands it to the `EventWriter`, which stores it before
the loop shows it (`StreamManager.deliver`); the publisher never waits. Each subscriber walks the shared
log with its own cursor, so a slow one holds no one back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from delivery_service.observability.metrics import record_delivered
from delivery_service.store.base import TaskStore
from delivery_service.store.outbox import MESSAGE_TYPES
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import SYSTEM_AGENT, EncodedEvent, EventType, TaskEvent, sse_frame, utc_now_iso
from delivery_service.store.writer import EventWriter, PendingEvent

logger = logging.getLogger(__name__)

STORED_PAGE_EVENTS = 500

MAX_FRAMES_PER_WRITE = 256
_TRUNCATION_NOTE = "\n\n[... {omitted} characters omitted: the event exceeded MAX_EVENT_CONTENT_CHARS]"


class StreamLimitExceeded(RuntimeError):
    """The task produced more event data than MAX_STREAM_BYTES_PER_TASK allows."""


class EventSink:
    """What a crew's handler publishes a task's events to (a `TaskStream`, a crew process's pipe, a worker's
    Redis Stream). `ended` is set once the task has its terminal event; `publish` returns nothing after it."""

    def __init__(self) -> None:
        self.ended = threading.Event()

    @property
    def terminated(self) -> bool:
        """True once the terminal event is published (it may not be stored and delivered yet)."""
        return self.ended.is_set()

    def publish(
        self, agent_name: str, event_type: EventType, content: str = "", metadata: dict[str, Any] | None = None
    ) -> object:
        raise NotImplementedError

    def publish_system(self, event_type: EventType, content: str, metadata: dict[str, Any] | None = None) -> None:
        self.publish(SYSTEM_AGENT, event_type, content, metadata)


@dataclass(frozen=True)
class StreamLimits:
    """Memory bounds of one task's stream (see docs/performance.md, "Memory")."""

    max_stream_bytes: int
    max_event_content_chars: int


class StreamView:
    """The frames of one task's stream held in memory, walked by any number of subscribers (event loop only).
    Frames arrive in sequence order through `show`."""

    def __init__(self, record: TaskRecord) -> None:
        self.record = record
        self.task_id = record.task_id
        self.created_at = record.created_at
        self._frames: list[bytes] = []
        self._changed = asyncio.Event()
        self.finished = False
        self.finished_monotonic: float | None = None
        self.subscribers = 0

    @property
    def last_sequence(self) -> int:
        """The sequence of the last event visible to subscribers."""
        return len(self._frames)

    def show(self, frames: list[bytes], terminal: bool) -> None:
        """Make stored frames visible to subscribers (event loop only)."""
        self._frames.extend(frames)
        if terminal:
            self.finished = True
            self.finished_monotonic = time.monotonic()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def frames_after(self, last_sequence: int) -> AsyncIterator[bytes]:
        """SSE frames after `last_sequence`, up to MAX_FRAMES_PER_WRITE per write, live until the terminal one."""
        cursor = last_sequence
        self.subscribers += 1
        try:
            while True:
                available = len(self._frames)
                if cursor < available:
                    end = min(available, cursor + MAX_FRAMES_PER_WRITE)
                    yield self._frames[cursor] if end - cursor == 1 else b"".join(self._frames[cursor:end])
                    cursor = end
                elif self.finished:
                    return
                else:
                    await self._changed.wait()
        finally:
            self.subscribers -= 1


View = TypeVar("View", bound=StreamView)


class TaskStreams(Protocol):
    """What both modes' streams do: `StreamManager` here, `ClusterStreams` (cluster/replica_streams.py)."""

    @property
    def failure(self) -> str | None:
        """Why events cannot be stored or read right now, or None."""

    def frames_after(self, task_id: str, last_sequence: int) -> AsyncIterator[bytes]:
        """A task's SSE frames after `last_sequence`, replayed then live, until its terminal event."""

    def streams(self) -> Sequence[StreamView]:
        """The streams held in this process's memory."""

    def remove_expired(self) -> list[str]:
        """Forget finished streams older than the retention time that nobody is reading; their task ids."""

    async def close(self) -> None: ...


def release_expired(views: dict[str, View], retention_seconds: float) -> list[str]:
    """`TaskStreams.remove_expired` over `views`."""
    deadline = time.monotonic() - retention_seconds
    expired = [
        task_id
        for task_id, view in views.items()
        if view.finished
        and view.subscribers == 0
        and view.finished_monotonic is not None
        and view.finished_monotonic <= deadline
    ]
    for task_id in expired:
        del views[task_id]
    return expired


def bounded_content(content: str, limit: int) -> str:
    """An event's content cut to MAX_EVENT_CONTENT_CHARS, saying how much was cut."""
    if len(content) <= limit:
        return content
    return content[:limit] + _TRUNCATION_NOTE.format(omitted=len(content) - limit)


class TaskStream(StreamView, EventSink):
    """The event log of one task run in this process. `publish` is thread-safe."""

    def __init__(self, record: TaskRecord, writer: EventWriter, limits: StreamLimits) -> None:
        StreamView.__init__(self, record)
        EventSink.__init__(self)
        self._writer = writer
        self._limits = limits
        self._publish_lock = threading.Lock()
        self._next_sequence = record.last_sequence + 1
        self._stream_bytes = 0

    def publish(
        self, agent_name: str, event_type: EventType, content: str = "", metadata: dict[str, Any] | None = None
    ) -> TaskEvent | None:
        """Sequence and enqueue one event; None once the stream has ended. StreamLimitExceeded when a
        non-terminal event would pass the byte budget (terminal ones always fit, so every stream can end)."""
        content = bounded_content(content, self._limits.max_event_content_chars)
        with self._publish_lock:
            if self.ended.is_set():
                return None
            event = TaskEvent(
                task_id=self.task_id,
                sequence=self._next_sequence,
                agent_name=agent_name,
                event_type=event_type,
                content=content,
                timestamp=utc_now_iso(),
                metadata=metadata or {},
            )
            encoded = EncodedEvent.of(event)
            if not event.is_terminal and self._stream_bytes + len(encoded.frame) > self._limits.max_stream_bytes:
                raise StreamLimitExceeded(
                    f"task {self.task_id} produced more than {self._limits.max_stream_bytes} bytes of events"
                )
            self._next_sequence += 1
            self._stream_bytes += len(encoded.frame)
            if event.is_terminal:
                self.ended.set()
            self._writer.submit(self, encoded)
        return event

    async def caught_up(self) -> None:
        """Return once every event published so far is stored and visible (event loop only)."""
        while self.last_sequence < self._next_sequence - 1:
            await self._changed.wait()


class StreamManager:
    """All streams held in memory (live and recently finished tasks), their writer, and their retention."""

    def __init__(self, store: TaskStore, limits: StreamLimits, retention_seconds: float, public_url: str = "") -> None:
        self.store = store  # the store the writer writes to (reads: off the event loop)
        self._limits = limits
        self._retention_seconds = retention_seconds
        self._streams: dict[str, TaskStream] = {}
        self.writer = EventWriter(store, asyncio.get_running_loop(), self.deliver, public_url)
        # Called (on the loop) after a batch holding events that cause webhook messages was stored.
        self.on_webhook_events: Callable[[], None] | None = None

    async def create_stream(self, record: TaskRecord) -> TaskStream:
        """Store a new task and open its stream (raises StoreUnavailable when it cannot be stored)."""
        await asyncio.wrap_future(self.writer.create_task(record))
        stream = TaskStream(record, self.writer, self._limits)
        self._streams[record.task_id] = stream
        return stream

    def deliver(self, batch: list[PendingEvent]) -> None:
        """Show a stored batch to subscribers, each stream's frames in one step (the writer calls this)."""
        record_delivered((item.encoded.event.event_type, item.published) for item in batch)
        if self.on_webhook_events is not None and any(item.encoded.event.event_type in MESSAGE_TYPES for item in batch):
            self.on_webhook_events()
        frames: dict[str, list[bytes]] = {}
        terminal: set[str] = set()
        for item in batch:
            event = item.encoded.event
            frames.setdefault(event.task_id, []).append(item.encoded.frame)
            if event.is_terminal:
                terminal.add(event.task_id)
        for task_id, task_frames in frames.items():
            stream = self._streams.get(task_id)
            if stream is not None:
                stream.show(task_frames, task_id in terminal)

    @property
    def failure(self) -> str | None:
        return self.writer.failure

    def frames_after(self, task_id: str, last_sequence: int) -> AsyncIterator[bytes]:
        """A task's SSE frames after `last_sequence`: live from memory, else replayed from the store."""
        stream = self._streams.get(task_id)
        return stream.frames_after(last_sequence) if stream is not None else self._stored_frames(task_id, last_sequence)

    def get_stream(self, task_id: str) -> TaskStream | None:
        return self._streams.get(task_id)

    def streams(self) -> list[TaskStream]:
        return list(self._streams.values())

    async def _stored_frames(self, task_id: str, last_sequence: int) -> AsyncIterator[bytes]:
        """The SSE frames of a task that is no longer in memory, read from the store page by page."""
        cursor = last_sequence
        while True:
            rows = await asyncio.to_thread(self.store.event_payloads, task_id, cursor, STORED_PAGE_EVENTS)
            if not rows:
                return
            yield b"".join(sse_frame(sequence, payload) for sequence, payload in rows)
            cursor = rows[-1][0]

    def remove_expired(self) -> list[str]:
        return release_expired(self._streams, self._retention_seconds)

    async def close(self) -> None:
        """Store and deliver every queued event, then stop the writer."""
        await asyncio.to_thread(self.writer.close)
