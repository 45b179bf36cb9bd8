"""The moving-window rate limit on task creation (`limits`), per client, on every front door."""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from delivery_service.service_errors import LimitReached


class TaskRateLimit:
    """At most RATE_LIMIT task creations per client in any moving window (e.g. `10/minute`)."""

    def __init__(self, rate: str, storage_uri: str | None = None) -> None:
        """Counts in this process, or in Redis (`async+redis://...`) so that replicas share the limit."""
        self._item = parse(rate)
        # limits' asyncio storage expires entries in a loop task; its thread-based twin starts a timer
        # thread from the request, and Thread.start() waits for the GIL, stalling the loop under load.
        storage = RedisStorage(storage_uri, implementation="redispy") if storage_uri else MemoryStorage()
        self._limiter = MovingWindowRateLimiter(storage)

    async def check(self, client: str) -> None:
        """Count one creation by `client`; LimitReached (429, Retry-After: the window's wait) beyond the rate."""
        if await self._limiter.hit(self._item, client):
            return
        reset = (await self._limiter.get_window_stats(self._item, client)).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise LimitReached(
            f"Too many new tasks from this client (RATE_LIMIT={self._item}). Try again in {wait} seconds.", wait
        )
