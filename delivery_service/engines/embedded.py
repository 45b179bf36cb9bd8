"""The embedded mode's engine: the store on disk (or in memory), streams and crews in this process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from delivery_service.engines.engine_parts import EngineParts
from delivery_service.llm.embedded_model import local_model_server
from delivery_service.runs.task_runner import TaskRunner, fail_interrupted_tasks
from delivery_service.settings import Settings
from delivery_service.store.base import StoreUnavailable, TaskStore
from delivery_service.store.memory import MemoryTaskStore
from delivery_service.store.records import TaskRecord
from delivery_service.store.sqlite import SqliteTaskStore
from delivery_service.task_streams import StreamLimits, StreamManager
from delivery_service.webhooks.async_outbox import ThreadedOutbox

logger = logging.getLogger("multi_agent_service")

STREAMS_CLOSE_TIMEOUT_SECONDS = 5.0
CHECKPOINT_SECONDS = 1.0


class EmbeddedEngine(EngineParts[TaskStore, StreamManager]):
    def __init__(self, settings: Settings, store: TaskStore, runner_class: type[TaskRunner]) -> None:
        streams = StreamManager(
            store,
            StreamLimits(settings.max_stream_bytes_per_task, settings.max_event_content_chars),
            settings.stream_retention_seconds,
            settings.public_url,
        )
        runner = runner_class(settings, streams)
        super().__init__(settings, runner, store, streams, ThreadedOutbox(store.outbox), None, settings.task_store)
        self.model_error: str | None = None  # why the local model could not be loaded

    async def current_task(self, task_id: str) -> TaskRecord | None:
        """Live from memory while the task's stream is held there, else from the store."""
        stream = self._streams.get_stream(task_id)
        return stream.record if stream is not None else await self.task(task_id)

    async def settled(self, task_id: str) -> None:
        """Wait for the writer to store and deliver what was published (a stream not in memory has nothing)."""
        stream = self._streams.get_stream(task_id)
        if stream is not None:
            await stream.caught_up()

    async def readiness(self) -> dict[str, str]:
        checks = await super().readiness()
        if self.model.provider == "local":
            checks["local_model"] = self.model_error or ("ok" if local_model_server.started else "loading")
        return checks

    async def drain(self, grace_seconds: float) -> int:
        """As `TaskControl` drains, then up to STREAMS_CLOSE_TIMEOUT_SECONDS for ended streams to reach their readers."""
        ended = await super().drain(grace_seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAMS_CLOSE_TIMEOUT_SECONDS
        while loop.time() < deadline and any(
            not stream.finished or stream.subscribers for stream in self._streams.streams() if stream.terminated
        ):
            await asyncio.sleep(0.05)
        return ended

    def background_jobs(self) -> list[Coroutine[Any, Any, None]]:
        jobs = [*super().background_jobs(), self._checkpoints()]
        if self.model.provider == "local":
            jobs.append(self._warm_local_model())
        return jobs

    def wake_webhooks_with(self, wake: Callable[[], None]) -> None:
        self._streams.on_webhook_events = wake

    async def _checkpoints(self) -> None:
        """Checkpoint the store's write-ahead log every CHECKPOINT_SECONDS (see store/sqlite.py)."""
        last_failure = None
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            try:
                await asyncio.to_thread(self._store.checkpoint)
            except StoreUnavailable as exc:
                if str(exc) != last_failure:
                    logger.warning("%s", exc)
                last_failure = str(exc)
            else:
                last_failure = None

    async def _warm_local_model(self) -> None:
        """Load the embedded model off the event loop, so the first task does not pay for it."""
        try:
            await asyncio.to_thread(local_model_server.endpoint, self._settings)
        except Exception as exc:
            self.model_error = str(exc)
            logger.error("the embedded model could not be started: %s", exc)


def open_store(settings: Settings) -> TaskStore:
    """The configured store, ready to use (blocking: call off the loop). Raises StoreUnavailable."""
    if settings.task_store == "memory":
        return MemoryTaskStore()
    return SqliteTaskStore(settings.data_dir)


async def embedded_engine(settings: Settings, runner_class: type[TaskRunner] = TaskRunner) -> EmbeddedEngine:
    """Open the store, end the tasks a previous process left unfinished, build the embedded engine."""
    store = await asyncio.to_thread(open_store, settings)
    interrupted = await asyncio.to_thread(fail_interrupted_tasks, store, settings.public_url)
    if interrupted:
        logger.warning("%d tasks were interrupted by the last stop; each now ends with an error", interrupted)
    return EmbeddedEngine(settings, store, runner_class)
