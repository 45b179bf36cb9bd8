"""`McpGuard`: what `/mcp` checks before the MCP SDK sees a request.

In this order: the service is up (503), the caller's API key (401, when API_KEYS is set), the method
(405: the server is stateless and answers every message in its POST's response, so a GET stream would
carry nothing and only hold a connection), then the body, read once (within MAX_BODY_BYTES, `BodyLimit`)
and parsed with orjson, which is strict: a body that is not JSON (not UTF-8, an unpaired surrogate, a
number too large for a double, nested past MAX_DEPTH...) is a JSON-RPC parse error, and one that is not a
JSON-RPC message an invalid request, both with HTTP 400. The SDK then parses the same bytes again (it
takes no parsed message): what passed here cannot make its own parser or validation fail.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from mcp.types import INVALID_REQUEST, PARSE_ERROR, JSONRPCMessage
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from delivery_service.http.error_responses import service_error_response
from delivery_service.http.lifespan import running_service
from delivery_service.service_errors import ServiceError

# Deep enough for any message of these tools (their arguments are flat), far below the recursion limit of
# the SDK's own `json.loads` and pydantic's validation, which run on the same body after this check.
MAX_DEPTH = 64
_SEND = "Send one JSON-RPC 2.0 message as a UTF-8 JSON object, such as "
_EXAMPLE = '{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}'
NOT_POSTED = (
    "This MCP server is stateless: it answers every message in the response to its POST, and opens no "
    "stream and no session. Send JSON-RPC messages with POST /mcp."
)


def _deeper_than(value: object, limit: int) -> bool:
    """Whether `value` nests arrays and objects more than `limit` deep (walked level by level, not recursively)."""
    level = [value]
    for _ in range(limit + 1):
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            return False
        level = [child for item in containers for child in (item.values() if isinstance(item, dict) else item)]
    return True


def _json_rpc_error(code: int, message: str) -> JSONResponse:
    """A JSON-RPC error response with HTTP 400; `id` is null, as JSON-RPC asks when none could be read."""
    return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, status_code=400)


def _checked(body: bytes) -> JSONResponse | None:
    """The JSON-RPC error a body deserves, or None when it is a message the SDK can take."""
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _json_rpc_error(PARSE_ERROR, f"Parse error: the body is not valid JSON ({exc}). {_SEND}{_EXAMPLE}.")
    if _deeper_than(parsed, MAX_DEPTH):
        reason = f"it nests arrays and objects more than {MAX_DEPTH} deep"
        return _json_rpc_error(PARSE_ERROR, f"Parse error: {reason}. {_SEND}{_EXAMPLE}.")
    try:
        JSONRPCMessage.model_validate(parsed)
    except ValidationError:
        return _json_rpc_error(
            INVALID_REQUEST,
            'Invalid request: the body is JSON but not one JSON-RPC 2.0 message (an object with "jsonrpc": "2.0" and '
            f'a "method", or a response; batches are not accepted). {_SEND}{_EXAMPLE}.',
        )
    return None


class McpGuard:
    """Wraps the SDK's `/mcp` endpoint with the checks of the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope)
        if refusal is None and scope["method"] != "POST":
            refusal = JSONResponse({"detail": NOT_POSTED}, 405, headers={"Allow": "POST"})
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        body = await Request(scope, receive).body()
        refusal = _checked(body)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._app(scope, _replaying(body, receive), send)

    @staticmethod
    def _refusal(scope: Scope) -> JSONResponse | None:
        """503 while the task store is unavailable, 401 without a valid API key (when API_KEYS is set)."""
        try:
            running_service(scope["app"].state).keys.caller(Request(scope))
        except ServiceError as exc:
            return service_error_response(exc)
        except HTTPException as exc:
            return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)
        return None


def _replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` that hands over the body already read, then whatever comes next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
