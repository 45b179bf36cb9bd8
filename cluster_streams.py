"""Event streams for API replicas (REDIS_URL): one Redis Streams tail per task per replica, fanned out.

The first subscriber to a task on this replica starts its tail: a loop of blocking XREADs from the
beginning of the task's Redis Stream, each resuming after the last entry id the previous read
actually returned. So the replay and the live part are one read loop and nothing can fall between
them. The frames go into a `StreamView`, where every subscriber of this replica walks them with its
own cursor (a Last-Event-ID is just a starting cursor), exactly as in the embedded mode. The tail
ends after the terminal event; the view is released after STREAM_RETENTION_SECONDS once nobody
reads it, and Redis keeps the events for TASK_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import redis
import redis.asyncio

from cluster_store import RedisTaskStore
from redis_events import TaskKeys
from stream_manager import STORED_PAGE_EVENTS, StreamView, release_expired
from task_events import TaskEvent, sse_frame

logger = logging.getLogger(__name__)

TAIL_BLOCK_MS = 2000  # below redis-py's socket timeout (5 s), which a longer block would trip
TAIL_RETRY_MAX_SECONDS = 5.0


class ClusterStreams:
    """This replica's views of tasks' Redis Streams; see the module docstring."""

    def __init__(self, client: redis.asyncio.Redis, store: RedisTaskStore, retention_seconds: float) -> None:
        self._redis = client
        self._store = store
        self._retention_seconds = retention_seconds
        self._views: dict[str, StreamView] = {}
        self._tails: dict[str, asyncio.Task[None]] = {}
        self.failure: str | None = None

    def get_stream(self, task_id: str) -> None:
        """Records are read from Redis (cluster_store), never from a replica's memory."""
        return None

    def streams(self) -> list[StreamView]:
        return list(self._views.values())

    async def frames_after(self, task_id: str, last_sequence: int) -> AsyncIterator[bytes]:
        """A task's SSE frames after `last_sequence`, replayed then live, until its terminal event."""
        view = self._views.get(task_id) or await self._open(task_id)
        async for frames in view.frames_after(last_sequence):
            yield frames

    async def _open(self, task_id: str) -> StreamView:
        record = await asyncio.to_thread(self._store.initial_record, task_id)
        view = self._views.get(task_id)  # another subscriber may have opened it meanwhile
        if view is not None:
            return view
        if record is None:
            raise LookupError(task_id)
        view = self._views[task_id] = StreamView(record)
        self._tails[task_id] = asyncio.create_task(self._tail(view), name=f"tail-{task_id}")
        return view

    async def _tail(self, view: StreamView) -> None:
        """Read the task's stream into `view` until its terminal event; retry while Redis is away."""
        key = TaskKeys(view.task_id).events
        last_id = b"0-0"
        delay = 0.2
        try:
            while not view.finished:
                try:
                    reply = await self._redis.xread({key: last_id}, count=STORED_PAGE_EVENTS, block=TAIL_BLOCK_MS)
                except redis.RedisError as exc:
                    self.failure = f"Redis did not answer reading events: {exc}"
                    logger.warning("%s; retrying in %.1f s", self.failure, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, TAIL_RETRY_MAX_SECONDS)
                    continue
                self.failure, delay = None, 0.2
                if reply:
                    entries = reply[0][1]
                    last_id = entries[-1][0]
                    self._show(view, entries)
        finally:
            self._tails.pop(view.task_id, None)

    @staticmethod
    def _show(view: StreamView, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        frames = []
        terminal = False
        for _, fields in entries:
            payload = fields[b"event"]
            event = TaskEvent.model_validate_json(payload)
            view.record.apply(event)
            frames.append(sse_frame(int(fields[b"seq"]), payload))
            terminal = terminal or event.is_terminal
        view.show(frames, terminal)

    def remove_expired(self) -> list[str]:
        """Forget finished views older than the retention time that nobody is reading; their task ids."""
        return release_expired(self._views, self._retention_seconds)

    async def close(self) -> None:
        for tail in list(self._tails.values()):
            tail.cancel()
        await asyncio.gather(*self._tails.values(), return_exceptions=True)
        await self._redis.aclose()
