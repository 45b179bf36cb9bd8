"""A claim takes only the messages that can start now: past a busy receiver's, in both outboxes.

The sender caps the attempts in flight per receiver (webhooks/sender.py); a claim is handed the room
left (`ReceiverRoom`) and leaves a busy receiver's messages due, however many there are, so the
earliest messages of other receivers behind them are taken. SQLite (and memory) is quick; Redis needs
redis-server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio

from cluster_processes import RedisServer
from delivery_service.cluster.redis_event_log import WEBHOOKS_DUE
from delivery_service.cluster.redis_outbox import RedisOutbox
from delivery_service.settings import Settings
from delivery_service.store.memory import MemoryTaskStore
from delivery_service.store.outbox import OutboxMessage, ReceiverRoom, receiver
from delivery_service.webhooks.async_outbox import AsyncOutbox, ThreadedOutbox

SLOW = "slow.example:81"
# 120 messages to one receiver (spelt in two cases), due first, then one each to two others.
MESSAGES = [
    OutboxMessage(
        f"msg_a{n:03}", "task-a", n, "task.step_completed", f"http://{'SLOW' if n % 2 else 'slow'}.example:81/{n}", "{}"
    )
    for n in range(120)
] + [
    OutboxMessage("msg_b", "task-b", 1, "task.completed", "http://fast.example/hook", "{}"),
    OutboxMessage("msg_c", "task-c", 1, "task.completed", "https://other.example:8443/hook?x=1", "{}"),
]


def test_a_receiver_is_a_urls_host_and_port_as_written() -> None:
    assert receiver("http://SLOW.example:81/a?b#c") == receiver("http://slow.example:81") == SLOW
    assert receiver("https://other.example:8443/hook?x=1") == "other.example:8443"
    assert receiver("http://slow.example/a") != SLOW


async def _claims_pass_over_a_busy_receiver(outbox: AsyncOutbox) -> None:
    now = time.time() + 1
    first = await outbox.claim_due(now, 30, ReceiverRoom(4, 2, {SLOW: 1}))
    assert sorted(message.webhook_id for message in first) == ["msg_a000", "msg_b", "msg_c"]
    assert await outbox.claim_due(now, 30, ReceiverRoom(4, 2, {SLOW: 2})) == [], "the receiver has no room left"
    later = await outbox.claim_due(now, 30, ReceiverRoom(4, 2, {}))
    assert [message.webhook_id for message in later] == ["msg_a001", "msg_a002"], "the earliest, the cap's share"
    assert await outbox.pending() == len(MESSAGES), "the messages passed over are still there, due"


def test_a_sqlite_claim_passes_over_a_busy_receivers_messages() -> None:
    store = MemoryTaskStore()
    store.save([], [], MESSAGES)  # due at the same time: claimed in the order of their ids
    asyncio.run(_claims_pass_over_a_busy_receiver(ThreadedOutbox(store.outbox)))


@pytest.fixture
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.new_database_url()
    server.stop()


@pytest.mark.slow  # starts redis-server
def test_a_redis_claim_passes_over_a_busy_receivers_messages(redis_url: str) -> None:
    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        now_ms = int(time.time() * 1000)
        for offset, message in enumerate(MESSAGES):  # as the append script stores them
            fields = {
                "task_id": message.task_id,
                "sequence": message.sequence,
                "type": message.type,
                "url": message.url,
            }
            fields |= {"body": message.body, "created": now_ms, "status": "pending", "attempts": 0, "attempts_base": 0}
            await client.hset(f"mad:webhook:{message.webhook_id}", mapping=fields)
            await client.zadd(WEBHOOKS_DUE, {message.webhook_id: now_ms + offset})
        await _claims_pass_over_a_busy_receiver(RedisOutbox(client, Settings(_env_file=None)))  # type: ignore[call-arg]
        await client.aclose()

    asyncio.run(run())
