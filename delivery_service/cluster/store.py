"""Task records in Redis, projected from each task's events on read (blocking: call off the event loop).

A task's hash holds its request and the last projected record with the stream entry it reflects; a read
applies the entries after it and saves the result unless a record projected further is there already. A
person's waiver of the gate is a field of its own (`waiver`), set once, with its webhook messages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import datetime

import orjson
import redis

from delivery_service.cluster.redis_event_log import (
    SAVE_RECORD_SCRIPT,
    TASKS,
    WEBHOOKS_DUE,
    TaskKeys,
    message_key,
    now_ms,
    owner_tasks,
    redis_answers,
    script_args,
    thread_tasks,
)
from delivery_service.runs.phases import PhaseWork
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.outbox import OutboxMessage
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import TaskEvent

logger = logging.getLogger(__name__)


# What a phase hands to the next, in the task's hash: the request, then PhaseWork's handed-on fields.
WORK_FIELDS = ("request", "revisions", "analysis", "analysis_data", "feedback", "usage")


# Sets the waiver unless there is one, and stores its messages as the append script stores an event's.
WAIVE_SCRIPT = """
local meta, due = KEYS[1], KEYS[2]
local args = cjson.decode(ARGV[1])
if redis.call('EXISTS', meta) == 0 or redis.call('HSETNX', meta, 'waiver', args.waiver) == 0 then return 0 end
local ttl, list = redis.call('PTTL', meta), meta .. ':webhooks'
for _, m in ipairs(args.messages) do
  local key = args.key_prefix .. m.webhook_id
  redis.call('HSET', key, 'task_id', m.task_id, 'sequence', m.sequence, 'type', m.type, 'url', m.url, 'body', m.body,
    'created', args.now_ms, 'status', 'pending', 'attempts', 0, 'attempts_base', 0, 'next', args.now_ms)
  redis.call('RPUSH', list, m.webhook_id)
  redis.call('ZADD', due, args.now_ms, m.webhook_id)
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
    redis.call('PEXPIRE', list, ttl)
  end
end
return 1
"""


def work_fields(work: PhaseWork) -> dict[str, str]:
    fields = {
        "revisions": str(work.revisions),
        "analysis": work.analysis,
        "analysis_data": orjson.dumps(work.analysis_data).decode() if work.analysis_data else "",
        "usage": orjson.dumps(work.usage).decode(),
    }
    return fields if work.feedback is None else fields | {"feedback": work.feedback}


def work_from_fields(values: list[bytes | None]) -> PhaseWork:
    """A task's PhaseWork from its hash's WORK_FIELDS (their values, in that order)."""
    request, revisions, analysis, analysis_data, feedback, usage = values
    assert request is not None, "the task has no request"
    return replace(
        PhaseWork.of(TaskRecord.from_json(request)),
        revisions=int(revisions or 0),
        analysis=(analysis or b"").decode(),
        analysis_data=orjson.loads(analysis_data) if analysis_data else None,
        feedback=None if feedback is None else feedback.decode(),
        usage=orjson.loads(usage) if usage else {},
    )


class RedisTaskStore:
    """Reads task records from Redis; see the module docstring."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._save_record = client.register_script(SAVE_RECORD_SCRIPT)
        self._waive = client.register_script(WAIVE_SCRIPT)

    def task(self, task_id: str) -> TaskRecord | None:
        """The task's record brought up to its last event, or None (unknown, or expired)."""
        with redis_answers(f"reading task {task_id}"):
            return self._project(task_id)

    def _project(self, task_id: str) -> TaskRecord | None:
        keys = TaskKeys(task_id)
        stored, applied_id, waiver = self._redis.hmget(keys.meta, "record", "applied_id", "waiver")
        if stored is None:
            return None
        record = TaskRecord.from_json(stored)
        record.waiver = orjson.loads(waiver) if waiver else None
        entries = self._redis.xrange(keys.events, min=b"(" + (applied_id or b"0-0"), max="+")
        if not entries:
            return record
        for _, fields in entries:
            record.apply(TaskEvent.model_validate_json(fields[b"event"]))
        saved = script_args(
            applied=record.last_sequence, applied_id=entries[-1][0].decode(), record=record.to_json().decode()
        )
        self._save_record(keys=[keys.meta], args=saved)
        return record

    def waive(self, task_id: str, waiver: dict[str, str], messages: Sequence[OutboxMessage]) -> bool:
        found = [asdict(message) for message in messages]
        arguments = script_args(
            waiver=orjson.dumps(waiver).decode(), messages=found, key_prefix=message_key(""), now_ms=now_ms()
        )
        with redis_answers(f"waiving the gate of task {task_id}"):
            return bool(self._waive(keys=[TaskKeys(task_id).meta, WEBHOOKS_DUE], args=arguments))

    def initial_record(self, task_id: str) -> TaskRecord | None:
        """The task's record before its first event (a stream's tail applies every event to it)."""
        with redis_answers(f"reading task {task_id}"):
            stored = self._redis.hget(TaskKeys(task_id).meta, "request")
        return None if stored is None else TaskRecord.from_json(stored)

    def tasks(self, limit: int, offset: int, owner: str | None) -> tuple[list[TaskRecord], int]:
        """Tasks newest first and how many there are; ids whose task has expired leave the index."""
        index = owner_tasks(owner) if owner else TASKS
        with redis_answers("listing tasks"):
            task_ids = [member.decode() for member in self._redis.zrevrange(index, offset, offset + limit - 1)]
            records = {task_id: self._project(task_id) for task_id in task_ids}
            gone = [task_id for task_id, record in records.items() if record is None]
            if gone:
                self._redis.zrem(index, *gone)
            total = int(self._redis.zcard(index))
        return [record for record in records.values() if record is not None], total

    def thread(self, thread_id: str) -> list[TaskRecord]:
        """The thread's first task and its follow-ups that have not expired, oldest first."""
        with redis_answers(f"reading thread {thread_id}"):
            follow_ups = [member.decode() for member in self._redis.zrange(thread_tasks(thread_id), 0, -1)]
            records = [self._project(task_id) for task_id in [thread_id, *follow_ups]]
        return sorted((record for record in records if record is not None), key=lambda record: record.created_at)

    def purge_finished_before(self, timestamp: str) -> int:
        """Drop index entries of tasks created before `timestamp` whose keys Redis has expired (the
        append script sets their expiry)."""
        cutoff_ms = int(datetime.fromisoformat(timestamp).timestamp() * 1000)
        with redis_answers("purging tasks"):
            candidates = self._redis.zrangebyscore(TASKS, "-inf", cutoff_ms)
            with self._redis.pipeline(transaction=False) as pipe:
                for member in candidates:
                    pipe.exists(TaskKeys(member.decode()).meta)
                present = pipe.execute()
            gone = [member for member, exists in zip(candidates, present, strict=True) if not exists]
            if gone:
                self._redis.zrem(TASKS, *gone)
        return len(gone)

    def check(self) -> None:
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis does not answer: {exc}") from exc

    def close(self) -> None:
        self._redis.close()
