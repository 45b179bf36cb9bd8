"""Task event logs in Redis Streams, and the Lua scripts that keep them consistent.

One Redis Stream per task holds its events (entries: our `seq` and the `event` JSON). Several processes
write to one task, so every append is one script that, atomically, refuses an event after the terminal
one, checks an optional condition (so two replicas racing cannot both succeed), takes the next sequence
and XADDs the event, and after a terminal event sets the expiry of the task's keys. Python hands the
scripts the rules' data (terminal or not, the byte budget, the webhook id's format) rather than Lua
spelling them out again. The task's hash (`meta`) holds the request, the script's counters, what crosses
phases and the projected record (store.py).
"""

from __future__ import annotations

import contextlib
import enum
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis
import redis.asyncio

from delivery_service.runs.task_control import Condition
from delivery_service.settings import Settings
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.outbox import MESSAGE_TYPES, body_parts, split_at_sequence, webhook_id
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
    """Wall-clock milliseconds, as the sorted sets' deadlines, comparable across machines."""
    return int(time.time() * 1000)


@contextlib.contextmanager
def redis_answers(action: str) -> Iterator[None]:
    """A RedisError inside becomes StoreUnavailable."""
    try:
        yield
    except redis.RedisError as exc:
        raise StoreUnavailable(f"Redis did not answer {action}: {exc}") from exc


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


def message_key(webhook_id: str) -> str:
    """A webhook message's hash (`message_key("")`: the prefix the scripts put before an id)."""
    return f"{PREFIX}:webhook:{webhook_id}"


def retention_ms(settings: Settings) -> int:
    return int(settings.task_retention_days * 86_400_000)


def script_args(**fields: Any) -> list[bytes]:
    """The one argument of each of our Lua scripts, `cjson.decode(ARGV[1])`: the fields as a JSON object,
    named once at the call; fields that are None are left out (nil in Lua)."""
    return [orjson.dumps({name: value for name, value in fields.items() if value is not None})]


def condition_index(condition: Condition) -> str:
    """The sorted set that holds a condition of the append script: the task is in it (with a score past
    now, for a deadline); the script then removes it from that set."""
    return RUNNING if condition is Condition.LEASE_EXPIRED else AWAITING


# The script returns the event's sequence, or refuses (AppendRefused).
APPEND_SCRIPT = """
local meta, events, running, awaiting, queued, due = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local args = cjson.decode(ARGV[1])
local task_id = args.task_id
if redis.call('EXISTS', meta) == 0 then return -2 end
if redis.call('HEXISTS', meta, 'ended') == 1 then return 0 end
if not args.terminal and tonumber(redis.call('HGET', meta, 'bytes') or '0') + args.size > args.max_bytes then
  return -1
end
if args.held_in then
  local score = redis.call('ZSCORE', args.held_in, task_id)
  if not score then return -3 end
  if args.overdue and tonumber(score) > args.now_ms then return -3 end
  redis.call('ZREM', args.held_in, task_id)
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('HINCRBY', meta, 'bytes', args.size)
redis.call('XADD', events, '*', 'seq', seq, 'event', args.head .. seq .. args.tail)
if args.awaiting_deadline_ms then
  redis.call('ZADD', awaiting, args.awaiting_deadline_ms, task_id)
  redis.call('ZREM', running, task_id)
end
local hook, targets = args.webhooks, redis.call('HGET', meta, 'webhooks')
if hook and targets then
  local body, now, list = hook.head .. seq .. hook.tail, args.now_ms, meta .. ':webhooks'
  for index, target in ipairs(cjson.decode(targets)) do
    for _, kind in ipairs(target.events) do
      if kind == hook.type then
        local id = string.format(hook.id, seq, index)
        local key = hook.key .. id
        redis.call('HSET', key, 'task_id', task_id, 'sequence', seq, 'type', kind, 'url', target.url, 'body', body,
          'created', now, 'status', 'pending', 'attempts', 0, 'attempts_base', 0, 'next', now)
        redis.call('PEXPIRE', key, args.retention_ms)
        redis.call('RPUSH', list, id)
        redis.call('PEXPIRE', list, args.retention_ms)
        redis.call('ZADD', due, now, id)
      end
    end
  end
end
for name, value in pairs(args.fields) do redis.call('HSET', meta, name, value) end
if args.terminal then
  redis.call('HSET', meta, 'ended', seq)
  redis.call('ZREM', running, task_id)
  redis.call('ZREM', awaiting, task_id)
  redis.call('ZREM', queued, task_id)
  redis.call('PEXPIRE', meta, args.retention_ms)
  redis.call('PEXPIRE', events, args.retention_ms)
end
return seq
"""


@dataclass(frozen=True)
class AppendRequest:
    """The append script's argument: an event whose sequence the script fills in, and what goes with it."""

    task_id: str
    head: str  # the event's JSON before its sequence
    tail: str  # ... and after it
    size: int  # its frame's bytes, counted against `max_bytes`
    terminal: bool
    max_bytes: int
    retention_ms: int
    now_ms: int
    held_in: str | None  # Condition
    overdue: bool
    awaiting_deadline_ms: int | None
    # The messages the event causes (store/outbox.py), one per target in the meta's `webhooks` that wants
    # `type`: the body's `head` and `tail` around the sequence; `id`, `webhook_id(task_id, "%d", "%d")` for the
    # script to format; `key`, `message_key("")`: ids' keys are derived from the sequence, so they cannot be
    # declared in KEYS: fine on one Redis, not on Redis Cluster.
    webhooks: dict[str, str] | None
    fields: dict[str, str]  # set in the task's hash

    @property
    def args(self) -> list[bytes]:
        return script_args(**asdict(self))

    @property
    def keys(self) -> list[str]:
        keys = TaskKeys(self.task_id)
        return [keys.meta, keys.events, RUNNING, AWAITING, QUEUED, WEBHOOKS_DUE]

    @classmethod
    def of(
        cls,
        event: TaskEvent,
        settings: Settings,
        *,
        condition: Condition | None = None,
        awaiting_deadline_ms: int | None = None,
        fields: dict[str, str] | None = None,
    ) -> AppendRequest:
        # The JSON the embedded mode sends (same fields, same order); `task_id` is a UUID, so the first
        # `"sequence":` is the field itself.
        head, tail = split_at_sequence(orjson.dumps({**json_fields(event), "sequence": 0}, default=str))
        body = body_parts(event, settings.public_url)
        return cls(
            task_id=event.task_id,
            head=head.decode(),
            tail=tail.decode(),
            size=len(head) + len(tail) + FRAME_OVERHEAD_BYTES,
            terminal=event.is_terminal,
            max_bytes=settings.max_stream_bytes_per_task,
            retention_ms=retention_ms(settings),
            now_ms=now_ms(),
            held_in=condition_index(condition) if condition else None,
            overdue=condition not in (None, Condition.AWAITING),
            awaiting_deadline_ms=awaiting_deadline_ms,
            webhooks=None
            if body is None
            else {
                "type": MESSAGE_TYPES[event.event_type][0],
                "head": body[0].decode(),
                "tail": body[1].decode(),
                "id": webhook_id(event.task_id, "%d", "%d"),
                "key": message_key(""),
            },
            fields=fields or {},
        )


# A worker takes a phase of a task: only the dispatch the task expects, only once (a broker
# redelivery of a phase already taken is refused), never after the task has ended.
CLAIM_SCRIPT = """
local meta, running, queued = KEYS[1], KEYS[2], KEYS[3]
local args = cjson.decode(ARGV[1])
if redis.call('EXISTS', meta) == 0 then return -2 end
if redis.call('HEXISTS', meta, 'ended') == 1 then return 0 end
if redis.call('HGET', meta, 'dispatch') ~= args.dispatch_id then return -3 end
if redis.call('HGET', meta, 'claimed') == args.dispatch_id then return -4 end
redis.call('HSET', meta, 'claimed', args.dispatch_id, 'worker_task', args.worker_task, 'worker', args.worker)
redis.call('ZREM', queued, args.task_id)
redis.call('ZADD', running, args.lease_deadline_ms, args.task_id)
return 1
"""


class ClaimRefused(enum.IntEnum):
    ENDED = 0
    UNKNOWN_TASK = -2
    STALE = -3
    ALREADY_CLAIMED = -4


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


# Saves a record projected from a task's events, unless a record projected further is already there.
SAVE_RECORD_SCRIPT = """
local args = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'applied') or '0') >= args.applied then return 0 end
redis.call('HSET', KEYS[1], 'applied', args.applied, 'applied_id', args.applied_id, 'record', args.record)
return 1
"""


def connect(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(_url(settings), health_check_interval=30)


def connect_async(settings: Settings) -> redis.asyncio.Redis:
    return redis.asyncio.Redis.from_url(_url(settings), health_check_interval=30)


def _url(settings: Settings) -> str:
    assert settings.redis_url is not None, "REDIS_URL is not set"
    return settings.redis_url.get_secret_value()
