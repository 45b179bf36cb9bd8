"""`BodyLimit`: a request body over MAX_BODY_BYTES answers 413 in the API's JSON error shape.

Starlette's own limiter answers a too-large `Content-Length` with a plain-text 413 from outside the
app's middleware, so without the security headers. This one sits inside `SecurityHeaders` and answers a
declared length (the body never read) and a chunked body alike.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def too_large(max_bytes: int) -> str:
    return (
        f"The request body is larger than MAX_BODY_BYTES ({max_bytes} bytes). Send a shorter body "
        "(a requirement holds at most MAX_REQUIREMENT_CHARS characters), or raise MAX_BODY_BYTES."
    )


class BodyLimit:
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
