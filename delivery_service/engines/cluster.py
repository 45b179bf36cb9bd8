"""The cluster mode's engine (REDIS_URL): a stateless replica over Redis, crews on Celery workers.

A replica holds no task, so it has none to end when it drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from delivery_service.cluster.cluster_runner import ClusterRunner, sweep_period
from delivery_service.cluster.redis_event_log import connect, connect_async
from delivery_service.cluster.redis_outbox import RedisOutbox
from delivery_service.cluster.replica_streams import ClusterStreams
from delivery_service.cluster.store import RedisTaskStore
from delivery_service.engines.engine_parts import EngineParts
from delivery_service.settings import Settings
from delivery_service.store.records import TaskRecord


class ClusterEngine(EngineParts[RedisTaskStore, ClusterStreams]):
    async def current_task(self, task_id: str) -> TaskRecord | None:
        """Projected from the task's events in Redis, whichever replica or worker wrote them."""
        return await self.task(task_id)

    async def settled(self, task_id: str) -> None:
        """Nothing to wait for: an append is stored in Redis before it returns."""

    def background_jobs(self) -> list[Coroutine[Any, Any, None]]:
        return [*super().background_jobs(), self.sweep_forever(sweep_period(self._settings))]

    def wake_webhooks_with(self, wake: Callable[[], None]) -> None:
        """Nothing to hook: the events are appended on the workers, and every replica's sender polls Redis."""


async def cluster_engine(settings: Settings) -> ClusterEngine:
    """A replica's engine over REDIS_URL (StoreUnavailable when Redis does not answer)."""
    store = RedisTaskStore(connect(settings))
    await asyncio.to_thread(store.check)
    client = connect_async(settings)
    streams = ClusterStreams(client, store, settings.stream_retention_seconds)
    url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    runner = ClusterRunner(settings, client)
    outbox = RedisOutbox(client, settings)
    return ClusterEngine(settings, runner, store, streams, outbox, f"async+{url}", "Redis (cluster mode)")
