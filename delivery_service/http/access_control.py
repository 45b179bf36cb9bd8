"""Abuse limits and the trail of who did what: rate limits, open-stream caps, audit lines, headers.

A client is its API key id when authentication is on, else its address. Task creation is rate
limited per client with a moving window (`limits`); each client may hold MAX_STREAMS_PER_CLIENT open
streams. Every creation, cancel and decision is written as one JSON line to the `audit` logger,
naming the key id (never the key) and the address.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import HTTPException, Request
from limits import parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.types import Message, Scope

from delivery_service.http.auth import Caller
from delivery_service.observability.asgi_hooks import ResponseStartMiddleware
from delivery_service.store.task_event import utc_now_iso

audit_logger = logging.getLogger("audit")

TEST_UI_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI's and ReDoc's pages (served with their files from this host, see main.py): their inline
# start-up script and styles are FastAPI's own; everything else must come from here (ReDoc's bundle is
# served with its cdn.redoc.ly logo address replaced, and this policy would refuse any other host).
API_DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
API_DOCS_PAGES = ("/docs", "/docs/oauth2-redirect", "/redoc")
# The test UI draws a design's mermaid diagram in a sandboxed frame of its own page (static/diagram.html):
# mermaid styles its SVG with inline <style>, which the test UI's policy refuses, so only that frame,
# framed by this origin alone, allows inline styles.
DIAGRAM_PAGE = "/static/diagram.html"
DIAGRAM_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def client_of(request: Request, caller: Caller) -> str:
    """Who a limit applies to: the API key id, or the client's address when authentication is off."""
    if caller.owner:
        return f"key:{caller.owner}"
    return f"address:{request.client.host if request.client else 'unknown'}"


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
        if await self._limiter.hit(self._item, client):
            return
        reset = (await self._limiter.get_window_stats(self._item, client)).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise HTTPException(
            status_code=429,
            detail=f"Too many new tasks from this client (RATE_LIMIT={self._item}). Try again in {wait} seconds.",
            headers={"Retry-After": str(wait)},
        )


class StreamSlots:
    """Counts each client's open streams (event loop only) and refuses one beyond the cap."""

    def __init__(self, per_client: int) -> None:
        self._per_client = per_client
        self._open: Counter[str] = Counter()

    def take(self, client: str) -> None:
        if self._open[client] >= self._per_client:
            raise HTTPException(
                status_code=429,
                detail=f"This client already has {self._per_client} open streams (MAX_STREAMS_PER_CLIENT). "
                "Close one, then try again.",
                headers={"Retry-After": "5"},
            )
        self._open[client] += 1

    def give_back(self, client: str) -> None:
        self._open[client] -= 1
        if self._open[client] <= 0:
            del self._open[client]

    @contextmanager
    def held(self, client: str) -> Iterator[None]:
        """Hold a slot taken with `take` for as long as the stream is open."""
        try:
            yield
        finally:
            self.give_back(client)


def audit(action: str, request: Request, caller: Caller, task_id: str, **details: object) -> None:
    """One structured line: who (key id, address) did what to which task, and when."""
    line = {
        "at": utc_now_iso(),
        "action": action,
        "task_id": task_id,
        "key_id": caller.owner,
        "address": request.client.host if request.client else None,
        **details,
    }
    audit_logger.info(json.dumps(line, ensure_ascii=False))


class SecurityHeaders(ResponseStartMiddleware):
    """nosniff, no referrer and no framing on every response; a strict CSP on the test UI and the API docs."""

    def on_response_start(self, scope: Scope, message: Message, started: Any) -> None:
        path: str = scope["path"]
        extra = list(COMMON_HEADERS)
        if path == DIAGRAM_PAGE:
            extra = [(name, b"SAMEORIGIN" if name == b"x-frame-options" else value) for name, value in extra]
            extra.append((b"content-security-policy", DIAGRAM_POLICY.encode()))
        elif path == "/test-ui" or path.startswith("/static/"):
            extra.append((b"content-security-policy", TEST_UI_POLICY.encode()))
        elif path in API_DOCS_PAGES:
            extra.append((b"content-security-policy", API_DOCS_POLICY.encode()))
        message["headers"] = [*message.get("headers", []), *extra]
