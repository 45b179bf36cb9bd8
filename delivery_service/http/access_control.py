"""The HTTP layer's own limits and headers: MAX_STREAMS_PER_CLIENT open streams per client
(`Requester.client`), MAX_BODY_BYTES, and security headers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from delivery_service.observability.asgi_hooks import ResponseStartMiddleware
from delivery_service.service_errors import LimitReached

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


class StreamSlots:
    """Counts each client's open streams (event loop only) and refuses one beyond the cap."""

    def __init__(self, per_client: int) -> None:
        self._per_client = per_client
        self._open: Counter[str] = Counter()

    def take(self, client: str) -> None:
        if self._open[client] >= self._per_client:
            raise LimitReached(
                f"This client already has {self._per_client} open streams (MAX_STREAMS_PER_CLIENT). "
                "Close one, then try again."
            )
        self._open[client] += 1

    @contextmanager
    def held(self, client: str) -> Iterator[None]:
        """Hold a slot taken with `take` for as long as the stream is open."""
        try:
            yield
        finally:
            self._open[client] -= 1
            if self._open[client] <= 0:
                del self._open[client]


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


def too_large(max_bytes: int) -> str:
    return (
        f"The request body is larger than MAX_BODY_BYTES ({max_bytes} bytes). Send a shorter body "
        "(a requirement holds at most MAX_REQUIREMENT_CHARS characters), or raise MAX_BODY_BYTES."
    )


class BodyLimit:
    """A request body over MAX_BODY_BYTES answers 413 in the API's JSON error shape.

    Starlette's own limiter answers a too-large `Content-Length` with a plain-text 413 from outside the
    app's middleware, so without the security headers. This one sits inside `SecurityHeaders` and
    answers a declared length (the body never read) and a chunked body alike.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = JSONResponse({"detail": too_large(self.max_bytes)}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(status_code=413, detail=too_large(self.max_bytes))
            return message

        await self.app(scope, counted_receive, send)
