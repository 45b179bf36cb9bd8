"""Runs tasks in this process: admission, a priority line for worker slots, the two phases, and control.

A task's two phases (phases.py) run on a bounded pool of worker threads (each crew on its thread,
or in a child process with CREW_EXECUTION=process: see crew_execution.py). With `skip_confirmation: false` the task
pauses between them (`confirmation_required`) without holding a worker slot; the requester approves,
or rejects with feedback and the analysis is revised. Tasks beyond MAX_CONCURRENT_TASKS wait in line
by priority, up to MAX_QUEUED_TASKS. Cancel, the task timeout, the confirmation timeout and a server
stop all end a task the same way: they publish its terminal event, and its crew stops at its next
step (`CrewEventsHandler` refuses to go on once the stream has ended).

Everything here runs on the event loop, except `_run_phase`, which runs on a worker thread and only
publishes events. With REDIS_URL set, cluster/cluster_runner.py takes this module's place.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from delivery_service.llm.providers import ModelInfo, model_info
from delivery_service.observability.logs import current_task_id
from delivery_service.runs.control_messages import (
    QUEUE_FULL_RETRY_AFTER_SECONDS,
    NotAwaitingConfirmation,
    QueueFull,
    ThreadFull,
    not_awaiting,
    queued_notice,
)
from delivery_service.runs.crew_execution import ProcessCrews, ThreadCrews
from delivery_service.runs.phases import (
    CANCELLED_ON_REQUEST,
    Phase,
    PhaseOutcome,
    PhaseRunner,
    PhaseWork,
    decision,
    decision_expired,
    revisions_exhausted,
    timed_out,
)
from delivery_service.runs.queue import TaskQueue
from delivery_service.service_errors import ServiceStopping
from delivery_service.settings import Settings
from delivery_service.store.base import TaskStore
from delivery_service.store.outbox import messages_for
from delivery_service.store.records import FollowUp, TaskRecord, WebhookTarget
from delivery_service.store.task_event import SYSTEM_AGENT, EncodedEvent, EventType, TaskEvent, utc_now_iso
from delivery_service.task_streams import StreamManager, TaskStream

logger = logging.getLogger(__name__)

RESTART_MESSAGE = (
    "The server restarted while this task was queued or running, so the task did not finish. What it produced "
    "so far is kept; submit the requirement again to run it anew."
)
SHUTDOWN_MESSAGE = (
    "The server was stopped while this task was running, so the task did not finish. What it produced so far "
    "is kept; submit the requirement again to run it anew."
)


def fail_interrupted_tasks(store: TaskStore, public_url: str = "") -> int:
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
        store.save([record], [EncodedEvent.of(event)], messages_for(record, event, public_url))
    return len(interrupted)


def follow_up_of(parent: TaskRecord, request: str, revision: int) -> FollowUp:
    """A follow-up of `parent` (a completed task), starting from a copy of its deliverables."""
    return FollowUp(parent.task_id, parent.thread_id, revision, request, tuple(parent.deliverables))


@dataclass(frozen=True)
class TaskRequest:
    requirement: str
    skip_confirmation: bool
    stream_tokens: bool
    priority: int
    owner: str | None = None
    webhooks: tuple[WebhookTarget, ...] = ()

    def new_record(self, model: dict[str, Any], follow_up: FollowUp | None = None) -> TaskRecord:
        """The record of a new task for this request, with a fresh id."""
        return TaskRecord(
            task_id=str(uuid.uuid4()),
            requirement=self.requirement,
            skip_confirmation=self.skip_confirmation,
            stream_tokens=self.stream_tokens,
            priority=self.priority,
            model=model,
            owner=self.owner,
            follow_up=follow_up,
            webhooks=self.webhooks,
        )


@dataclass
class LiveTask:
    """What the runner knows of a task that has not ended.

    Event loop only, except `work`, which the task's one running phase updates on its worker thread
    (a task never has two phases running at once).
    """

    stream: TaskStream
    work: PhaseWork
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
        self._phases = PhaseRunner(settings, self._model, crews(settings, (self._model.provider, self._model.model)))
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_tasks, thread_name_prefix="crew")
        self._loop = asyncio.get_running_loop()
        self._live: dict[str, LiveTask] = {}
        self._waiting: TaskQueue[tuple[LiveTask, Phase]] = TaskQueue()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._revisions = asyncio.Lock()  # one follow-up at a time takes the next revision number
        self.accepting = True

    @property
    def model(self) -> ModelInfo:
        return self._model

    def load(self) -> tuple[list[str], int, int, int]:
        """For metrics: the status of every task not yet ended, how many wait, busy workers, all workers."""
        statuses = [task.stream.record.status.value for task in self._live.values()]
        return statuses, len(self._waiting), self._busy, self._settings.max_concurrent_tasks

    # --- requests ---------------------------------------------------------------------------------
    async def start(self, request: TaskRequest, follow_up: FollowUp | None = None) -> tuple[TaskRecord, bool]:
        """Store the task and put it in line. Returns the record and whether it waits for a worker.

        Raises ServiceStopping, QueueFull, or StoreUnavailable when the task cannot be stored.
        """
        if not self.accepting:
            raise ServiceStopping()
        if self._busy >= self._settings.max_concurrent_tasks and len(self._waiting) >= self._settings.max_queued_tasks:
            raise QueueFull(
                f"All {self._settings.max_concurrent_tasks} workers are busy and {len(self._waiting)} tasks are "
                f"waiting (MAX_QUEUED_TASKS). Submit the task again in {QUEUE_FULL_RETRY_AFTER_SECONDS} seconds."
            )
        record = request.new_record(self._model.public(), follow_up)
        task = LiveTask(await self._streams.create_stream(record), PhaseWork.of(record))
        self._live[record.task_id] = task
        return record, self._schedule(task, Phase.ANALYSIS)

    async def follow_up(self, parent: TaskRecord, text: str, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """Start a follow-up of `parent` with the next revision number of its thread (ThreadFull beyond
        MAX_THREAD_REVISIONS); otherwise as `start`."""
        async with self._revisions:
            members = await asyncio.to_thread(self._streams.store.thread, parent.thread_id)
            revision = max((member.revision for member in members), default=1) + 1
            if revision > self._settings.max_thread_revisions:
                raise ThreadFull(self._settings, parent.thread_id)
            return await self.start(request, follow_up_of(parent, text, revision))

    async def queue_position(self, task_id: str) -> int | None:
        return self._waiting.position(task_id)

    async def cancel(self, task_id: str) -> bool:
        """End a task that has not ended with `cancelled`; False (and no change) if it had already ended."""
        task = self._live.get(task_id)
        if task is None or task.stream.terminated:
            return False
        task.stream.publish_system(EventType.CANCELLED, *CANCELLED_ON_REQUEST)
        self._after_end(task)
        return True

    async def confirm(self, task_id: str, approved: bool, feedback: str) -> None:
        """Continue a task waiting for confirmation, or have its analysis revised with `feedback`."""
        task = self._live.get(task_id)
        if task is None or not task.awaiting or task.stream.terminated:
            raise not_awaiting(task_id)
        work = task.work
        if not approved and work.revisions >= self._settings.max_revisions:
            raise NotAwaitingConfirmation(revisions_exhausted(task_id, work.revisions))
        task.awaiting = False
        task.cancel_timers()
        if not approved:
            work.revisions += 1
            work.feedback = feedback
        task.stream.publish_system(
            EventType.ACTION, *decision(approved, feedback, work.revisions, self._settings.max_revisions)
        )
        self._schedule(task, Phase.DELIVERY if approved else Phase.ANALYSIS)

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
            task.stream.publish_system(EventType.ACTION, *queued_notice(position))
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
                lambda done, task=task, started=started: self._loop.call_soon_threadsafe(
                    self._phase_done, task, started, done
                )
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
            task.stream.publish_system(EventType.ERROR, *timed_out(self._settings))

    def _confirmation_expired(self, task: LiveTask) -> None:
        if not task.stream.terminated:
            task.stream.publish_system(EventType.CANCELLED, *decision_expired(self._settings))
        self._live.pop(task.task_id, None)

    # --- worker thread ----------------------------------------------------------------------------
    def _run_phase(self, task: LiveTask, phase: Phase) -> PhaseOutcome:
        """One phase of a task, on a worker thread."""
        return self._phases.run(task.work, phase, task.stream)
