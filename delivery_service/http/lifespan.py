"""The running service: its long-lived objects, start-up (store, recovery) and orderly stop.

Start-up opens the task store, ends the tasks a previous process left unfinished (one `error` each,
with the next sequence number), and starts the retention job. A SIGTERM or SIGINT first *drains*
the service, before uvicorn closes any connection: no new tasks, up to SHUTDOWN_GRACE_SECONDS for
running ones to finish, a terminal `error` for the rest, and every open stream receives its
terminal event. Then uvicorn's own shutdown proceeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any

from fastapi import FastAPI

from delivery_service.cluster.cluster_runner import ClusterRunner
from delivery_service.cluster.redis_event_log import connect, connect_async
from delivery_service.cluster.redis_outbox import RedisOutbox
from delivery_service.cluster.replica_streams import ClusterStreams
from delivery_service.cluster.store import RedisTaskStore
from delivery_service.http.access_control import StreamSlots, TaskRateLimit
from delivery_service.http.auth import ApiKeys
from delivery_service.llm.embedded_model import local_model_server
from delivery_service.runs.task_runner import TaskRunner, fail_interrupted_tasks
from delivery_service.settings import Settings, get_settings
from delivery_service.store.base import StoreUnavailable, TaskStore
from delivery_service.store.memory import MemoryTaskStore
from delivery_service.store.sqlite import SqliteTaskStore
from delivery_service.store.task_event import iso_utc
from delivery_service.task_streams import StreamLimits, StreamManager
from delivery_service.webhooks.async_outbox import AsyncOutbox, ThreadedOutbox
from delivery_service.webhooks.sender import WebhookSender

logger = logging.getLogger("multi_agent_service")

STREAMS_CLOSE_TIMEOUT_SECONDS = 5.0
CHECKPOINT_SECONDS = 1.0


class ServiceState:
    """The long-lived objects of one running service, created in the lifespan."""

    def __init__(
        self,
        settings: Settings,
        store: TaskStore | RedisTaskStore,
        streams: StreamManager | ClusterStreams,
        runner: TaskRunner | ClusterRunner,
        outbox: AsyncOutbox,
        rate_limit_storage: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.streams = streams
        self.runner = runner
        self.outbox = outbox
        self.webhook_sender: WebhookSender | None = None  # started by the lifespan when WEBHOOK_SECRET is set
        self.keys = ApiKeys(settings)
        self.rate_limit = TaskRateLimit(settings.rate_limit, rate_limit_storage)
        self.stream_slots = StreamSlots(settings.max_streams_per_client)
        self.model_error: str | None = None


def embedded_state(settings: Settings, store: TaskStore, runner_class: type[TaskRunner]) -> ServiceState:
    """Everything in this process: the store on disk (or memory), streams and crews here."""
    streams = StreamManager(
        store,
        StreamLimits(settings.max_stream_bytes_per_task, settings.max_event_content_chars),
        settings.stream_retention_seconds,
        settings.public_url,
    )
    return ServiceState(settings, store, streams, runner_class(settings, streams), ThreadedOutbox(store.outbox))


async def cluster_state(settings: Settings) -> ServiceState:
    """A stateless replica (REDIS_URL): tasks and events in Redis, crews on Celery workers."""
    store = RedisTaskStore(connect(settings))
    await asyncio.to_thread(store.check)
    client = connect_async(settings)
    streams = ClusterStreams(client, store, settings.stream_retention_seconds)
    url = settings.redis_url.get_secret_value() if settings.redis_url else ""
    outbox = RedisOutbox(client, settings)
    return ServiceState(settings, store, streams, ClusterRunner(settings, client), outbox, f"async+{url}")


def open_store(settings: Settings) -> TaskStore:
    """The configured store, ready to use (blocking: call off the loop). Raises StoreUnavailable."""
    if settings.task_store == "memory":
        return MemoryTaskStore()
    return SqliteTaskStore(settings.data_dir)


async def drain(state: ServiceState, grace_seconds: float) -> None:
    """Stop taking tasks, give running ones `grace_seconds`, end the rest, let streams close."""
    if not state.runner.accepting:
        return
    ended = await state.runner.drain(grace_seconds)
    logger.info("draining: %d unfinished tasks ended", ended)
    if not isinstance(state.streams, StreamManager):
        return  # cluster mode: the tasks run on the workers, their streams stay in Redis
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STREAMS_CLOSE_TIMEOUT_SECONDS
    while loop.time() < deadline and any(
        not stream.finished or stream.subscribers for stream in state.streams.streams() if stream.terminated
    ):
        await asyncio.sleep(0.05)


def _drain_before(previous: Callable[[int, FrameType | None], Any], state: ServiceState) -> Callable[..., None]:
    """A signal handler that drains the service, then hands the signal to uvicorn's own handler."""
    draining: list[asyncio.Task[None]] = []

    async def drain_then_stop(signum: int, frame: FrameType | None) -> None:
        await drain(state, state.settings.shutdown_grace_seconds)
        previous(signum, frame)

    def handler(signum: int, frame: FrameType | None) -> None:
        if draining:
            previous(signum, frame)
            return
        draining.append(asyncio.get_running_loop().create_task(drain_then_stop(signum, frame)))

    return handler


def install_drain_on_signals(state: ServiceState) -> None:
    """Wrap uvicorn's SIGTERM/SIGINT handlers (installed before the lifespan starts) with `drain`."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if callable(previous):
            signal.signal(signum, _drain_before(previous, state))


async def _warm_local_model(state: ServiceState) -> None:
    """Load the embedded model off the event loop, so the first task does not pay for it."""
    try:
        await asyncio.to_thread(local_model_server.endpoint, state.settings)
    except Exception as exc:
        state.model_error = str(exc)
        logger.error("the embedded model could not be started: %s", exc)


async def _retention(state: ServiceState) -> None:
    """Drop expired streams from memory and purge old finished tasks from the store, periodically."""
    settings = state.settings
    while True:
        expired = state.streams.remove_expired()
        if expired:
            logger.info("released %d finished streams from memory", len(expired))
        cutoff = datetime.now(timezone.utc) - timedelta(days=settings.task_retention_days)
        try:
            purged = await asyncio.to_thread(state.store.purge_finished_before, iso_utc(cutoff))
        except StoreUnavailable as exc:
            logger.error("purging old tasks failed: %s", exc)
        else:
            if purged:
                logger.info("purged %d tasks older than %g days", purged, settings.task_retention_days)
        await asyncio.sleep(settings.stream_cleanup_interval_seconds)


async def _checkpoints(store: TaskStore) -> None:
    """Checkpoint the store's write-ahead log every CHECKPOINT_SECONDS (see store/sqlite.py)."""
    last_failure = None
    while True:
        await asyncio.sleep(CHECKPOINT_SECONDS)
        try:
            await asyncio.to_thread(store.checkpoint)
        except StoreUnavailable as exc:
            if str(exc) != last_failure:
                logger.warning("%s", exc)
            last_failure = str(exc)
        else:
            last_failure = None


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    app.state.service = None
    app.state.unavailable = None
    try:
        state = await (cluster_state(settings) if settings.cluster() else _embedded(app, settings))
    except StoreUnavailable as exc:
        logger.error("%s", exc)
        app.state.unavailable = str(exc)
        yield
        return
    app.state.service = state
    model = state.runner.model
    where = "Redis (cluster mode)" if settings.cluster() else settings.task_store
    logger.info("LLM provider %s, model %s; tasks stored in %s", model.provider, model.model, where)
    if model.note:
        logger.warning(model.note)
    install_drain_on_signals(state)
    # CrewAI, pydantic and the rest of start-up leave ~290,000 objects that live as long as the process.
    # A full garbage collection walks them all (~120 ms here), on whichever thread triggers it, a crew's
    # or the event loop's; frozen, they are skipped, and collections stay in the microseconds.
    gc.freeze()
    background = [asyncio.create_task(_retention(state))]
    if settings.webhooks_enabled():
        state.webhook_sender = WebhookSender(state.outbox, settings)
        state.webhook_sender.start()
        if isinstance(state.streams, StreamManager):  # the cluster's senders poll Redis
            state.streams.on_webhook_events = state.webhook_sender.wake
    if isinstance(state.runner, ClusterRunner):
        background.append(asyncio.create_task(state.runner.sweep_forever()))
    if not isinstance(state.store, RedisTaskStore):
        background.append(asyncio.create_task(_checkpoints(state.store)))
        if model.provider == "local":
            background.append(asyncio.create_task(_warm_local_model(state)))
    try:
        yield
    finally:
        for job in background:
            job.cancel()
        await drain(state, grace_seconds=0)
        if state.webhook_sender is not None:
            await state.webhook_sender.stop()
        await state.streams.close()
        if isinstance(state.runner, ClusterRunner):
            await state.runner.close()
        await asyncio.to_thread(state.store.close)


async def _embedded(app: FastAPI, settings: Settings) -> ServiceState:
    """Open the store, end the tasks a previous process left unfinished, build the embedded service."""
    store = await asyncio.to_thread(open_store, settings)
    interrupted = await asyncio.to_thread(fail_interrupted_tasks, store, settings.public_url)
    if interrupted:
        logger.warning("%d tasks were interrupted by the last stop; each now ends with an error", interrupted)
    return embedded_state(settings, store, getattr(app.state, "runner_class", TaskRunner))
