"""Starts tasks: a record and a stream on the event loop, the crew on a bounded pool of worker threads.

The event loop only creates the task and hands it to the pool; building the LLM, the crew and the
whole kickoff happen on a worker thread, which publishes `start`, the agents' events and exactly one
terminal event (`end`, or `error` with a message the user can act on) to the task's stream.
"""

from __future__ import annotations

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
from task_events import EventType
from task_registry import TaskRecord, TaskRegistry

logger = logging.getLogger(__name__)


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


class TaskRunner:
    """Owns the worker pool that runs crews, MAX_CONCURRENT_TASKS at a time; the rest wait in FIFO order."""

    def __init__(self, settings: Settings, streams: StreamManager, registry: TaskRegistry) -> None:
        self._settings = settings
        self._streams = streams
        self._registry = registry
        self._handler_class = load_handler_class(settings.crew_events_handler)
        self._model = model_info(settings)
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_tasks, thread_name_prefix="crew")
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    @property
    def model(self) -> ModelInfo:
        return self._model

    @property
    def in_flight(self) -> int:
        """Tasks submitted and not yet finished (running or waiting for a worker)."""
        return self._in_flight

    def start(self, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """Create the task and queue its crew (call on the event loop). Returns the record and whether it must wait."""
        record = TaskRecord(
            task_id=str(uuid.uuid4()),
            requirement=request.requirement,
            skip_confirmation=request.skip_confirmation,
            stream_tokens=request.stream_tokens,
            priority=request.priority,
            model=self._model.public(),
        )
        self._registry.add(record)
        stream = self._streams.create_stream(record.task_id, listener=record.apply)
        with self._in_flight_lock:
            waits = self._in_flight >= self._settings.max_concurrent_tasks
            self._in_flight += 1
        self._pool.submit(self._run, record, stream)
        return record, waits

    def shutdown(self) -> None:
        """Stop taking work; tasks still waiting for a worker are dropped, running crews finish."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, record: TaskRecord, stream: TaskStream) -> None:
        """One task, start to terminal event, on a worker thread."""
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
