"""Where a crew runs: on the worker thread itself (`run_job`, the default), or in a child process
(`ProcessCrews`, CREW_EXECUTION=process, so that crews do not hold the event loop's interpreter lock).

A child is forked from a forkserver that has imported CrewAI; its handler publishes through a pipe to the
worker thread. A task that ends sends the child a stop; a child still running CREW_STOP_GRACE_SECONDS later
is killed, and a child that dies ends its task with an `error`.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

from delivery_service.agents import AGENTS
from delivery_service.crew.event_handler import CrewEventsHandler
from delivery_service.crew.factory import FollowUpContext, Handover, Revision, build_crew, build_triage_crew, run_crew
from delivery_service.llm.embedded_model import LocalModelEndpoint, local_model_server
from delivery_service.llm.model_errors import TaskFailure, describe_failure
from delivery_service.llm.providers import build_llm, model_info
from delivery_service.llm.retry import RetryingTransport
from delivery_service.observability.metrics import record_llm_call
from delivery_service.settings import Settings, get_settings
from delivery_service.store.task_event import EventType
from delivery_service.task_streams import EventSink, StreamLimitExceeded

POLL_SECONDS = 0.02
# Crews are batch work and the API answers people: on a busy machine the scheduler serves the API first.
CHILD_NICENESS = 10


@dataclass(frozen=True)
class CrewJob:
    """One crew of a task: which steps, for which requirement, with what from earlier phases."""

    task_id: str
    requirement: str
    stream_tokens: bool
    steps: tuple[int, ...]
    analysis: str | None = None
    revision: Revision | None = None
    handover: Handover | None = None
    follow_up: FollowUpContext | None = None
    triage: bool = False  # the follow-up's triage (no steps): its data is the result's `data[0]`
    local_model: LocalModelEndpoint | None = None  # the API process's embedded model server, for a child


@dataclass
class CrewResult:
    """Each step's deliverable as people read it, and as data (None where the answer stayed text)."""

    outputs: dict[int, str]
    usage: dict[str, int] = field(default_factory=dict)
    data: dict[int, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def last_output(self) -> str:
        return self.outputs[max(self.outputs)]


class CrewFailed(RuntimeError):
    """A crew in a child process failed; `failure` is already what the task's `error` says."""

    def __init__(self, failure: TaskFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def load_handler_class(import_path: str) -> type[CrewEventsHandler]:
    """The CrewEventsHandler subclass named by CREW_EVENTS_HANDLER (`package.module:ClassName`)."""
    module_name, _, class_name = import_path.partition(":")
    handler_class = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(handler_class, type) and issubclass(handler_class, CrewEventsHandler)):
        raise ValueError(f"CREW_EVENTS_HANDLER={import_path!r} does not name a CrewEventsHandler subclass")
    return handler_class


def run_job(
    job: CrewJob,
    sink: EventSink,
    settings: Settings,
    model_labels: tuple[str, str],
    llm_calls: Callable[..., None] = record_llm_call,
) -> CrewResult:
    """Build and run one crew with its handler, model and retries (blocking: a worker thread or a child)."""
    handler = load_handler_class(settings.crew_events_handler)(
        sink,
        stream_tokens=job.stream_tokens,
        delta_interval_seconds=settings.delta_interval_ms / 1000,
        model_labels=model_labels,
        llm_calls=llm_calls,
    )
    retries = RetryingTransport(
        max_retries=settings.llm_max_retries,
        base_delay_seconds=settings.llm_retry_base_seconds,
        on_retry=handler.on_llm_retry,
        ended=sink.ended,
    )
    llm = build_llm(settings, job.requirement, retries)
    if job.triage:
        assert job.follow_up is not None, "a triage needs the follow-up"
        triage_crew, answer = build_triage_crew(job.requirement, llm, job.follow_up)
        output = run_crew(triage_crew, handler)
        return CrewResult({0: str(output.raw)}, handler.usage, {0: answer.public_data()})
    crew, handler.step_by_task_id = build_crew(
        job.requirement,
        llm,
        job.steps,
        analysis=job.analysis,
        revision=job.revision,
        handover=job.handover,
        follow_up=job.follow_up,
    )
    output = run_crew(crew, handler)
    outputs = {step: str(task_output.raw) for step, task_output in zip(job.steps, output.tasks_output, strict=True)}
    return CrewResult(outputs, handler.usage, handler.data_by_step)


class ProcessCrews:
    """Each crew in a child process; see the module docstring."""

    def __init__(self, settings: Settings, model_labels: tuple[str, str]) -> None:
        self._settings = settings
        self._model_labels = model_labels
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(
            ["delivery_service.runs.crew_execution", settings.crew_events_handler.partition(":")[0]]
        )
        threading.Thread(target=self._start_forkserver, name="forkserver-start", daemon=True).start()

    def _start_forkserver(self) -> None:
        """Start the forkserver (it imports CrewAI: seconds) now rather than at the first task."""
        child = self._context.Process(target=_ready, daemon=True)
        child.start()
        child.join()

    def run(self, job: CrewJob, sink: EventSink) -> CrewResult:
        if self._settings.resolved_provider() == "local":
            job = replace(job, local_model=local_model_server.endpoint(self._settings))
        parent_end, child_end = self._context.Pipe()
        child = self._context.Process(target=_child_main, args=(child_end, job, self._model_labels), daemon=True)
        child.start()
        child_end.close()
        try:
            return self._follow(child, parent_end, sink)
        finally:
            parent_end.close()
            child.join(self._settings.crew_stop_grace_seconds)
            if child.is_alive():
                child.kill()
                child.join()

    def _follow(self, child: Any, link: Connection, sink: EventSink) -> CrewResult:
        """Publish the child's events until it reports its result; stop it once the task has ended."""
        kill_at: float | None = None  # once the task has ended: when the child's grace to stop runs out
        refused: StreamLimitExceeded | None = None
        while True:
            if kill_at is None and (sink.terminated or refused is not None):
                kill_at = time.monotonic() + self._settings.crew_stop_grace_seconds
                with contextlib.suppress(OSError):  # the child is gone; the EOF that follows says so
                    link.send(("stop",))
            elif kill_at is not None and time.monotonic() > kill_at:
                child.kill()
                kill_at = float("inf")
            if not link.poll(POLL_SECONDS):
                continue
            try:
                message = link.recv()
            except EOFError:
                if refused is not None:
                    raise refused from None
                child.join(self._settings.crew_stop_grace_seconds)
                raise CrewFailed(_died(child.exitcode)) from None
            kind = message[0]
            if kind == "event":
                _, agent_name, event_type, content, metadata = message
                try:
                    sink.publish(agent_name, EventType(event_type), content, metadata)
                except StreamLimitExceeded as exc:
                    refused = exc
            elif kind == "llm_call":
                record_llm_call(*self._model_labels, *message[1:])
            elif refused is not None:
                raise refused
            elif kind == "done":
                return CrewResult(message[1], message[2], message[3])
            elif kind == "failed":
                raise CrewFailed(TaskFailure(message[1], message[2]))
            elif kind == "stopped":
                raise CrewFailed(TaskFailure("stopped", "The task ended while its crew was running."))


def _died(exit_code: int | None) -> TaskFailure:
    how = f"was killed by signal {-exit_code}" if exit_code is not None and exit_code < 0 else f"exited ({exit_code})"
    return TaskFailure(
        "worker_died",
        f"The process running this task's crew {how} before the crew finished, so the task stopped. What it "
        "produced so far is kept; submit the requirement again. If it keeps happening, check the server's memory.",
    )


class _ParentLink(EventSink):
    """The child's EventSink: events and model-call metrics go over the pipe to the API process."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._connection.send(message)

    def publish(
        self, agent_name: str, event_type: EventType, content: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        if self.terminated:
            return
        self.send(("event", agent_name, event_type.value, content, metadata or {}))

    def record_llm_call(
        self, provider: str, model: str, outcome: str, seconds: float, usage: dict[str, object] | None
    ) -> None:
        self.send(("llm_call", outcome, seconds, usage))

    def listen_for_stop(self) -> None:
        try:
            while self._connection.recv()[0] != "stop":
                pass
        except (EOFError, OSError):
            pass
        self.ended.set()


def _ready() -> None:
    """A child that does nothing: starting it starts the forkserver."""


def _child_main(connection: Connection, job: CrewJob, model_labels: tuple[str, str]) -> None:
    from delivery_service.observability.logs import configure_logging, current_task_id

    os.nice(CHILD_NICENESS)
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    AGENTS.load_plugins(settings.agent_plugin_modules())
    current_task_id.set(job.task_id)
    if job.local_model is not None:
        local_model_server.adopt(job.local_model)
    link = _ParentLink(connection)
    threading.Thread(target=link.listen_for_stop, name="stop-listener", daemon=True).start()
    try:
        result = run_job(job, link, settings, model_labels, llm_calls=link.record_llm_call)
    except Exception as exc:
        if link.terminated:
            link.send(("stopped",))
        else:
            model = model_info(settings)
            failure = describe_failure(exc, settings, model.endpoint or model.provider)
            link.send(("failed", failure.kind, failure.message))
        return
    link.send(("done", result.outputs, result.usage, result.data))
