"""`EngineParts`: what both engines do the same way over their own runner, store, streams and outbox."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar

from delivery_service.runs.task_control import Runner, TaskControl
from delivery_service.settings import Settings
from delivery_service.store.base import StoreUnavailable, TaskReads
from delivery_service.store.outbox import waiver_messages
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import iso_utc
from delivery_service.task_streams import StreamView, TaskStreams
from delivery_service.webhooks.async_outbox import AsyncOutbox

logger = logging.getLogger("multi_agent_service")

Store = TypeVar("Store", bound=TaskReads)
Streams = TypeVar("Streams", bound=TaskStreams)


class EngineParts(TaskControl, Generic[Store, Streams]):
    """The shared half of a `TaskEngine` (engines/task_engine.py)."""

    def __init__(
        self,
        settings: Settings,
        runner: Runner,
        store: Store,
        streams: Streams,
        outbox: AsyncOutbox,
        rate_limit_storage: str | None,
        stored_in: str,
    ) -> None:
        super().__init__(settings, runner)
        self._store = store
        self._streams = streams
        self.outbox = outbox
        self.rate_limit_storage = rate_limit_storage
        self.stored_in = stored_in

    async def task(self, task_id: str) -> TaskRecord | None:
        return await asyncio.to_thread(self._store.task, task_id)

    async def tasks(self, limit: int, offset: int, owner: str | None) -> tuple[list[TaskRecord], int]:
        return await asyncio.to_thread(self._store.tasks, limit, offset, owner)

    async def thread(self, thread_id: str) -> list[TaskRecord]:
        return await asyncio.to_thread(self._store.thread, thread_id)

    async def waive(self, record: TaskRecord, waiver: dict[str, str]) -> bool:
        messages = waiver_messages(record, waiver, self._settings.public_url)
        return await asyncio.to_thread(self._store.waive, record.task_id, waiver, messages)

    def frames_after(self, task_id: str, last_sequence: int) -> AsyncIterator[bytes]:
        return self._streams.frames_after(task_id, last_sequence)

    def streams(self) -> Sequence[StreamView]:
        return self._streams.streams()

    async def readiness(self) -> dict[str, str]:
        checks: dict[str, str] = {}
        try:
            await asyncio.to_thread(self._store.check)
            checks["store"] = self._streams.failure or "ok"
        except StoreUnavailable as exc:
            checks["store"] = str(exc)
        checks["tasks"] = "ok" if self.accepting else "shutting down"
        return checks

    def background_jobs(self) -> list[Coroutine[Any, Any, None]]:
        return [self._retention()]

    async def _retention(self) -> None:
        """Drop expired streams from memory and purge old finished tasks from the store, periodically."""
        settings = self._settings
        while True:
            expired = self._streams.remove_expired()
            if expired:
                logger.info("released %d finished streams from memory", len(expired))
            cutoff = datetime.now(timezone.utc) - timedelta(days=settings.task_retention_days)
            try:
                purged = await asyncio.to_thread(self._store.purge_finished_before, iso_utc(cutoff))
            except StoreUnavailable as exc:
                logger.error("purging old tasks failed: %s", exc)
            else:
                if purged:
                    logger.info("purged %d tasks older than %g days", purged, settings.task_retention_days)
            await asyncio.sleep(settings.stream_cleanup_interval_seconds)

    async def close(self) -> None:
        await super().close()
        await self._streams.close()
        await asyncio.to_thread(self._store.close)
