"""An OpenAI-compatible chat-completions server for tests, run by a real uvicorn on 127.0.0.1.

Its behaviour is chosen by the first path segment of the base URL a test configures, so one server
covers every case: `/ok/v1` answers (streaming or not), `/status/<code>/v1` fails with that HTTP
status and an OpenAI-style error body, `/hang/v1` never answers (for client timeouts),
`/dies/v1` drops the connection in the middle of its answer, `/flaky/<label>/<n>/<code>/v1` fails its first n requests with that status (429 with `Retry-After:
0.2`) and then answers, and `/slow/v1` streams one word every 50 ms. Every request it receives (path,
Authorization header, JSON body) is kept, newest last, at `GET /requests`.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

app = FastAPI()
received: list[dict[str, Any]] = []

_REQUIREMENT = re.compile(r"<requirement>\s*(.*?)\s*</requirement>", re.DOTALL)
_HEADING = re.compile(r"^#\s+.+$", re.MULTILINE)


def stub_answer(body: dict[str, Any]) -> str:
    """A markdown deliverable that names the outline's first heading and the requirement it was given."""
    prompt = "\n".join(str(message.get("content", "")) for message in body.get("messages", []))
    requirement = _REQUIREMENT.search(prompt)
    heading = _HEADING.findall(prompt)
    title = heading[0] if heading else "# Deliverable"
    subject = requirement.group(1) if requirement else "unknown"
    return f"{title}\n\nStub deliverable for: {subject}\n\n## Summary\n\nStub summary of {subject}."


def _chunk(completion_id: str, model: str, delta: dict[str, Any], finish: str | None) -> str:
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload)}\n\n"


async def record(request: Request) -> dict[str, Any]:
    body: dict[str, Any] = await request.json()
    received.append({"path": request.url.path, "authorization": request.headers.get("authorization"), "body": body})
    return body


@app.get("/requests")
async def requests_seen() -> list[dict[str, Any]]:
    return received


failures_left: dict[str, int] = {}


@app.post("/ok/v1/chat/completions")
async def ok(request: Request) -> Any:
    return await answer(await record(request))


@app.post("/slow/v1/chat/completions")
async def slow(request: Request) -> Any:
    return await answer(await record(request), pause_seconds=0.05)


@app.post("/dies/v1/chat/completions")
async def dies(request: Request) -> StreamingResponse:
    """Starts streaming an answer, then drops the connection mid-body, as a crashing server would."""
    body = await record(request)

    async def chunks() -> Any:
        yield _chunk("chatcmpl-stub", body.get("model", "stub"), {"role": "assistant", "content": "Partial"}, None)
        raise ConnectionAbortedError("the stub model server dies mid-stream")

    return StreamingResponse(chunks(), media_type="text/event-stream")


@app.post("/flaky/{label}/{failures}/{code}/v1/chat/completions")
async def flaky(label: str, failures: int, code: int, request: Request) -> Any:
    body = await record(request)
    left = failures_left.setdefault(label, failures)
    if left > 0:
        failures_left[label] = left - 1
        headers = {"Retry-After": "0.2"} if code == 429 else {}
        error = {"message": f"stub transient failure {code}", "type": "stub_error", "code": str(code)}
        return JSONResponse({"error": error}, status_code=code, headers=headers)
    return await answer(body)


async def answer(body: dict[str, Any], pause_seconds: float = 0.0) -> Any:
    """The stub deliverable, as one JSON answer or as a stream of words `pause_seconds` apart."""
    text = stub_answer(body)
    model = body.get("model", "stub")
    usage = {"prompt_tokens": 10, "completion_tokens": len(text.split()), "total_tokens": 10 + len(text.split())}
    if not body.get("stream"):
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }

    async def chunks() -> Any:
        yield _chunk("chatcmpl-stub", model, {"role": "assistant", "content": ""}, None)
        for word in re.findall(r"\S+\s*", text):
            await asyncio.sleep(pause_seconds)
            yield _chunk("chatcmpl-stub", model, {"content": word}, None)
        yield _chunk("chatcmpl-stub", model, {}, "stop")
        yield f"data: {json.dumps({'id': 'chatcmpl-stub', 'object': 'chat.completion.chunk', 'created': 0, 'model': model, 'choices': [], 'usage': usage})}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(chunks(), media_type="text/event-stream")


@app.post("/status/{code}/v1/chat/completions")
async def failing(code: int, request: Request) -> JSONResponse:
    await record(request)
    error = {"message": f"stub failure with status {code}", "type": "stub_error", "code": str(code)}
    return JSONResponse({"error": error}, status_code=code)


@app.post("/hang/v1/chat/completions")
async def hang(request: Request) -> None:
    await record(request)
    await asyncio.Event().wait()
