"""The outbox as the webhook sender sees it: awaitable. The cluster's Redis outbox is natively so; a
store's blocking outbox (SQLite, memory) is wrapped to run its queries off the event loop."""

from __future__ import annotations

import asyncio
from typing import Protocol

from delivery_service.store.outbox import AttemptOutcome, ClaimedMessage, Delivery, Outbox, ReceiverRoom, Redelivery


class AsyncOutbox(Protocol):
    """`store.outbox.Outbox`, awaitable; `SqliteOutbox` documents each call."""

    async def claim_due(self, now: float, lease_seconds: float, room: ReceiverRoom) -> list[ClaimedMessage]: ...

    async def record_attempt(self, message: ClaimedMessage, outcome: AttemptOutcome, now: float) -> None: ...

    async def deliveries(self, task_id: str) -> list[Delivery]: ...

    async def redeliver(self, task_id: str, webhook_id: str, now: float) -> Redelivery: ...

    async def pending(self) -> int: ...


class ThreadedOutbox:
    """A blocking `Outbox` whose every call runs on a worker thread."""

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def claim_due(self, now: float, lease_seconds: float, room: ReceiverRoom) -> list[ClaimedMessage]:
        return await asyncio.to_thread(self._outbox.claim_due, now, lease_seconds, room)

    async def record_attempt(self, message: ClaimedMessage, outcome: AttemptOutcome, now: float) -> None:
        await asyncio.to_thread(self._outbox.record_attempt, message, outcome, now)

    async def deliveries(self, task_id: str) -> list[Delivery]:
        return await asyncio.to_thread(self._outbox.deliveries, task_id)

    async def redeliver(self, task_id: str, webhook_id: str, now: float) -> Redelivery:
        return await asyncio.to_thread(self._outbox.redeliver, task_id, webhook_id, now)

    async def pending(self) -> int:
        return await asyncio.to_thread(self._outbox.pending)
