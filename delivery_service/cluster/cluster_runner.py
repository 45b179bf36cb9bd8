"""Runs tasks across machines (REDIS_URL): API replicas admit and control tasks, Celery workers run them.

No replica holds anything of a task. `start` stores the task in Redis and sends its first phase to
the broker; `cancel` and `confirm` append their event through the same script as the workers, so a
confirm racing a confirm, or a cancel racing the worker's last event, has exactly one winner.
Every replica runs the `sweep` loop: it ends tasks whose worker's lease ran out (`error`,
`worker_died`), cancels tasks nobody confirmed in time, forgets dead workers and keeps the figures
for /metrics; the append script's conditions make sure one replica does each of these, once.

A cancel reaches the crew through the stream itself (the worker watches it and its appends are
refused); if the crew's process still runs CREW_STOP_GRACE_SECONDS later, it is revoked with SIGKILL.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import redis
import redis.asyncio

from delivery_service.cluster.celery_app import HIGHEST_PRIORITY, create_celery_app, revoke, send_phase
from delivery_service.cluster.redis_event_log import (
    APPEND_SCRIPT,
    AWAITING,
    QUEUED,
    RUNNING,
    TASKS,
    WORKERS,
    AppendRefused,
    AppendRequest,
    Condition,
    TaskKeys,
    now_ms,
    owner_tasks,
    thread_revisions,
    thread_tasks,
    unsequenced_event,
)
from delivery_service.cluster.redis_outbox import webhook_targets_json
from delivery_service.cluster.store import WORK_FIELDS, work_fields, work_from_fields
from delivery_service.llm.providers import ModelInfo, model_info
from delivery_service.runs.control_messages import (
    QUEUE_FULL_RETRY_AFTER_SECONDS,
    NotAwaitingConfirmation,
    QueueFull,
    ThreadFull,
    not_awaiting,
    queued_notice,
)
from delivery_service.runs.phases import (
    CANCELLED_ON_REQUEST,
    Phase,
    decision,
    decision_expired,
    revisions_exhausted,
    worker_lost,
)
from delivery_service.runs.task_runner import TaskRequest, follow_up_of
from delivery_service.service_errors import ServiceStopping
from delivery_service.settings import Settings
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.records import FollowUp, TaskRecord
from delivery_service.store.task_event import SYSTEM_AGENT, EventType

logger = logging.getLogger(__name__)

PRIORITY_RANK_MS = 10**13  # a queue rank: (HIGHEST_PRIORITY - priority) * this + arrival time in ms


class ClusterRunner:
    """Admission and control of tasks run by Celery workers; see the module docstring."""

    def __init__(self, settings: Settings, client: redis.asyncio.Redis) -> None:
        self._settings = settings
        self._redis = client
        self._append_script = client.register_script(APPEND_SCRIPT)
        self._celery = create_celery_app(settings)
        self._model = model_info(settings)
        self._load: tuple[list[str], int, int, int] = ([], 0, 0, 0)
        self._background: set[asyncio.Task[None]] = set()
        self.accepting = True

    @property
    def model(self) -> ModelInfo:
        return self._model

    def load(self) -> tuple[list[str], int, int, int]:
        """For metrics, as of the last sweep: unfinished tasks' statuses, queued, running, live worker processes."""
        return self._load

    async def queue_position(self, task_id: str) -> int | None:
        rank = await self._redis.zrank(QUEUED, task_id)
        return None if rank is None else int(rank) + 1

    # --- requests ---------------------------------------------------------------------------------
    async def start(self, request: TaskRequest, follow_up: FollowUp | None = None) -> tuple[TaskRecord, bool]:
        """Store the task in Redis and queue its first phase. Returns the record and whether it waits."""
        if not self.accepting:
            raise ServiceStopping()
        record = request.new_record(self._model.public(), follow_up)
        keys = TaskKeys(record.task_id)
        dispatch_id = uuid.uuid4().hex
        try:
            queued = int(await self._redis.zcard(QUEUED))
            if queued >= self._settings.max_queued_tasks:
                raise QueueFull(
                    f"{queued} tasks are waiting for a worker (MAX_QUEUED_TASKS). Submit the task again in "
                    f"{QUEUE_FULL_RETRY_AFTER_SECONDS} seconds, or add workers."
                )
            created_ms = now_ms()
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    keys.meta,
                    mapping={
                        "request": record.to_json(),
                        "record": record.to_json(),
                        "applied": 0,
                        "applied_id": "0-0",
                        "seq": 0,
                        "bytes": 0,
                        "priority": record.priority,
                        "dispatch": dispatch_id,
                        "webhooks": webhook_targets_json(record),
                    },
                )
                pipe.zadd(TASKS, {record.task_id: created_ms})
                if record.owner:
                    pipe.zadd(owner_tasks(record.owner), {record.task_id: created_ms})
                if record.follow_up:
                    pipe.zadd(thread_tasks(record.thread_id), {record.task_id: created_ms})
                await pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis did not answer storing the task: {exc}") from exc
        waits = await self._enqueue(record.task_id, Phase.ANALYSIS, dispatch_id, record.priority)
        return record, waits

    async def follow_up(self, parent: TaskRecord, text: str, request: TaskRequest) -> tuple[TaskRecord, bool]:
        """Start a follow-up of `parent` with the next revision number of its thread, given out by Redis to
        one replica at a time (ThreadFull beyond MAX_THREAD_REVISIONS); otherwise as `start`."""
        counter = thread_revisions(parent.thread_id)
        try:
            await self._redis.set(counter, 1, nx=True)
            revision = int(await self._redis.incr(counter))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis did not answer numbering the follow-up: {exc}") from exc
        if revision > self._settings.max_thread_revisions:
            raise ThreadFull(self._settings, parent.thread_id)
        return await self.start(request, follow_up_of(parent, text, revision))

    async def cancel(self, task_id: str) -> bool:
        """End a task that has not ended with `cancelled`; False (and no change) if it had already ended."""
        if await self._append(task_id, EventType.CANCELLED, *CANCELLED_ON_REQUEST) <= 0:
            return False
        self._in_background(self._kill_if_still_running(task_id))
        return True

    async def confirm(self, task_id: str, approved: bool, feedback: str) -> None:
        """Continue a task waiting for confirmation, or have its analysis revised with `feedback`."""
        try:
            *stored, priority = await self._redis.hmget(TaskKeys(task_id).meta, [*WORK_FIELDS, "priority"])
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis did not answer reading task {task_id}: {exc}") from exc
        if stored[0] is None:
            raise not_awaiting(task_id)
        work = work_from_fields(stored)
        if not approved and work.revisions >= self._settings.max_revisions:
            raise NotAwaitingConfirmation(revisions_exhausted(task_id, work.revisions))
        if not approved:
            work.revisions += 1
            work.feedback = feedback
        dispatch_id = uuid.uuid4().hex
        handover = work_fields(work) | {"dispatch": dispatch_id}
        content, metadata = decision(approved, feedback, work.revisions, self._settings.max_revisions)
        if await self._append(task_id, EventType.ACTION, content, metadata, Condition.AWAITING, handover) <= 0:
            raise not_awaiting(task_id)
        await self._enqueue(task_id, Phase.DELIVERY if approved else Phase.ANALYSIS, dispatch_id, int(priority or 0))

    async def drain(self, grace_seconds: float) -> int:
        """Stop taking tasks. Tasks run on the workers, so a replica has nothing of its own to end."""
        self.accepting = False
        return 0

    # --- internals --------------------------------------------------------------------------------
    async def _enqueue(self, task_id: str, phase: Phase, dispatch_id: str, priority: int) -> bool:
        """Put a phase in line and send it to the broker. Returns whether it has to wait for a worker."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(QUEUED, {task_id: (HIGHEST_PRIORITY - priority) * PRIORITY_RANK_MS + now_ms()})
                pipe.zcard(QUEUED)
                pipe.zcard(RUNNING)
                pipe.zcount(WORKERS, now_ms(), "+inf")
                _, queued, running, workers = await pipe.execute()
            waits = queued + running > workers
            if waits:  # before the message is sent, so no worker can have started the phase yet
                position = await self.queue_position(task_id)
                await self._append(task_id, EventType.ACTION, *queued_notice(position))
            await asyncio.to_thread(
                send_phase, self._celery, self._settings, task_id, phase.value, dispatch_id, priority
            )
        except Exception as exc:
            await self._append(
                task_id,
                EventType.ERROR,
                "The task could not be handed to a worker (the message broker did not answer), so it did not run. "
                "Submit it again shortly.",
                {"error_type": "broker_unavailable"},
            )
            raise StoreUnavailable(f"The task could not be queued: {exc}") from exc
        return waits

    async def _append(
        self,
        task_id: str,
        event_type: EventType,
        content: str,
        metadata: dict[str, Any],
        condition: Condition | None = None,
        fields: dict[str, str] | None = None,
    ) -> int:
        """Append a System event through the script: its sequence, or an AppendRefused code (<= 0)."""
        event = unsequenced_event(task_id, SYSTEM_AGENT, event_type, content, metadata, self._settings)
        request = AppendRequest.of(event, self._settings, condition=condition, fields=fields)
        try:
            return int(await self._append_script(keys=request.keys, args=request.args))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis did not answer appending an event to task {task_id}: {exc}") from exc

    def _in_background(self, job: Any) -> None:
        task = asyncio.create_task(job)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _kill_if_still_running(self, task_id: str) -> None:
        """The fallback of a cancel: kill the crew's process if it has not stopped within the grace."""
        await asyncio.sleep(self._settings.crew_stop_grace_seconds)
        worker_task = await self._redis.hget(TaskKeys(task_id).meta, "worker_task")
        if worker_task is not None:
            logger.warning("the crew did not stop within CREW_STOP_GRACE_SECONDS; revoking its worker process")
            await asyncio.to_thread(revoke, self._celery, worker_task.decode())

    # --- every replica, periodically ------------------------------------------------------------------
    async def sweep_forever(self) -> None:
        """End tasks of dead workers, cancel unconfirmed tasks past their deadline, refresh the load."""
        period = min(max(self._settings.worker_lease_seconds / 3, 0.2), 5.0)
        while True:
            try:
                await self.sweep()
            except (redis.RedisError, StoreUnavailable) as exc:
                logger.warning("sweeping tasks failed: %s", exc)
            await asyncio.sleep(period)

    async def sweep(self) -> None:
        now = now_ms()
        overdue = (
            (Condition.LEASE_EXPIRED, EventType.ERROR, worker_lost(self._settings)),
            (Condition.DECISION_EXPIRED, EventType.CANCELLED, decision_expired(self._settings)),
        )
        for condition, event_type, (content, metadata) in overdue:
            for member in await self._redis.zrangebyscore(condition.index, "-inf", now):
                task_id = member.decode()
                result = await self._append(task_id, event_type, content, metadata, condition)
                if result > 0:
                    logger.warning("task %s ended with %s: %s", task_id, event_type.value, condition.value)
                elif result == AppendRefused.UNKNOWN_TASK:  # its keys are gone (deleted, or evicted by Redis)
                    await self._redis.zrem(condition.index, task_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(WORKERS, "-inf", now)
            pipe.zcard(QUEUED)
            pipe.zcard(RUNNING)
            pipe.zcard(AWAITING)
            pipe.zcard(WORKERS)
            _, queued, running, awaiting, workers = await pipe.execute()
        statuses = ["queued"] * queued + ["running"] * running + ["awaiting_confirmation"] * awaiting
        self._load = (statuses, int(queued), int(running), int(workers))

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        self._celery.close()
