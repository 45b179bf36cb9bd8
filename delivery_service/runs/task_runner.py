"""Runs tasks in this process: the embedded `TaskLog` and `PhaseDispatch` of `TaskControl` (task_control.py).

Phases run on a pool of MAX_CONCURRENT_TASKS worker threads; a task waiting for a decision holds no slot.
Appends go through the task's `TaskStream`, whose lock assigns sequences; the conditions of an append are
checked here. A task's deadline (its running time, or its decision's) is kept with it, and a timer runs
the control's sweep when it passes. Everything runs on the event loop but the phases.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from delivery_service.observability.logs import current_task_id
from delivery_service.runs.control_messages import QUEUE_FULL_RETRY_AFTER_SECONDS, QueueFull
from delivery_service.runs.phases import Phase, PhaseOutcome, PhaseRunner, PhaseWork
from delivery_service.runs.queue import TaskQueue
from delivery_service.runs.task_control import AppendRefused, Condition, Load
from delivery_service.settings import Settings
from delivery_service.store.base import TaskStore
from delivery_service.store.outbox import messages_for
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import SYSTEM_AGENT, EncodedEvent, EventType, TaskEvent, utc_now_iso
from delivery_service.task_streams import StreamManager, TaskStream

RESTART_MESSAGE = (
    "The server restarted while this task was queued or running, so the task did not finish. What it produced "
    "so far is kept; submit the requirement again to run it anew."
)
DEADLINE_SLACK_SECONDS = 0.01  # a timer may fire this early and still find its deadline passed


def fail_interrupted_tasks(store: TaskStore, public_url: str = "") -> int:
    """End every task a previous process left unfinished with one terminal `error`, the next sequence after
    its last stored one (at start-up)."""
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


@dataclass
class LiveTask:
    """What the runner knows of a task that has not ended. Event loop only, except `work`, which the task's
    one running phase updates on its worker thread."""

    stream: TaskStream
    work: PhaseWork
    awaiting: bool = False
    running: bool = False
    running_seconds: float = 0.0
    deadline: tuple[float, Condition] | None = None  # loop time, and what passes then
    timer: asyncio.TimerHandle | None = None

    @property
    def task_id(self) -> str:
        return self.stream.task_id

    def clear_deadline(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.deadline = self.timer = None


class TaskRunner:
    """The embedded mode's task log and worker pool; see the module docstring."""

    def __init__(self, settings: Settings, streams: StreamManager) -> None:
        self._settings = settings
        self._streams = streams
        self._phases = PhaseRunner(settings, crews_in_processes=settings.crew_execution == "process")
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrent_tasks, thread_name_prefix="crew")
        self._loop = asyncio.get_running_loop()
        self._live: dict[str, LiveTask] = {}
        self._waiting: TaskQueue[tuple[LiveTask, Phase]] = TaskQueue()
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._revisions = asyncio.Lock()  # one follow-up at a time takes the next revision number
        self._stopping = False
        self._sweep: Callable[[], Awaitable[None]] | None = None
        self._sweeps: set[asyncio.Task[None]] = set()

    # --- TaskLog ----------------------------------------------------------------------------------
    async def create(self, record: TaskRecord, dispatch_id: str) -> None:
        task = LiveTask(await self._streams.create_stream(record), PhaseWork.of(record))
        self._live[record.task_id] = task

    async def append(
        self,
        task_id: str,
        event_type: EventType,
        content: str,
        metadata: dict[str, Any],
        condition: Condition | None = None,
        handover: tuple[PhaseWork, str] | None = None,
    ) -> int:
        task = self._live.get(task_id)
        if task is None:
            return AppendRefused.UNKNOWN_TASK
        if task.stream.terminated:
            return AppendRefused.ENDED
        if condition is not None:
            if not self._holds(task, condition):
                return AppendRefused.CONDITION_FAILED
            task.clear_deadline()
            task.awaiting = False
        if handover is not None:
            task.work = handover[0]
        event = task.stream.publish(SYSTEM_AGENT, event_type, content, metadata)
        if event is None:
            return AppendRefused.ENDED
        if event.is_terminal:
            self._forget(task)
        return event.sequence

    @contextlib.asynccontextmanager
    async def revision(self, thread_id: str) -> AsyncIterator[int]:
        async with self._revisions:
            members = await asyncio.to_thread(self._streams.store.thread, thread_id)
            yield max((member.revision for member in members), default=1) + 1

    async def awaiting(self, task_id: str) -> tuple[PhaseWork, int] | None:
        task = self._live.get(task_id)
        if task is None or not task.awaiting or task.stream.terminated:
            return None
        return task.work, task.stream.record.priority

    async def overdue(self) -> list[tuple[str, Condition]]:
        return [(task.task_id, task.deadline[1]) for task in self._live.values() if self._due(task)]

    def sweep_at_deadlines(self, sweep: Callable[[], Awaitable[None]]) -> None:
        self._sweep = sweep

    def _holds(self, task: LiveTask, condition: Condition) -> bool:
        if condition is Condition.AWAITING:
            return task.awaiting
        return self._due(task) and task.deadline is not None and task.deadline[1] is condition

    def _due(self, task: LiveTask) -> bool:
        return task.deadline is not None and task.deadline[0] <= self._loop.time() + DEADLINE_SLACK_SECONDS

    def _set_deadline(self, task: LiveTask, seconds: float, condition: Condition) -> None:
        task.clear_deadline()
        task.deadline = (self._loop.time() + seconds, condition)
        task.timer = self._loop.call_later(seconds, self._run_sweep)

    def _run_sweep(self) -> None:
        if self._sweep is not None:
            sweep = asyncio.ensure_future(self._sweep())
            self._sweeps.add(sweep)
            sweep.add_done_callback(self._sweeps.discard)

    def _forget(self, task: LiveTask) -> None:
        """Forget a task that ended; a running phase is forgotten when its crew has stopped."""
        task.clear_deadline()
        task.awaiting = False
        self._waiting.remove(task.task_id)
        if not task.running:
            self._live.pop(task.task_id, None)

    # --- PhaseDispatch ----------------------------------------------------------------------------
    async def check_room(self) -> None:
        if self._busy >= self._settings.max_concurrent_tasks and len(self._waiting) >= self._settings.max_queued_tasks:
            raise QueueFull(
                f"All {self._settings.max_concurrent_tasks} workers are busy and {len(self._waiting)} tasks are "
                f"waiting (MAX_QUEUED_TASKS). Submit the task again in {QUEUE_FULL_RETRY_AFTER_SECONDS} seconds."
            )

    async def line_up(self, task_id: str, phase: Phase, priority: int) -> int | None:
        self._waiting.push(task_id, priority, (self._live[task_id], phase))
        self._dispatch()
        return self._waiting.position(task_id)

    async def send(self, task_id: str, phase: Phase, dispatch_id: str, priority: int) -> None:
        """Nothing to send: `line_up` started the phase, or a worker thread will when one is free."""

    async def position(self, task_id: str) -> int | None:
        return self._waiting.position(task_id)

    async def stop_crew(self, task_id: str) -> None:
        """Nothing to do: the crew's thread sees the stream end at its next step."""

    async def stop(self, grace_seconds: float) -> list[str]:
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout=grace_seconds)
        self._pool.shutdown(wait=False, cancel_futures=True)
        return [task.task_id for task in self._live.values() if not task.stream.terminated]

    async def refresh(self) -> None:
        """Nothing to recount: the load is read live."""

    def load(self) -> Load:
        statuses = [task.stream.record.status.value for task in self._live.values()]
        return statuses, len(self._waiting), self._busy, self._settings.max_concurrent_tasks

    async def close(self) -> None:
        for sweep in list(self._sweeps):
            sweep.cancel()

    def _dispatch(self) -> None:
        """Start waiting phases while there are free slots (none once the service is stopping)."""
        while not self._stopping and self._busy < self._settings.max_concurrent_tasks and len(self._waiting):
            task, phase = self._waiting.pop()
            task.running = True
            self._busy += 1
            self._idle.clear()
            started = self._loop.time()
            remaining = self._settings.task_timeout_seconds - task.running_seconds
            self._set_deadline(task, max(remaining, 0), Condition.TASK_EXPIRED)
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
        task.clear_deadline()
        outcome = PhaseOutcome.ENDED if done.cancelled() or done.exception() else done.result()
        if outcome is PhaseOutcome.AWAITING_CONFIRMATION and not task.stream.terminated:
            task.awaiting = True
            self._set_deadline(task, self._settings.confirmation_timeout_seconds, Condition.DECISION_EXPIRED)
        else:
            self._live.pop(task.task_id, None)
        if self._busy == 0:
            self._idle.set()
        self._dispatch()

    def _run_phase(self, task: LiveTask, phase: Phase) -> PhaseOutcome:
        """One phase of a task, on a worker thread (bench/event_pump_app.py replaces it with an event pump)."""
        return self._phases.run(task.work, phase, task.stream)
