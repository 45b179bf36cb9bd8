"""The cluster's `TaskLog` and `PhaseDispatch` of `TaskControl` (runs/task_control.py): Redis and Celery.

No replica holds anything of a task. Appends run `APPEND_SCRIPT`, whose conditions are the AWAITING and
RUNNING sorted sets, scored by deadlines every replica sweeps. A crew's process still running
CREW_STOP_GRACE_SECONDS after a cancel is revoked with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
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
    AppendRequest,
    TaskKeys,
    condition_index,
    now_ms,
    owner_tasks,
    redis_answers,
    thread_revisions,
    thread_tasks,
    unsequenced_event,
)
from delivery_service.cluster.redis_outbox import webhook_targets_json
from delivery_service.cluster.store import WORK_FIELDS, work_fields, work_from_fields
from delivery_service.runs.control_messages import QUEUE_FULL_RETRY_AFTER_SECONDS, QueueFull
from delivery_service.runs.phases import Phase, PhaseWork
from delivery_service.runs.task_control import AppendRefused, Condition, Load
from delivery_service.settings import Settings
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import SYSTEM_AGENT, EventType

logger = logging.getLogger(__name__)

PRIORITY_RANK_MS = 10**13  # a queue rank: (HIGHEST_PRIORITY - priority) * this + arrival time in ms
OVERDUE_CONDITIONS = (Condition.LEASE_EXPIRED, Condition.DECISION_EXPIRED)


def sweep_period(settings: Settings) -> float:
    """How often each replica sweeps: a third of the lease, within 0.2..5 s."""
    return min(max(settings.worker_lease_seconds / 3, 0.2), 5.0)


class ClusterRunner:
    """Tasks in Redis, phases to Celery workers; see the module docstring."""

    def __init__(self, settings: Settings, client: redis.asyncio.Redis) -> None:
        self._settings = settings
        self._redis = client
        self._append_script = client.register_script(APPEND_SCRIPT)
        self._celery = create_celery_app(settings)
        self._load: Load = ([], 0, 0, 0)
        self._background: set[asyncio.Task[None]] = set()

    # --- TaskLog ----------------------------------------------------------------------------------
    async def create(self, record: TaskRecord, dispatch_id: str) -> None:
        keys = TaskKeys(record.task_id)
        created_ms = now_ms()
        with redis_answers("storing the task"):
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

    async def append(
        self,
        task_id: str,
        event_type: EventType,
        content: str,
        metadata: dict[str, Any],
        condition: Condition | None = None,
        handover: tuple[PhaseWork, str] | None = None,
    ) -> int:
        event = unsequenced_event(task_id, SYSTEM_AGENT, event_type, content, metadata, self._settings)
        fields = None if handover is None else work_fields(handover[0]) | {"dispatch": handover[1]}
        request = AppendRequest.of(event, self._settings, condition=condition, fields=fields)
        with redis_answers(f"appending an event to task {task_id}"):
            result = int(await self._append_script(keys=request.keys, args=request.args))
            if result == AppendRefused.UNKNOWN_TASK and request.held_in:  # its keys are gone (deleted, evicted)
                await self._redis.zrem(request.held_in, task_id)
        return result

    @contextlib.asynccontextmanager
    async def revision(self, thread_id: str) -> AsyncIterator[int]:
        """Given out by Redis (INCR) to one replica at a time."""
        counter = thread_revisions(thread_id)
        with redis_answers("numbering the follow-up"):
            await self._redis.set(counter, 1, nx=True)
            revision = int(await self._redis.incr(counter))
        yield revision

    async def awaiting(self, task_id: str) -> tuple[PhaseWork, int] | None:
        """The work saved with `confirmation_required` (the append's condition says whether it still waits)."""
        with redis_answers(f"reading task {task_id}"):
            *stored, priority = await self._redis.hmget(TaskKeys(task_id).meta, [*WORK_FIELDS, "priority"])
        return None if stored[0] is None else (work_from_fields(stored), int(priority or 0))

    async def overdue(self) -> list[tuple[str, Condition]]:
        now = now_ms()
        with redis_answers("reading deadlines"):
            return [
                (member.decode(), condition)
                for condition in OVERDUE_CONDITIONS
                for member in await self._redis.zrangebyscore(condition_index(condition), "-inf", now)
            ]

    def sweep_at_deadlines(self, sweep: Callable[[], Awaitable[None]]) -> None:
        """Nothing to hook: every replica's sweep loop polls the deadlines (`sweep_period`)."""

    # --- PhaseDispatch ----------------------------------------------------------------------------
    async def check_room(self) -> None:
        with redis_answers("storing the task"):
            queued = int(await self._redis.zcard(QUEUED))
        if queued >= self._settings.max_queued_tasks:
            raise QueueFull(
                f"{queued} tasks are waiting for a worker (MAX_QUEUED_TASKS). Submit the task again in "
                f"{QUEUE_FULL_RETRY_AFTER_SECONDS} seconds, or add workers."
            )

    async def line_up(self, task_id: str, phase: Phase, priority: int) -> int | None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zadd(QUEUED, {task_id: (HIGHEST_PRIORITY - priority) * PRIORITY_RANK_MS + now_ms()})
                pipe.zcard(QUEUED)
                pipe.zcard(RUNNING)
                pipe.zcount(WORKERS, now_ms(), "+inf")
                _, queued, running, workers = await pipe.execute()
            return await self.position(task_id) if queued + running > workers else None
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def send(self, task_id: str, phase: Phase, dispatch_id: str, priority: int) -> None:
        try:
            await asyncio.to_thread(
                send_phase, self._celery, self._settings, task_id, phase.value, dispatch_id, priority
            )
        except Exception as exc:
            raise StoreUnavailable(str(exc)) from exc

    async def position(self, task_id: str) -> int | None:
        rank = await self._redis.zrank(QUEUED, task_id)
        return None if rank is None else int(rank) + 1

    async def stop_crew(self, task_id: str) -> None:
        """In the background: kill the crew's process if it has not stopped within the grace."""
        job = asyncio.create_task(self._kill_if_still_running(task_id))
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    async def stop(self, grace_seconds: float) -> list[str]:
        """Tasks run on the workers, so a replica has nothing of its own to end."""
        return []

    async def refresh(self) -> None:
        with redis_answers("counting tasks"):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(WORKERS, "-inf", now_ms())
                pipe.zcard(QUEUED)
                pipe.zcard(RUNNING)
                pipe.zcard(AWAITING)
                pipe.zcard(WORKERS)
                _, queued, running, awaiting, workers = await pipe.execute()
        statuses = ["queued"] * queued + ["running"] * running + ["awaiting_confirmation"] * awaiting
        self._load = (statuses, int(queued), int(running), int(workers))

    def load(self) -> Load:
        """As of the last sweep: unfinished tasks' statuses, queued, running, live worker processes."""
        return self._load

    async def close(self) -> None:
        for job in list(self._background):
            job.cancel()
        self._celery.close()

    async def _kill_if_still_running(self, task_id: str) -> None:
        await asyncio.sleep(self._settings.crew_stop_grace_seconds)
        worker_task = await self._redis.hget(TaskKeys(task_id).meta, "worker_task")
        if worker_task is not None:
            logger.warning("the crew did not stop within CREW_STOP_GRACE_SECONDS; revoking its worker process")
            await asyncio.to_thread(revoke, self._celery, worker_task.decode())
