"""`DeliveryService`: what the REST routes, the MCP tools and AG-UI runs ask of the service, done once.

The rate limit, ownership, webhook targets, the audit line and the wording of every refusal are this
module's, so they cannot differ between front doors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Protocol

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from delivery_service.engines.task_engine import TaskEngine
from delivery_service.observability.logs import current_task_id
from delivery_service.runs.control_messages import NotAwaitingConfirmation
from delivery_service.runs.task_control import TaskRequest
from delivery_service.service_errors import Conflict, LimitReached, NotFound
from delivery_service.service_layer.webhook_targets import webhook_targets
from delivery_service.settings import Settings
from delivery_service.store.records import TaskRecord, TaskStatus
from delivery_service.store.task_event import utc_now_iso

CONTROL_WAIT_SECONDS = 5.0
WAIVABLE = ("fail", "concerns")  # the gates a person may waive

audit_logger = logging.getLogger("audit")


@dataclass(frozen=True)
class Requester:
    """Who asks: `owner` is their API key id (None while authentication is off), `address` their client's."""

    owner: str | None
    address: str | None
    name: str | None = None  # the API key's name (API_KEYS `name:key`)

    def may_see(self, task_owner: str | None) -> bool:
        return self.owner is None or self.owner == task_owner

    @property
    def client(self) -> str:
        """Who a limit applies to: the API key id, or the client's address when authentication is off."""
        return f"key:{self.owner}" if self.owner else f"address:{self.address or 'unknown'}"


class TaskOptions(Protocol):
    """How a new task runs (the REST bodies, and what MCP and AG-UI build)."""

    skip_confirmation: bool
    stream_tokens: bool
    priority: int
    webhook_url: str | None
    webhook_events: list[str] | None


@dataclass(frozen=True)
class TaskState:
    """A task as the engine knows it now, and its place in the waiting line (None: not waiting)."""

    record: TaskRecord
    queue_position: int | None


def _owned(who: Requester, task_id: str, record: TaskRecord | None) -> TaskRecord:
    """The record if the requester may see it; NotFound otherwise (another key's task does not exist for it)."""
    if record is None or not who.may_see(record.owner):
        raise NotFound(f"Task {task_id} not found. Check the id; finished tasks are kept for TASK_RETENTION_DAYS.")
    return record


class DeliveryService:
    """Starts, follows up, cancels, confirms and reads tasks for a `Requester`, over one `TaskEngine`."""

    def __init__(self, engine: TaskEngine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._rate = parse(settings.rate_limit)
        # Counted in this process, or in Redis so that replicas share the limit. limits' asyncio storage
        # expires entries in a loop task; its thread-based twin starts a timer thread from the request,
        # and Thread.start() waits for the GIL, stalling the loop under load.
        storage_uri = engine.rate_limit_storage
        storage = RedisStorage(storage_uri, implementation="redispy") if storage_uri else MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)

    async def _count_creation(self, who: Requester) -> None:
        """At most RATE_LIMIT creations per client in any moving window; LimitReached (429) beyond it."""
        if await self._limiter.hit(self._rate, who.client):
            return
        reset = (await self._limiter.get_window_stats(self._rate, who.client)).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise LimitReached(
            f"Too many new tasks from this client (RATE_LIMIT={self._rate}). Try again in {wait} seconds.", wait
        )

    async def start(self, who: Requester, requirement: str, options: TaskOptions) -> tuple[TaskRecord, bool]:
        """A new task and whether it waits for a worker (LimitReached, InvalidRequest, ServiceStopping, ...)."""
        await self._count_creation(who)
        record, waits = await self.engine.start(await self._task_request(who, requirement, options))
        current_task_id.set(record.task_id)
        self._audit("task.created", who, record.task_id, priority=options.priority, queued=waits)
        return record, waits

    async def follow_up(
        self, who: Requester, task_id: str, request: str, options: TaskOptions
    ) -> tuple[TaskRecord, bool]:
        """A revision of a completed task in its thread (Conflict unless completed, ThreadFull when full)."""
        parent = await self.stored_task(who, task_id)
        if parent.status is not TaskStatus.COMPLETED:
            raise Conflict(
                f"Task {task_id} is {parent.status.value}: only a completed task can be followed up. Wait for it "
                "to complete (follow its stream), or follow up on the thread's last completed task."
            )
        await self._count_creation(who)
        task_request = await self._task_request(who, parent.requirement, options)
        record, waits = await self.engine.follow_up(parent, request, task_request)
        current_task_id.set(record.task_id)
        self._audit("task.followed_up", who, record.task_id, parent=task_id, revision=record.revision)
        return record, waits

    async def _task_request(self, who: Requester, requirement: str, options: TaskOptions) -> TaskRequest:
        webhooks = await webhook_targets(options.webhook_url, options.webhook_events, self.settings)
        return TaskRequest(
            requirement, options.skip_confirmation, options.stream_tokens, options.priority, who.owner, webhooks
        )

    async def task(self, who: Requester, task_id: str) -> TaskRecord:
        """The requester's task as the engine knows it now (embedded: live from memory while its stream is there)."""
        current_task_id.set(task_id)
        return _owned(who, task_id, await self.engine.current_task(task_id))

    async def stored_task(self, who: Requester, task_id: str) -> TaskRecord:
        """The requester's task as the store has it (not the live stream's copy)."""
        return _owned(who, task_id, await self.engine.task(task_id))

    async def status(self, who: Requester, task_id: str) -> TaskState:
        record = await self.task(who, task_id)
        return TaskState(record, await self.engine.queue_position(task_id))

    async def result(self, who: Requester, task_id: str) -> TaskRecord:
        """A finished task with its deliverables (Conflict while it runs)."""
        record = await self.stored_task(who, task_id)
        if not record.finished:
            raise Conflict(
                f"Task {record.task_id} is {record.status.value}; its result is ready when it has finished. "
                "Follow its stream or poll its status."
            )
        return record

    async def cancel(self, who: Requester, task_id: str) -> TaskState:
        """Cancel the task; idempotent (a task that has ended is left as it is)."""
        await self.task(who, task_id)
        if await self.engine.cancel(task_id):
            self._audit("task.cancelled", who, task_id)
        return await self._status_once_stored(who, task_id)

    async def confirm(self, who: Requester, task_id: str, approved: bool, feedback: str) -> TaskState:
        """Approve the analysis, or reject it with feedback (Conflict unless the task waits for a decision)."""
        record = await self.task(who, task_id)
        try:
            await self.engine.confirm(task_id, approved, feedback)
        except NotAwaitingConfirmation as exc:
            raise NotAwaitingConfirmation(f"{exc} Its status is {record.status.value}.") from exc
        self._audit("task.approved" if approved else "task.rejected", who, task_id)
        return await self._status_once_stored(who, task_id)

    async def waive(self, who: Requester, task_id: str, reason: str) -> TaskRecord:
        """Waive a completed task's failing or concerning gate on the record (Conflict otherwise)."""
        record = await self.stored_task(who, task_id)
        gate = (record.gate or {}).get("status")
        if record.status is not TaskStatus.COMPLETED or record.waiver is not None or gate not in WAIVABLE:
            now = "waived" if record.waiver is not None else gate or f"not recorded (the task is {record.status.value})"
            raise Conflict(
                f"Task {task_id}'s gate is {now}: only a completed task whose gate is fail or concerns can be "
                "waived. Read its quality in the result."
            )
        waiver = {"reason": reason, "at": utc_now_iso(), "by": who.name or who.owner or "anonymous"}
        if not await self.engine.waive(record, waiver):
            raise Conflict(f"Task {task_id}'s gate is waived already. Read the waiver in its result.")
        self._audit("task.waived", who, task_id, gate=gate, reason=reason)
        return replace(record, waiver=waiver)

    async def _status_once_stored(self, who: Requester, task_id: str) -> TaskState:
        """The task's status after what a control request published is stored (bounded wait)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.engine.settled(task_id), timeout=CONTROL_WAIT_SECONDS)
        return await self.status(who, task_id)

    async def tasks(self, who: Requester, limit: int, offset: int) -> tuple[list[TaskRecord], int]:
        """The requester's tasks, newest first, and how many there are."""
        return await self.engine.tasks(limit, offset, who.owner)

    async def thread(self, who: Requester, thread_id: str) -> list[TaskRecord]:
        """Every revision of a thread the requester may see, oldest first (NotFound for an unknown thread)."""
        records = await self.engine.thread(thread_id)
        members = [record for record in records if record.thread_id == thread_id and who.may_see(record.owner)]
        if not members or members[0].task_id != thread_id:
            raise NotFound(
                f"Thread {thread_id} not found: a thread's id is the id of its first task. Check the id; finished "
                "tasks are kept for TASK_RETENTION_DAYS."
            )
        return members

    @staticmethod
    def _audit(action: str, who: Requester, task_id: str, **details: object) -> None:
        """One structured line: who (key id, address) did what to which task, and when."""
        line = {"at": utc_now_iso(), "action": action, "task_id": task_id, "key_id": who.owner, "address": who.address}
        audit_logger.info(json.dumps({**line, **details}, ensure_ascii=False))
