"""The running service: its long-lived objects, start-up and orderly stop.

A SIGTERM or SIGINT drains the service before uvicorn closes any connection, so that every open stream
receives its terminal event; then uvicorn's own shutdown proceeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Any

from fastapi import FastAPI

from delivery_service.engines.choose_mode import build_engine
from delivery_service.engines.task_engine import TaskEngine
from delivery_service.http.access_control import StreamSlots
from delivery_service.http.auth import ApiKeys
from delivery_service.service_layer.delivery import DeliveryService
from delivery_service.settings import Settings, get_settings
from delivery_service.store.base import StoreUnavailable
from delivery_service.webhooks.sender import WebhookSender

logger = logging.getLogger("multi_agent_service")


class ServiceState:
    """The long-lived objects of one running service, created in the lifespan."""

    def __init__(self, settings: Settings, engine: TaskEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.webhook_sender: WebhookSender | None = None  # started by the lifespan when WEBHOOK_SECRET is set
        self.keys = ApiKeys(settings)
        self.delivery = DeliveryService(engine, settings)
        self.stream_slots = StreamSlots(settings.max_streams_per_client)


def running_service(app_state: Any) -> ServiceState:
    """The app's running service; StoreUnavailable (503) while there is none (the store could not be opened)."""
    state: ServiceState | None = getattr(app_state, "service", None)
    if state is None:
        unavailable = getattr(app_state, "unavailable", None) or "the service is starting"
        raise StoreUnavailable(f"The task store is unavailable: {unavailable}")
    return state


async def drain(state: ServiceState, grace_seconds: float) -> None:
    """Stop taking tasks, give running ones `grace_seconds`, end the rest, let streams close."""
    if not state.engine.accepting:
        return
    ended = await state.engine.drain(grace_seconds)
    logger.info("draining: %d unfinished tasks ended", ended)


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


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    app.state.service = None
    app.state.unavailable = None
    try:
        engine = await build_engine(settings, getattr(app.state, "runner_class", None))
    except StoreUnavailable as exc:
        logger.error("%s", exc)
        app.state.unavailable = str(exc)
        yield
        return
    app.state.service = state = ServiceState(settings, engine)
    model = engine.model
    logger.info("LLM provider %s, model %s; tasks stored in %s", model.provider, model.model, engine.stored_in)
    if model.note:
        logger.warning(model.note)
    install_drain_on_signals(state)
    # CrewAI, pydantic and the rest of start-up leave ~290,000 objects that live as long as the process.
    # A full garbage collection walks them all (~120 ms here), on whichever thread triggers it, a crew's
    # or the event loop's; frozen, they are skipped, and collections stay in the microseconds.
    gc.freeze()
    background = [asyncio.create_task(job) for job in engine.background_jobs()]
    if settings.webhooks_enabled():
        state.webhook_sender = WebhookSender(engine.outbox, settings)
        state.webhook_sender.start()
        engine.wake_webhooks_with(state.webhook_sender.wake)
    try:
        yield
    finally:
        for job in background:
            job.cancel()
        await drain(state, grace_seconds=0)
        if state.webhook_sender is not None:
            await state.webhook_sender.stop()
        await engine.close()
