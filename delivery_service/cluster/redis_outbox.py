"""The webhook outbox in Redis (REDIS_URL): the `AsyncOutbox` every API replica's sender claims from.

The append script stores a task's messages with the event that causes them (cluster/redis_event_log.py): one
hash per message (`mad:webhook:<id>`), the task's list of message ids, and `WEBHOOKS_DUE`, a sorted set
of pending messages scored by when they are due. A sender claims due messages with one script that
moves their score past its lease and marks them with its claim token, so two replicas never send one
message at once; it passes over the messages of receivers that have no room (`outbox.ReceiverRoom`,
whose `receiver` pattern it shares), which stay due. An outcome is stored only under the claim that
made it, and a message whose sender died is due again when the lease ends (at least once). A 410 adds
the URL to the task's stopped set, which the claim script checks.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import asdict
from typing import Any

import orjson
import redis.asyncio

from delivery_service.cluster.redis_event_log import PREFIX, WEBHOOKS_DUE, TaskKeys
from delivery_service.settings import Settings
from delivery_service.store.outbox import (
    STOPPED_URL_ERROR,
    AttemptOutcome,
    ClaimedMessage,
    Delivery,
    ReceiverRoom,
    Redelivery,
)
from delivery_service.store.records import TaskRecord

_CLAIM_SCRIPT = """
local due, now, lease, limit, claim = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local per_receiver, busy = tonumber(ARGV[8]), {}
for i = 9, #ARGV, 2 do busy[ARGV[i]] = tonumber(ARGV[i + 1]) end
local claimed, skipped = {}, 0
while #claimed < limit do
  -- claimed and failed messages leave the due range; those skipped stay, so the next page starts past them
  local page = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', skipped, 100)
  if #page == 0 then break end
  for _, id in ipairs(page) do
    if #claimed >= limit then break end
    local key = ARGV[6] .. id
    local task_id, url, status = unpack(redis.call('HMGET', key, 'task_id', 'url', 'status'))
    local receiver = string.lower(url and string.match(url, '^[^:/?#]+://([^/?#]*)') or '')
    if not task_id or status ~= 'pending' then
      redis.call('ZREM', due, id)
    elseif redis.call('SISMEMBER', ARGV[7] .. task_id .. ':webhooks:stopped', url) == 1 then
      redis.call('HSET', key, 'status', 'failed', 'last_error', ARGV[5], 'next', '')
      redis.call('ZREM', due, id)
    elseif (busy[receiver] or 0) >= per_receiver then
      skipped = skipped + 1
    else
      busy[receiver] = (busy[receiver] or 0) + 1
      redis.call('ZADD', due, now + lease, id)
      redis.call('HSET', key, 'claim', claim, 'next', now + lease)
      table.insert(claimed, id)
    end
  end
end
return claimed
"""

_RECORD_SCRIPT = """
local key, due, stopped = KEYS[1], KEYS[2], KEYS[3]
if redis.call('HGET', key, 'claim') ~= ARGV[2] then return 0 end
redis.call('HINCRBY', key, 'attempts', ARGV[8])
redis.call('HSET', key, 'status', ARGV[3], 'last_status_code', ARGV[4], 'last_error', ARGV[5], 'next', ARGV[6], 'claim', '')
if ARGV[3] == 'pending' then redis.call('ZADD', due, ARGV[6], ARGV[1]) else redis.call('ZREM', due, ARGV[1]) end
if ARGV[7] == '1' then
  redis.call('SADD', stopped, ARGV[10])
  redis.call('PEXPIRE', stopped, ARGV[9])
end
return 1
"""

_REDELIVER_SCRIPT = """
local key, due, stopped = KEYS[1], KEYS[2], KEYS[3]
local task_id, status, url, attempts = unpack(redis.call('HMGET', key, 'task_id', 'status', 'url', 'attempts'))
if task_id ~= ARGV[1] then return 'unknown' end
if status == 'pending' then return 'pending' end
redis.call('HSET', key, 'status', 'pending', 'attempts_base', attempts, 'next', ARGV[3])
redis.call('ZADD', due, ARGV[3], ARGV[2])
redis.call('SREM', stopped, url)
return 'queued'
"""


def webhook_targets_json(record: TaskRecord) -> bytes:
    """The task's targets as the append script reads them from its meta hash."""
    return orjson.dumps([asdict(target) for target in record.webhooks])


def _message_key(webhook_id: str) -> str:
    return f"{PREFIX}:webhook:{webhook_id}"


def _stopped_key(task_id: str) -> str:
    return f"{TaskKeys(task_id).meta}:webhooks:stopped"


def _seconds(value: str | None) -> float | None:
    return float(value) / 1000 if value else None


def _ms(seconds: float | None) -> int | str:
    return "" if seconds is None else int(seconds * 1000)


class RedisOutbox:
    """`webhooks.async_outbox.AsyncOutbox` over Redis; see the module docstring."""

    def __init__(self, client: redis.asyncio.Redis, settings: Settings) -> None:
        self._redis = client
        self._retention_ms = int(settings.task_retention_days * 86_400_000)
        self._claim = client.register_script(_CLAIM_SCRIPT)
        self._record = client.register_script(_RECORD_SCRIPT)
        self._redeliver = client.register_script(_REDELIVER_SCRIPT)

    async def claim_due(self, now: float, lease_seconds: float, room: ReceiverRoom) -> list[ClaimedMessage]:
        claim = uuid.uuid4().hex
        args = [_ms(now), _ms(lease_seconds), room.limit, claim, STOPPED_URL_ERROR, _message_key(""), f"{PREFIX}:task:"]
        args += [room.per_receiver, *itertools.chain.from_iterable(room.busy.items())]
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
        await self._record(
            keys=[_message_key(message.webhook_id), WEBHOOKS_DUE, _stopped_key(message.task_id)],
            args=[
                message.webhook_id,
                message.claim,
                outcome.status,
                "" if outcome.status_code is None else outcome.status_code,
                outcome.error or "",
                _ms(outcome.next_attempt_at),
                "1" if outcome.stop_url else "0",
                int(outcome.attempted),
                self._retention_ms,
                message.url,
            ],
        )

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
        answer = await self._redeliver(
            keys=[_message_key(webhook_id), WEBHOOKS_DUE, _stopped_key(task_id)], args=[task_id, webhook_id, _ms(now)]
        )
        return Redelivery(answer.decode())

    async def pending(self) -> int:
        return int(await self._redis.zcard(WEBHOOKS_DUE))

    async def _hashes(self, ids: list[str]) -> list[dict[str, Any]]:
        """Each message's fields as text (empty for a message that has expired)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for webhook_id in ids:
                pipe.hgetall(_message_key(webhook_id))
            found = await pipe.execute()
        return [{key.decode(): value.decode() for key, value in fields.items()} for fields in found]
