"""Starts tasks: a record and a stream on the event loop, the crew on a bounded pool of worker threads.

The event loop only creates the task and hands it to the pool; building the LLM, the crew and the
whole kickoff happen on a worker thread, which publishes `start`, the agents' events and exactly one
terminal event (`end`, or `error` with a message the user can act on) to the task's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agents_config import AGENT_NAMES
from crew_factory import CrewEventsHandler, build_crew, delivery_summary, run_crew
from llm_errors import describe_failure
from llm_providers import ModelInfo, build_llm, model_info
from settings import Settings
from stream_manager import StreamManager, TaskStream
from task_events import SYSTEM_AGENT, EventType, TaskEvent, utc_now_iso
from task_records import TaskRecord
from task_store import TaskStore

logger = logging.getLogger(__name__)

RESTART_MESSAGE = (
    "The server restarted while this task was queued or running, so the task did not finish. What it produced "
    "so far is kept; submit the requirement again to run it anew."
)
SHUTDOWN_MESSAGE = (
    "The server was stopped while this task was running, so the task did not finish. What it produced so far "
    "is kept; submit the requirement again to run it anew."
)


def load_handler_class(import_path: str) -> type[CrewEventsHandler]:
    """The CrewEventsHandler subclass named by CREW_EVENTS_HANDLER (`package.module:ClassName`)."""
    module_name, _, class_name = import_path.partition(":")
    handler_class = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(handler_class, type) and issubclass(handler_class, CrewEventsHandler)):
        raise ValueError(f"CREW_EVENTS_HANDLER={import_path!r} does not name a CrewEventsHandler subclass")
    return handler_class


@dataclass(frozen=True)
class TaskRequest:
    requirement: str
    skip_confirmation: bool
    stream_tokens: bool
    priority: int


def fail_interrupted_tasks(store: TaskStore) -> int:
    """End every task a previous process left queued or running with one terminal `error` (at start-up).

    The error takes the next sequence number after the task's last stored event, so a client resuming
    with its Last-Event-ID receives exactly the rest of the stream, ending in this error.
    """
    interrupted = store.unfinished()
    for record in interrupted:
        event = TaskEvent(
            task_id=record.task_id,
            sequence=record.last_sequence + 1,
            agent_name=SYSTEM_AGENT,
            event_type=EventType.ERROR,
            content=RESTART_MESSAGE,
            timestamp=utc_now_iso(),
            metadata={"error_type": "server_restarted"},
        )
        record.apply(event)
        store.save([record], [event])
    return len(interrupted)


class ServiceStopping(RuntimeError):
    """The service is shutting down and takes no new tasks."""


class TaskRunner:
    """Owns the worker pool that runs crews, MAX_CONCURRENT_TASKS at a time; the rest wait in FIFO order."""

    def __init__(self, settings: Settings, streams: StreamManager) -> None:
        self._settings = settings
        self._streams = streams
        self._handler_class = load_handler_class(settings.crew_events_handler)
        self._model = model_info(settings)
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_tasks, thread_name_prefix="crew")
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True

    @property
    def model(self) -> ModelInfo:
        return self._model

    async def start(self, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """Store the task and queue its crew. Returns the record and whether it waits for a worker.

        Raises ServiceStopping during shutdown and StoreUnavailable when the task cannot be stored.
        """
        if not self.accepting:
            raise ServiceStopping("The service is shutting down and takes no new tasks. Submit the task again shortly.")
        record = TaskRecord(
            task_id=str(uuid.uuid4()),
            requirement=request.requirement,
            skip_confirmation=request.skip_confirmation,
            stream_tokens=request.stream_tokens,
            priority=request.priority,
            model=self._model.public(),
        )
        stream = await self._streams.create_stream(record)
        with self._in_flight_lock:
            waits = self._in_flight >= self._settings.max_concurrent_tasks
            self._in_flight += 1
            self._idle.clear()
        self._pool.submit(self._run, stream)
        return record, waits

    async def drain(self, grace_seconds: float) -> int:
        """Stop taking tasks, let running ones finish for up to `grace_seconds`, then end the rest.

        Every task still unfinished gets one terminal `error` saying the server stopped; its crew is
        stopped at its next step. Returns how many tasks were ended that way.
        """
        self.accepting = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace_seconds)
        self._pool.shutdown(wait=False, cancel_futures=True)
        interrupted = [stream for stream in self._streams.streams() if not stream.terminated]
        for stream in interrupted:
            stream.publish_system(EventType.ERROR, SHUTDOWN_MESSAGE, {"error_type": "server_stopped"})
        return len(interrupted)

    def _run(self, stream: TaskStream) -> None:
        """One task, start to terminal event, on a worker thread."""
        record = stream.record
        logger.info("task %s started on %s/%s", record.task_id, self._model.provider, self._model.model)
        try:
            stream.publish_system(
                EventType.START,
                f"Task started on {self._model.provider} model {self._model.model}",
                {"model": self._model.public(), "total_steps": len(AGENT_NAMES), "agents": list(AGENT_NAMES)},
            )
            llm = build_llm(self._settings, record.requirement)
            crew, step_by_task_id = build_crew(record.requirement, llm)
            handler = self._handler_class(stream, stream_tokens=record.stream_tokens, step_by_task_id=step_by_task_id)
            output = run_crew(crew, handler)
            logger.info("task %s completed", record.task_id)
            stream.publish_system(
                EventType.END,
                delivery_summary(output.raw),
                {"usage": handler.usage, "deliverables": len(output.tasks_output)},
            )
        except Exception as exc:
            failure = describe_failure(exc, self._settings, self._model.endpoint or self._model.provider)
            logger.warning("task %s failed: %s (%s)", record.task_id, failure.kind, type(exc).__name__)
            stream.publish_system(EventType.ERROR, failure.message, {"error_type": failure.kind})
        finally:
            with self._in_flight_lock:
                self._in_flight -= 1
                if self._in_flight == 0:
                    self._loop.call_soon_threadsafe(self._set_idle_if_done)

    def _set_idle_if_done(self) -> None:
        with self._in_flight_lock:
            if self._in_flight == 0:
                self._idle.set()
