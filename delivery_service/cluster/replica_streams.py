"""Event streams for API replicas: every task's Redis Stream tailed once per replica, fanned out.

One loop of blocking XREADs covers every tailed stream (one connection however many tasks), each read
from the beginning, then from the last entry id read: replay and live part are one loop, and nothing
falls between them. A new stream wakes the blocked read through the replica's wake key. Subscribers walk
a `StreamView`, as in the embedded mode. /metrics counts the events this replica shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import datetime

import redis
import redis.asyncio

from delivery_service.cluster.redis_event_log import PREFIX, TaskKeys
from delivery_service.cluster.store import RedisTaskStore
from delivery_service.observability.metrics import record_delivered
from delivery_service.store.task_event import TaskEvent, sse_frame
from delivery_service.task_streams import STORED_PAGE_EVENTS, StreamView, release_expired

logger = logging.getLogger(__name__)

TAIL_BLOCK_MS = 2000  # below redis-py's socket timeout (5 s), which a longer block would trip
WAKE_KEY_TTL_MS = 86_400_000
TAIL_RETRY_MAX_SECONDS = 5.0


class ClusterStreams:
    """This replica's views of tasks' Redis Streams; see the module docstring."""

    def __init__(self, client: redis.asyncio.Redis, store: RedisTaskStore, retention_seconds: float) -> None:
        self._redis = client
        self._store = store
        self._retention_seconds = retention_seconds
        self._views: dict[str, StreamView] = {}
        self._tailed: dict[bytes, tuple[StreamView, bytes]] = {}  # stream key -> (view, last id read)
        self._wake_key = f"{PREFIX}:replica:{uuid.uuid4().hex}:wake".encode()
        self._wake_id = b"0-0"
        self._tailing = asyncio.Event()
        self._reader = asyncio.create_task(self._read_forever(), name="stream-tails")
        self.failure: str | None = None

    def streams(self) -> list[StreamView]:
        return list(self._views.values())

    async def frames_after(self, task_id: str, last_sequence: int) -> AsyncIterator[bytes]:
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
        self._tailed[TaskKeys(task_id).events.encode()] = (view, b"0-0")
        self._tailing.set()
        try:  # ends the reader's current XREAD, so that the next one includes this stream
            await self._redis.xadd(self._wake_key, {b"tail": task_id}, maxlen=1, approximate=False)
            await self._redis.pexpire(self._wake_key, WAKE_KEY_TTL_MS)
        except redis.RedisError as exc:
            logger.warning(
                "waking the stream reader failed (it picks the task up within %d ms): %s", TAIL_BLOCK_MS, exc
            )
        return view

    async def _read_forever(self) -> None:
        """One blocking XREAD over every tailed stream (and the wake key), each from its last id read."""
        delay = 0.2
        while True:
            if not self._tailed:
                self._tailing.clear()
                await self._tailing.wait()
            positions = {key: last_id for key, (_, last_id) in self._tailed.items()}
            try:
                reply = await self._redis.xread(
                    {**positions, self._wake_key: self._wake_id}, count=STORED_PAGE_EVENTS, block=TAIL_BLOCK_MS
                )
            except redis.RedisError as exc:
                self.failure = f"Redis did not answer reading events: {exc}"
                logger.warning("%s; retrying in %.1f s", self.failure, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, TAIL_RETRY_MAX_SECONDS)
                continue
            self.failure, delay = None, 0.2
            for key, entries in reply or []:
                if key == self._wake_key:
                    self._wake_id = entries[-1][0]
                    continue
                view, _ = self._tailed[key]
                self._show(view, entries)
                if view.finished:
                    del self._tailed[key]
                else:
                    self._tailed[key] = (view, entries[-1][0])

    @staticmethod
    def _show(view: StreamView, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Apply entries to the view's record and show their frames; counted as delivered by this replica."""
        frames = []
        delivered = []
        terminal = False
        for _, fields in entries:
            payload = fields[b"event"]
            event = TaskEvent.model_validate_json(payload)
            view.record.apply(event)
            frames.append(sse_frame(int(fields[b"seq"]), payload))
            delivered.append((event.event_type, datetime.fromisoformat(event.timestamp).timestamp()))
            terminal = terminal or event.is_terminal
        view.show(frames, terminal)
        record_delivered(delivered)

    def remove_expired(self) -> list[str]:
        return release_expired(self._views, self._retention_seconds)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        with contextlib.suppress(redis.RedisError):
            await self._redis.delete(self._wake_key)
        await self._redis.aclose()
