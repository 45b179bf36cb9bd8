"""A base for small ASGI middlewares that act when an HTTP response starts."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ResponseStartMiddleware:
    """Calls `on_response_start` with the response's first message, before it is sent (HTTP only)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def on_request(self, scope: Scope) -> Any:
        """Whatever the hook needs from the request's start (e.g. a clock reading)."""
        return None

    def on_response_start(self, scope: Scope, message: Message, started: Any) -> None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self.on_request(scope)

        async def hooked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.on_response_start(scope, message, started)
            await send(message)

        await self.app(scope, receive, hooked_send)
