"""Per-task event streams: an ordered, append-only log with live fan-out to any number of subscribers.

Publishing (any thread, usually a crew's worker thread) assigns the next sequence number, builds the
event and its SSE frame once, and drops the frame into the stream's inbox. The first event of a batch
schedules one drain on the event loop with `asyncio.run_coroutine_threadsafe`; the publisher never
waits for it, so a crew is never blocked by the loop or by any subscriber. The drain appends the batch
to the log and wakes subscribers. Each subscriber walks the shared log with its own cursor, so a slow
one holds no one back and costs no extra memory, and any subscriber can start from any sequence.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from task_events import SYSTEM_AGENT, EventType, TaskEvent, utc_now_iso

logger = logging.getLogger(__name__)

EventListener = Callable[[TaskEvent], None]

MAX_FRAMES_PER_WRITE = 256
_TRUNCATION_NOTE = "\n\n[... {omitted} characters omitted: the event exceeded MAX_EVENT_CONTENT_CHARS]"


class StreamLimitExceeded(RuntimeError):
    """The task produced more event data than MAX_STREAM_BYTES_PER_TASK allows."""


@dataclass(frozen=True)
class StreamLimits:
    """Memory bounds of one task's stream (see README, "Memory")."""

    max_stream_bytes: int
    max_event_content_chars: int


class TaskStream:
    """The event log of one task. `publish` is thread-safe; everything else runs on the event loop."""

    def __init__(
        self, task_id: str, loop: asyncio.AbstractEventLoop, limits: StreamLimits, listener: EventListener | None
    ) -> None:
        self.task_id = task_id
        self.created_at = utc_now_iso()
        self._loop = loop
        self._limits = limits
        self._listener = listener
        self._publish_lock = threading.Lock()
        self._next_sequence = 1
        self._stream_bytes = 0
        self._terminated = False
        self._inbox: list[tuple[TaskEvent, bytes]] = []
        self._frames: list[bytes] = []
        self._changed = asyncio.Event()
        self.finished = False
        self.finished_monotonic: float | None = None
        self.subscribers = 0

    @property
    def last_sequence(self) -> int:
        """The sequence of the last event visible to subscribers."""
        return len(self._frames)

    def publish(
        self, agent_name: str, event_type: EventType, content: str = "", metadata: dict[str, Any] | None = None
    ) -> TaskEvent | None:
        """Sequence and enqueue one event. Returns it, or None once the stream has its terminal event.

        Raises StreamLimitExceeded when a non-terminal event would take the stream past its byte
        budget; terminal events are always accepted, so every stream can still end properly.
        """
        content = self._bounded(content)
        with self._publish_lock:
            if self._terminated:
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
            frame = event.sse_frame()
            if not event.is_terminal and self._stream_bytes + len(frame) > self._limits.max_stream_bytes:
                raise StreamLimitExceeded(
                    f"task {self.task_id} produced more than {self._limits.max_stream_bytes} bytes of events"
                )
            self._next_sequence += 1
            self._stream_bytes += len(frame)
            self._terminated = event.is_terminal
            self._inbox.append((event, frame))
            first_of_batch = len(self._inbox) == 1
        if first_of_batch:
            self._schedule_drain()
        return event

    def publish_system(self, event_type: EventType, content: str, metadata: dict[str, Any] | None = None) -> None:
        """Publish a task-level event (agent_name `System`)."""
        self.publish(SYSTEM_AGENT, event_type, content, metadata)

    def _bounded(self, content: str) -> str:
        limit = self._limits.max_event_content_chars
        if len(content) <= limit:
            return content
        return content[:limit] + _TRUNCATION_NOTE.format(omitted=len(content) - limit)

    def _schedule_drain(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._drain(), self._loop)
        except RuntimeError:
            logger.warning("event loop closed: events of task %s after shutdown are not delivered", self.task_id)

    async def _drain(self) -> None:
        with self._publish_lock:
            batch, self._inbox = self._inbox, []
        for event, frame in batch:
            self._frames.append(frame)
            if self._listener is not None:
                try:
                    self._listener(event)
                except Exception:
                    logger.exception("listener failed on event %d of task %s", event.sequence, self.task_id)
            if event.is_terminal:
                self.finished = True
                self.finished_monotonic = time.monotonic()
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def frames_after(self, last_sequence: int) -> AsyncIterator[bytes]:
        """SSE frames of every event with a sequence above `last_sequence`, live until the terminal one.

        Frames already in the log are sent in writes of up to MAX_FRAMES_PER_WRITE frames; the
        generator ends after the terminal event (or at once if the task ended before `last_sequence`).
        """
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


@dataclass(frozen=True)
class StreamInfo:
    task_id: str
    subscribers: int
    last_sequence: int
    created_at: str
    finished: bool


class StreamManager:
    """All streams of this process, and their retention once finished."""

    def __init__(self, limits: StreamLimits, retention_seconds: float) -> None:
        self._limits = limits
        self._retention_seconds = retention_seconds
        self._streams: dict[str, TaskStream] = {}

    def create_stream(self, task_id: str, listener: EventListener | None = None) -> TaskStream:
        """A new, empty stream for `task_id` (call on the event loop)."""
        stream = TaskStream(task_id, asyncio.get_running_loop(), self._limits, listener)
        self._streams[task_id] = stream
        return stream

    def get_stream(self, task_id: str) -> TaskStream | None:
        return self._streams.get(task_id)

    def list_streams(self) -> list[StreamInfo]:
        return [
            StreamInfo(s.task_id, s.subscribers, s.last_sequence, s.created_at, s.finished)
            for s in self._streams.values()
        ]

    def remove_expired(self) -> list[str]:
        """Forget finished streams older than the retention time that nobody is reading; their task ids."""
        deadline = time.monotonic() - self._retention_seconds
        expired = [
            task_id
            for task_id, stream in self._streams.items()
            if stream.finished
            and stream.subscribers == 0
            and stream.finished_monotonic is not None
            and stream.finished_monotonic <= deadline
        ]
        for task_id in expired:
            del self._streams[task_id]
        return expired

    async def run_cleanup(self, interval_seconds: float, on_expired: Callable[[list[str]], None]) -> None:
        """Every `interval_seconds`, drop expired streams and tell `on_expired` which ones went."""
        while True:
            await asyncio.sleep(interval_seconds)
            expired = self.remove_expired()
            if expired:
                logger.info("removed %d finished streams past retention", len(expired))
                on_expired(expired)
