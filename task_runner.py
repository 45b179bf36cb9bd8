"""Runs tasks: admission, a priority line for worker slots, the two phases of a delivery, and control.

A task runs as two crews on a bounded pool of worker threads (each crew on its thread, or in a child
process with CREW_EXECUTION=process: see crew_execution): the *analysis* (ProductManager), then
the *delivery* (QAEngineer, SoftwareDeveloper, Coordinator). With `skip_confirmation: false` the task
pauses between them (`confirmation_required`) without holding a worker slot; the requester approves,
or rejects with feedback and the analysis is revised. Tasks beyond MAX_CONCURRENT_TASKS wait in line
by priority, up to MAX_QUEUED_TASKS. Cancel, the task timeout, the confirmation timeout and a server
stop all end a task the same way: they publish its terminal event, and its crew stops at its next
step (`CrewEventsHandler` refuses to go on once the stream has ended).

Everything here runs on the event loop, except `_run_phase`, which runs on a worker thread and only
publishes events.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agents_config import AGENT_NAMES
from crew_execution import CrewFailed, CrewJob, ProcessCrews, ThreadCrews
from crew_factory import ANALYSIS_STEPS, DELIVERY_STEPS, Revision, delivery_summary
from llm_errors import describe_failure
from llm_providers import ModelInfo, model_info
from log_config import current_task_id
from settings import Settings
from stream_manager import StreamManager, TaskStream
from task_events import SYSTEM_AGENT, EncodedEvent, EventType, TaskEvent, utc_now_iso
from task_queue import TaskQueue
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
QUEUE_FULL_RETRY_AFTER_SECONDS = 30


def fail_interrupted_tasks(store: TaskStore) -> int:
    """End every task a previous process left unfinished with one terminal `error` (at start-up).

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
        store.save([record], [EncodedEvent.of(event)])
    return len(interrupted)


class ServiceStopping(RuntimeError):
    """The service is shutting down and takes no new tasks."""


class QueueFull(RuntimeError):
    """Every worker slot is busy and the waiting line is full."""

    retry_after_seconds = QUEUE_FULL_RETRY_AFTER_SECONDS


class NotAwaitingConfirmation(RuntimeError):
    """A decision was sent for a task that is not waiting for one."""


class Phase(enum.Enum):
    ANALYSIS = "analysis"
    DELIVERY = "delivery"


class PhaseOutcome(enum.Enum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    ENDED = "ended"


@dataclass(frozen=True)
class TaskRequest:
    requirement: str
    skip_confirmation: bool
    stream_tokens: bool
    priority: int
    owner: str | None = None


@dataclass
class LiveTask:
    """What the runner knows of a task that has not ended.

    Event loop only, except `usage` and `analysis`, which the task's one running phase updates on its
    worker thread (a task never has two phases running at once).
    """

    stream: TaskStream
    phase: Phase = Phase.ANALYSIS
    revision: Revision | None = None
    revisions: int = 0
    analysis: str = ""
    usage: dict[str, int] = field(default_factory=dict)
    awaiting: bool = False
    running: bool = False
    running_seconds: float = 0.0
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return self.stream.task_id

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()


class TaskRunner:
    """Admission, scheduling and control of tasks; see the module docstring."""

    def __init__(self, settings: Settings, streams: StreamManager) -> None:
        self._settings = settings
        self._streams = streams
        self._model = model_info(settings)
        crews = ProcessCrews if settings.crew_execution == "process" else ThreadCrews
        self._crews: ThreadCrews | ProcessCrews = crews(settings, (self._model.provider, self._model.model))
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_tasks, thread_name_prefix="crew")
        self._loop = asyncio.get_running_loop()
        self._live: dict[str, LiveTask] = {}
        self._waiting: TaskQueue[tuple[LiveTask, Phase]] = TaskQueue()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.accepting = True

    @property
    def model(self) -> ModelInfo:
        return self._model

    def queue_position(self, task_id: str) -> int | None:
        return self._waiting.position(task_id)

    def load(self) -> tuple[list[str], int, int]:
        """For metrics: the status of every task not yet ended, how many wait, how many workers are busy."""
        return [task.stream.record.status.value for task in self._live.values()], len(self._waiting), self._busy

    # --- requests ---------------------------------------------------------------------------------
    async def start(self, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """Store the task and put it in line. Returns the record and whether it waits for a worker.

        Raises ServiceStopping, QueueFull, or StoreUnavailable when the task cannot be stored.
        """
        if not self.accepting:
            raise ServiceStopping("The service is shutting down and takes no new tasks. Submit the task again shortly.")
        if self._busy >= self._settings.max_concurrent_tasks and len(self._waiting) >= self._settings.max_queued_tasks:
            raise QueueFull(
                f"All {self._settings.max_concurrent_tasks} workers are busy and {len(self._waiting)} tasks are "
                f"waiting (MAX_QUEUED_TASKS). Submit the task again in {QUEUE_FULL_RETRY_AFTER_SECONDS} seconds."
            )
        record = TaskRecord(
            task_id=str(uuid.uuid4()),
            requirement=request.requirement,
            skip_confirmation=request.skip_confirmation,
            stream_tokens=request.stream_tokens,
            priority=request.priority,
            model=self._model.public(),
            owner=request.owner,
        )
        task = LiveTask(await self._streams.create_stream(record))
        self._live[record.task_id] = task
        return record, self._schedule(task, Phase.ANALYSIS)

    def cancel(self, task_id: str) -> bool:
        """End a task that has not ended with `cancelled`; False (and no change) if it had already ended."""
        task = self._live.get(task_id)
        if task is None or task.stream.terminated:
            return False
        task.stream.publish_system(EventType.CANCELLED, "The task was cancelled at the requester's request.", {"reason": "requested"})
        self._after_end(task)
        return True

    def confirm(self, task_id: str, approved: bool, feedback: str) -> None:
        """Continue a task waiting for confirmation, or have its analysis revised with `feedback`."""
        task = self._live.get(task_id)
        if task is None or not task.awaiting or task.stream.terminated:
            raise NotAwaitingConfirmation(f"Task {task_id} is not waiting for a confirmation.")
        if not approved and task.revisions >= self._settings.max_revisions:
            raise NotAwaitingConfirmation(
                f"The analysis of task {task_id} was already revised {task.revisions} times (MAX_REVISIONS). "
                "Approve it, or cancel the task and submit a clearer requirement."
            )
        task.awaiting = False
        task.cancel_timers()
        if approved:
            task.stream.publish_system(
                EventType.ACTION, "The analysis was approved: the delivery continues.", {"kind": "resumed", "decision": "approved"}
            )
            self._schedule(task, Phase.DELIVERY)
            return
        task.revisions += 1
        task.revision = Revision(analysis=task.analysis, feedback=feedback)
        task.stream.publish_system(
            EventType.ACTION,
            f"The analysis was rejected with feedback: the ProductManager revises it (revision {task.revisions} of "
            f"{self._settings.max_revisions}).",
            {"kind": "resumed", "decision": "rejected", "feedback": feedback, "revision": task.revisions},
        )
        self._schedule(task, Phase.ANALYSIS)

    async def drain(self, grace_seconds: float) -> int:
        """Stop taking tasks, let running ones finish for up to `grace_seconds`, then end the rest.

        Every task still unfinished (running, waiting in line or for a confirmation) gets one terminal
        `error` saying the server stopped. Returns how many tasks were ended that way.
        """
        self.accepting = False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace_seconds)
        self._pool.shutdown(wait=False, cancel_futures=True)
        unfinished = [task for task in self._live.values() if not task.stream.terminated]
        for task in unfinished:
            task.stream.publish_system(EventType.ERROR, SHUTDOWN_MESSAGE, {"error_type": "server_stopped"})
            self._after_end(task)
        return len(unfinished)

    # --- scheduling -------------------------------------------------------------------------------
    def _schedule(self, task: LiveTask, phase: Phase) -> bool:
        """Put a phase of a task in line and start what can start. Returns whether it has to wait."""
        self._waiting.push(task.task_id, task.stream.record.priority, (task, phase))
        self._dispatch()
        position = self._waiting.position(task.task_id)
        if position is not None:
            task.stream.publish_system(
                EventType.ACTION,
                f"Waiting for a worker: position {position} in the queue.",
                {"kind": "queued", "queue_position": position},
            )
        return position is not None

    def _dispatch(self) -> None:
        """Start waiting phases while there are free slots (none once the service is stopping)."""
        while self.accepting and self._busy < self._settings.max_concurrent_tasks and len(self._waiting):
            task, phase = self._waiting.pop()
            task.running = True
            self._busy += 1
            self._idle.clear()
            started = self._loop.time()
            remaining = self._settings.task_timeout_seconds - task.running_seconds
            task.timers.append(self._loop.call_later(max(remaining, 0), self._time_out, task))
            context = contextvars.copy_context()
            context.run(current_task_id.set, task.task_id)
            future = self._pool.submit(context.run, self._run_phase, task, phase)
            future.add_done_callback(
                lambda done, task=task, started=started: self._loop.call_soon_threadsafe(self._phase_done, task, started, done)
            )

    def _phase_done(self, task: LiveTask, started: float, done: Future[PhaseOutcome]) -> None:
        self._busy -= 1
        task.running = False
        task.running_seconds += self._loop.time() - started
        task.cancel_timers()
        outcome = PhaseOutcome.ENDED if done.cancelled() or done.exception() else done.result()
        if outcome is PhaseOutcome.AWAITING_CONFIRMATION and not task.stream.terminated:
            task.awaiting = True
            task.timers.append(
                self._loop.call_later(self._settings.confirmation_timeout_seconds, self._confirmation_expired, task)
            )
        else:
            self._live.pop(task.task_id, None)
        if self._busy == 0:
            self._idle.set()
        self._dispatch()

    def _after_end(self, task: LiveTask) -> None:
        """Forget a task that ended from outside; a running phase is forgotten when its crew has stopped."""
        task.cancel_timers()
        task.awaiting = False
        self._waiting.remove(task.task_id)
        if not task.running:
            self._live.pop(task.task_id, None)

    def _time_out(self, task: LiveTask) -> None:
        if not task.stream.terminated:
            task.stream.publish_system(
                EventType.ERROR,
                f"The task ran longer than TASK_TIMEOUT_SECONDS={self._settings.task_timeout_seconds:g} s, so it was "
                "stopped. Raise TASK_TIMEOUT_SECONDS for long runs, or submit a smaller requirement.",
                {"error_type": "task_timeout"},
            )

    def _confirmation_expired(self, task: LiveTask) -> None:
        if not task.stream.terminated:
            task.stream.publish_system(
                EventType.CANCELLED,
                "No decision on the requirements analysis arrived within CONFIRMATION_TIMEOUT_SECONDS="
                f"{self._settings.confirmation_timeout_seconds:g} s, so the task was cancelled. Submit it again, "
                "or start it with skip_confirmation: true.",
                {"reason": "confirmation_timeout"},
            )
        self._live.pop(task.task_id, None)

    # --- worker thread ----------------------------------------------------------------------------
    def _run_phase(self, task: LiveTask, phase: Phase) -> PhaseOutcome:
        """One phase of a task, on a worker thread; ends by publishing or by awaiting a decision."""
        stream = task.stream
        record = stream.record
        if stream.terminated:
            return PhaseOutcome.ENDED
        try:
            if phase is Phase.ANALYSIS and task.revisions == 0:
                logger.info("task started on %s/%s", self._model.provider, self._model.model)
                stream.publish_system(
                    EventType.START,
                    f"Task started on {self._model.provider} model {self._model.model}",
                    {"model": self._model.public(), "total_steps": len(AGENT_NAMES), "agents": list(AGENT_NAMES)},
                )
            if phase is Phase.ANALYSIS:
                task.analysis = self._run_crew(task, ANALYSIS_STEPS, revision=task.revision)
                if not record.skip_confirmation:
                    self._ask_for_confirmation(task)
                    return PhaseOutcome.AWAITING_CONFIRMATION
            review = self._run_crew(task, DELIVERY_STEPS, analysis=task.analysis)
            logger.info("task completed")
            stream.publish_system(EventType.END, delivery_summary(review), {"usage": task.usage, "deliverables": 4})
        except Exception as exc:
            if stream.terminated:
                return PhaseOutcome.ENDED
            failure = (
                exc.failure
                if isinstance(exc, CrewFailed)
                else describe_failure(exc, self._settings, self._model.endpoint or self._model.provider)
            )
            logger.warning("task failed: %s (%s)", failure.kind, type(exc).__name__)
            stream.publish_system(EventType.ERROR, failure.message, {"error_type": failure.kind})
        return PhaseOutcome.ENDED

    def _run_crew(self, task: LiveTask, steps: tuple[int, ...], **inputs: Any) -> str:
        """One crew of a task (some of its steps), from a worker thread; returns the last deliverable."""
        record = task.stream.record
        job = CrewJob(task.task_id, record.requirement, record.stream_tokens, steps, **inputs)
        result = self._crews.run(job, task.stream)
        for key, value in result.usage.items():
            task.usage[key] = task.usage.get(key, 0) + value
        return result.output

    def _ask_for_confirmation(self, task: LiveTask) -> None:
        left = self._settings.max_revisions - task.revisions
        question = (
            "The requirements analysis is ready for your review. Approve it to continue with the test plan, the "
            "technical design and the delivery review, or reject it with feedback to have it revised "
            f"({left} revision{'s' if left != 1 else ''} left)."
        )
        task.stream.publish_system(
            EventType.CONFIRMATION_REQUIRED,
            f"{question}\n\n{delivery_summary(task.analysis)[:1500]}",
            {
                "question": question,
                "revision": task.revisions,
                "max_revisions": self._settings.max_revisions,
                "timeout_seconds": self._settings.confirmation_timeout_seconds,
            },
        )

