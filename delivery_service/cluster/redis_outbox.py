"""The webhook outbox in Redis: the `AsyncOutbox` every API replica's sender claims from.

The append script stores each message as a hash, its id in the task's list and in `WEBHOOKS_DUE` (scored by
when it is due). A claim moves the score past its lease and marks the message with its token, so two
replicas never send one message at once; an outcome is stored only under the claim that made it. A 410
adds the URL to the task's stopped set, which the claim script checks.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

import orjson
import redis.asyncio

from delivery_service.cluster.redis_event_log import (
    WEBHOOKS_DUE,
    TaskKeys,
    message_key,
    retention_ms,
    script_args,
)
from delivery_service.settings import Settings
from delivery_service.store.outbox import (
    RECEIVER_PATTERN,
    STOPPED_URL_ERROR,
    AttemptOutcome,
    ClaimedMessage,
    Delivery,
    ReceiverRoom,
    Redelivery,
)
from delivery_service.store.records import TaskRecord

_CLAIM_SCRIPT = """
local due, args = KEYS[1], cjson.decode(ARGV[1])
local now, busy, claimed, skipped = args.now_ms, args.busy, {}, 0
while #claimed < args.limit do
  -- claimed and failed messages leave the due range; those skipped stay, so the next page starts past them
  local page = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', skipped, 100)
  if #page == 0 then break end
  for _, id in ipairs(page) do
    if #claimed >= args.limit then break end
    local key = args.message_key .. id
    local task_id, url, status = unpack(redis.call('HMGET', key, 'task_id', 'url', 'status'))
    local receiver = string.lower(url and string.match(url, args.receiver_pattern) or '')
    if not task_id or status ~= 'pending' then
      redis.call('ZREM', due, id)
    elseif redis.call('SISMEMBER', string.format(args.stopped_key, task_id), url) == 1 then
      redis.call('HSET', key, 'status', 'failed', 'last_error', args.stopped_error, 'next', '')
      redis.call('ZREM', due, id)
    elseif (busy[receiver] or 0) >= args.per_receiver then
      skipped = skipped + 1
    else
      busy[receiver] = (busy[receiver] or 0) + 1
      redis.call('ZADD', due, now + args.lease_ms, id)
      redis.call('HSET', key, 'claim', args.claim, 'next', now + args.lease_ms)
      table.insert(claimed, id)
    end
  end
end
return claimed
"""


_STOPPED_KEY = f"{TaskKeys('%s').meta}:webhooks:stopped"  # a task's stopped URLs, formatted with its id


_RECORD_SCRIPT = """
local key, due, stopped = KEYS[1], KEYS[2], KEYS[3]
local args = cjson.decode(ARGV[1])
if redis.call('HGET', key, 'claim') ~= args.claim then return 0 end
if args.attempted then redis.call('HINCRBY', key, 'attempts', 1) end
redis.call('HSET', key, 'status', args.status, 'last_status_code', args.status_code or '', 'last_error', args.error or '',
  'next', args.next_ms or '', 'claim', '')
if args.status == 'pending' then
  redis.call('ZADD', due, args.next_ms, args.webhook_id)
else
  redis.call('ZREM', due, args.webhook_id)
end
if args.stop_url then
  redis.call('SADD', stopped, args.url)
  redis.call('PEXPIRE', stopped, args.retention_ms)
end
return 1
"""


_REDELIVER_SCRIPT = """
local key, due, stopped = KEYS[1], KEYS[2], KEYS[3]
local args = cjson.decode(ARGV[1])
local task_id, status, url, attempts = unpack(redis.call('HMGET', key, 'task_id', 'status', 'url', 'attempts'))
if task_id ~= args.task_id then return 'unknown' end
if status == 'pending' then return 'pending' end
redis.call('HSET', key, 'status', 'pending', 'attempts_base', attempts, 'next', args.now_ms)
redis.call('ZADD', due, args.now_ms, args.webhook_id)
redis.call('SREM', stopped, url)
return 'queued'
"""


def webhook_targets_json(record: TaskRecord) -> bytes:
    """The task's targets as the append script reads them from its meta hash."""
    return orjson.dumps([asdict(target) for target in record.webhooks])


def _stopped_key(task_id: str) -> str:
    return _STOPPED_KEY % task_id


def _seconds(value: str | None) -> float | None:
    return float(value) / 1000 if value else None


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


class RedisOutbox:
    """`webhooks.async_outbox.AsyncOutbox` over Redis; see the module docstring."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self._redis = client
        self._retention_ms = retention_ms(settings)
        self._claim = client.register_script(_CLAIM_SCRIPT)
        self._record = client.register_script(_RECORD_SCRIPT)
        self._redeliver = client.register_script(_REDELIVER_SCRIPT)

    async def claim_due(self, now: float, lease_seconds: float, room: ReceiverRoom) -> list[ClaimedMessage]:
        claim = uuid.uuid4().hex
        args = script_args(
            now_ms=_ms(now),
            lease_ms=_ms(lease_seconds),
            claim=claim,  # the token that marks the messages claimed
            limit=room.limit,
            per_receiver=room.per_receiver,
            busy=room.busy,
            receiver_pattern="^" + RECEIVER_PATTERN,
            message_key=message_key(""),
            stopped_key=_STOPPED_KEY,
            stopped_error=STOPPED_URL_ERROR,
        )
        ids = [member.decode() for member in await self._claim(keys=[WEBHOOKS_DUE], args=args)]
        messages = await self._hashes(ids)
        return [
            ClaimedMessage(
                webhook_id=webhook_id,
                task_id=fields["task_id"],
                sequence=int(fields["sequence"]),
                type=fields["type"],
                url=fields["url"],
                body=fields["body"],
                created_at=float(fields["created"]) / 1000,
                attempts=int(fields["attempts"]),
                attempts_base=int(fields["attempts_base"]),
                claim=claim,
            )
            for webhook_id, fields in zip(ids, messages, strict=True)
            if fields
        ]

    async def record_attempt(self, message: ClaimedMessage, outcome: AttemptOutcome, now: float) -> None:
        args = script_args(
            webhook_id=message.webhook_id,
            claim=message.claim,
            url=message.url,
            status=outcome.status,
            status_code=outcome.status_code,
            error=outcome.error,
            next_ms=_ms(outcome.next_attempt_at),  # when it is due again (pending)
            attempted=outcome.attempted,
            stop_url=outcome.stop_url,
            retention_ms=self._retention_ms,
        )
        keys = [message_key(message.webhook_id), WEBHOOKS_DUE, _stopped_key(message.task_id)]
        await self._record(keys=keys, args=args)

    async def deliveries(self, task_id: str) -> list[Delivery]:
        ids = [member.decode() for member in await self._redis.lrange(f"{TaskKeys(task_id).meta}:webhooks", 0, -1)]
        return [
            Delivery(
                webhook_id=webhook_id,
                type=fields["type"],
                url=fields["url"],
                status=fields["status"],  # type: ignore[arg-type]  # written by our scripts only
                attempts=int(fields["attempts"]),
                last_status_code=int(fields["last_status_code"]) if fields.get("last_status_code") else None,
                last_error=fields.get("last_error") or None,
                next_attempt_at=_seconds(fields.get("next")) if fields["status"] == "pending" else None,
                created_at=float(fields["created"]) / 1000,
            )
            for webhook_id, fields in zip(ids, await self._hashes(ids), strict=True)
            if fields
        ]

    async def redeliver(self, task_id: str, webhook_id: str, now: float) -> Redelivery:
        keys = [message_key(webhook_id), WEBHOOKS_DUE, _stopped_key(task_id)]
        answer = await self._redeliver(
            keys=keys, args=script_args(task_id=task_id, webhook_id=webhook_id, now_ms=_ms(now))
        )
        return Redelivery(answer.decode())

    async def pending(self) -> int:
        return int(await self._redis.zcard(WEBHOOKS_DUE))

    async def _hashes(self, ids: list[str]) -> list[dict[str, Any]]:
        """Each message's fields as text (empty for a message that has expired)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(message_key(webhook_id))
            found = await pipe.execute()
        return [{key.decode(): value.decode() for key, value in fields.items()} for fields in found]
