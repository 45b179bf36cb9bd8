"""Task event logs in Redis Streams (REDIS_URL), and the scripts that keep them consistent.

One Redis Stream per task holds its events; each entry has two fields, our `seq` and the `event`
JSON, and Redis's own entry ids are used only to resume reading. Several processes write to one
task (the worker running its crew, and any API replica that cancels it, confirms it or ends it when
its worker is gone), so every append runs as one Lua script that, atomically:

- refuses the event if the task already has its terminal event (so nothing follows `end`,
  `error` or `cancelled`, and a crew learns that it must stop);
- checks an optional *condition* (the task still waits for a decision; a worker's lease really ran
  out), so that two replicas racing to confirm, or to end a task, cannot both succeed;
- takes the next sequence number and writes it into the event's JSON, then XADDs the entry;
- after a terminal event, sets the retention expiry of the task's keys.

The task's hash (`meta`) holds the request, the counters the script keeps, what crosses phases
(analysis, revisions, feedback, token usage) and the record projected from the events (store.py).
Sorted sets index tasks by creation time, queue rank, worker lease deadline and confirmation deadline.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio

from delivery_service.settings import Settings
from delivery_service.store.outbox import MESSAGE_TYPES, body_parts
from delivery_service.store.task_event import EventType, TaskEvent, json_fields, utc_now_iso
from delivery_service.task_streams import bounded_content

PREFIX = "mad"
TASKS = f"{PREFIX}:tasks"  # every task, scored by creation time (ms)
QUEUED = f"{PREFIX}:queued"  # tasks waiting for a worker, scored by rank (priority, then arrival)
RUNNING = f"{PREFIX}:running"  # tasks on a worker, scored by the deadline of the worker's lease (ms)
AWAITING = f"{PREFIX}:awaiting"  # tasks waiting for a decision, scored by its deadline (ms)
WORKERS = f"{PREFIX}:workers"  # live worker processes, scored by the deadline of their heartbeat (ms)
WEBHOOKS_DUE = f"{PREFIX}:webhooks:due"  # pending webhook messages, scored by their next attempt or claim's end (ms)
FRAME_OVERHEAD_BYTES = 32  # `id: N\ndata: ` and the blank line, counted against MAX_STREAM_BYTES_PER_TASK


def now_ms() -> int:
    """Deadlines in the sorted sets are wall-clock milliseconds, comparable across machines."""
    return int(time.time() * 1000)


def owner_tasks(owner: str) -> str:
    """The index of one API key's tasks (the key's fingerprint, never the key)."""
    return f"{TASKS}:owner:{owner}"


def thread_tasks(thread_id: str) -> str:
    """The index of a thread's follow-ups, scored by creation time (ms); the first task is the thread's id."""
    return f"{PREFIX}:thread:{thread_id}"


def thread_revisions(thread_id: str) -> str:
    """The last revision number given out in a thread (INCR; the first task is revision 1)."""
    return f"{PREFIX}:thread:{thread_id}:revision"


@dataclass(frozen=True)
class TaskKeys:
    task_id: str

    @property
    def meta(self) -> str:
        return f"{PREFIX}:task:{self.task_id}"

    @property
    def events(self) -> str:
        return f"{PREFIX}:task:{self.task_id}:events"


class Condition(str, enum.Enum):
    """What must hold for an append to go ahead; the script then removes the task from that set."""

    NONE = ""
    AWAITING = "awaiting"  # the task waits for a decision (confirm)
    DECISION_EXPIRED = "decision_expired"  # ... and its deadline has passed (confirmation timeout)
    LEASE_EXPIRED = "lease_expired"  # its worker's lease has run out (the worker is gone)


class AppendRefused(enum.IntEnum):
    ENDED = 0
    TOO_LARGE = -1
    UNKNOWN_TASK = -2
    CONDITION_FAILED = -3


# The webhook messages an event causes (store/outbox.py), stored by the append that stores the event.
# ARGV[11] is the message type ('' for none), ARGV[12] and ARGV[13] the body around the sequence,
# ARGV[14] the time (ms); the task's targets are the meta's `webhooks` JSON. Message keys are derived
# from the sequence, so they cannot be declared in KEYS: fine on one Redis, not on Redis Cluster.
_APPEND_WEBHOOKS = (
    """
if ARGV[11] ~= '' then
  local targets = redis.call('HGET', meta, 'webhooks')
  if targets and targets ~= '[]' then
    local body, now, retention = ARGV[12] .. seq .. ARGV[13], ARGV[14], ARGV[7]
    local list = meta .. ':webhooks'
    for index, target in ipairs(cjson.decode(targets)) do
      for _, kind in ipairs(target.events) do
        if kind == ARGV[11] then
          local id = 'msg_' .. (string.gsub(task_id, '-', '')) .. '_' .. seq .. '_' .. index
          local key = '"""
    + PREFIX
    + """:webhook:' .. id
          redis.call('HSET', key, 'task_id', task_id, 'sequence', seq, 'type', kind, 'url', target.url, 'body', body,
            'created', now, 'status', 'pending', 'attempts', 0, 'attempts_base', 0, 'next', now)
          redis.call('PEXPIRE', key, retention)
          redis.call('RPUSH', list, id)
          redis.call('PEXPIRE', list, retention)
          redis.call('ZADD', due, now, id)
        end
      end
    end
  end
end
"""
)

APPEND_SCRIPT = (
    """
local meta, events, running, awaiting, queued, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local task_id, condition = ARGV[1], ARGV[8]
if redis.call('EXISTS', meta) == 0 then return -2 end
if redis.call('HEXISTS', meta, 'ended') == 1 then return 0 end
local terminal = ARGV[5] == '1'
local size = tonumber(ARGV[4])
if not terminal and tonumber(redis.call('HGET', meta, 'bytes') or '0') + size > tonumber(ARGV[6]) then return -1 end
if condition ~= '' then
  local set = awaiting
  if condition == 'lease_expired' then set = running end
  local score = redis.call('ZSCORE', set, task_id)
  if not score then return -3 end
  if condition ~= 'awaiting' and tonumber(score) > tonumber(ARGV[9]) then return -3 end
  redis.call('ZREM', set, task_id)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('HINCRBY', meta, 'bytes', size)
redis.call('XADD', events, '*', 'seq', seq, 'event', ARGV[2] .. seq .. ARGV[3])
if ARGV[10] ~= '' then
  redis.call('ZADD', awaiting, ARGV[10], task_id)
  redis.call('ZREM', running, task_id)
end
"""
    + _APPEND_WEBHOOKS
    + """
for i = 15, #ARGV, 2 do redis.call('HSET', meta, ARGV[i], ARGV[i + 1]) end
if terminal then
  redis.call('HSET', meta, 'ended', seq)
  redis.call('ZREM', running, task_id)
  redis.call('ZREM', awaiting, task_id)
  redis.call('ZREM', queued, task_id)
  redis.call('PEXPIRE', meta, ARGV[7])
  redis.call('PEXPIRE', events, ARGV[7])
end
return seq
"""
)

# A worker takes a phase of a task: only the dispatch the task expects, only once (a broker
# redelivery of a phase already taken is refused), never after the task has ended.
CLAIM_SCRIPT = """
local meta, running, queued = KEYS[1], KEYS[2], KEYS[3]
local task_id, dispatch_id = ARGV[1], ARGV[2]
if redis.call('EXISTS', meta) == 0 then return -2 end
if redis.call('HEXISTS', meta, 'ended') == 1 then return 0 end
if redis.call('HGET', meta, 'dispatch') ~= dispatch_id then return -3 end
if redis.call('HGET', meta, 'claimed') == dispatch_id then return -4 end
redis.call('HSET', meta, 'claimed', dispatch_id, 'worker_task', ARGV[4], 'worker', ARGV[5])
redis.call('ZREM', queued, task_id)
redis.call('ZADD', running, ARGV[3], task_id)
return 1
"""


class ClaimRefused(enum.IntEnum):
    ENDED = 0
    UNKNOWN_TASK = -2
    STALE = -3
    ALREADY_CLAIMED = -4


@dataclass(frozen=True)
class AppendRequest:
    """The arguments of one append, built from an event whose sequence the script fills in."""

    keys: list[str]
    args: list[Any]

    @classmethod
    def of(
        cls,
        event: TaskEvent,
        settings: Settings,
        *,
        condition: Condition = Condition.NONE,
        now_ms: int = 0,
        awaiting_deadline_ms: int | None = None,
        fields: dict[str, str] | None = None,
    ) -> AppendRequest:
        head, tail = split_at_sequence(event)
        keys = TaskKeys(event.task_id)
        pairs = [item for pair in (fields or {}).items() for item in pair]
        webhook_body = body_parts(event, settings.public_url)
        return cls(
            [keys.meta, keys.events, RUNNING, AWAITING, QUEUED, WEBHOOKS_DUE],
            [
                event.task_id,
                head,
                tail,
                len(head) + len(tail) + FRAME_OVERHEAD_BYTES,
                "1" if event.is_terminal else "0",
                settings.max_stream_bytes_per_task,
                int(settings.task_retention_days * 86_400_000),
                condition.value,
                now_ms,
                "" if awaiting_deadline_ms is None else awaiting_deadline_ms,
                MESSAGE_TYPES[event.event_type][0] if webhook_body else "",
                *(webhook_body or (b"", b"")),
                int(time.time() * 1000),
                *pairs,
            ],
        )


def unsequenced_event(
    task_id: str,
    agent_name: str,
    event_type: EventType,
    content: str,
    metadata: dict[str, Any] | None,
    settings: Settings,
) -> TaskEvent:
    """A new event for the append script, which replaces its placeholder sequence (1) with the real one."""
    return TaskEvent(
        task_id=task_id,
        sequence=1,
        agent_name=agent_name,
        event_type=event_type,
        content=bounded_content(content, settings.max_event_content_chars),
        timestamp=utc_now_iso(),
        metadata=metadata or {},
    )


def split_at_sequence(event: TaskEvent) -> tuple[bytes, bytes]:
    """The event's JSON in two parts, before and after the sequence number the script puts between them.

    The JSON is the one the embedded mode sends (same fields, same order); `task_id` is a UUID, so
    the first `"sequence":` is the field itself.
    """
    payload = orjson.dumps({**json_fields(event), "sequence": 0}, default=str)
    marker = b'"sequence":0'
    at = payload.index(marker) + len(marker) - 1
    return payload[:at], payload[at + 1 :]


# Saves a record projected from a task's events, unless a record projected further is already there.
SAVE_RECORD_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'applied') or '0') >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'applied', ARGV[1], 'applied_id', ARGV[2], 'record', ARGV[3])
return 1
"""


def connect(settings: Settings) -> redis.Redis:
    """A client for threads (thread-safe connection pool)."""
    return redis.Redis.from_url(_url(settings), health_check_interval=30)


def connect_async(settings: Settings) -> redis.asyncio.Redis:
    """A client for the event loop."""
    return redis.asyncio.Redis.from_url(_url(settings), health_check_interval=30)


def _url(settings: Settings) -> str:
    assert settings.redis_url is not None, "REDIS_URL is not set"
    return settings.redis_url.get_secret_value()
