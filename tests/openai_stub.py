"""An OpenAI-compatible chat-completions server for tests, run by a real uvicorn on 127.0.0.1.

Its behaviour is chosen by the first path segment of the base URL a test configures, so one server
covers every case: `/ok/v1` answers (streaming or not) with the asking agent's deliverable as JSON,
`/answers/<style>/v1` answers in another style (fenced JSON, prose, prose then JSON, JSON with
traceability gaps: see `stub_answer`), `/status/<code>/v1` fails with that HTTP
status and an OpenAI-style error body, `/hang/v1` never answers (for client timeouts),
`/dies/v1` drops the connection in the middle of its answer, `/follow-up/<agent>/v1` triages every follow-up
as re-running from that agent and answers a follow-up's agents with a scripted revision (`revised_data`), `/flaky/<label>/<n>/<code>/v1` fails its first n requests with that status (429 with `Retry-After:
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
# Each agent's prompt shows the JSON shape of its own deliverable; the earlier deliverables it is given
# are markdown. So the shape tells which agent asks (latest step first).
_SHAPES = (
    ("Coordinator", '"decision": "go|no_go"'),
    ("SoftwareDeveloper", '"components": [{"id": "C-1"'),
    ("QAEngineer", '"test_cases": [{"id": "TC-1"'),
)
answers_given: dict[str, int] = {}


def _asking_agent(prompt: str) -> str:
    return next((agent for agent, shape in _SHAPES if shape in prompt), "ProductManager")


def stub_data(agent: str, subject: str, gaps: bool = False) -> dict[str, Any]:
    """A valid deliverable naming the requirement; with `gaps`, one must criterion is untested and two
    references point at nothing, while the review still says go."""
    note = f"Stub deliverable for: {subject}"
    if agent == "ProductManager":
        return {
            "user_stories": [{"id": "US-1", "priority": "must", "story": note}],
            "acceptance_criteria": [
                {"id": "AC-1.1", "story_id": "US-1", "given": "a user", "when": "they act", "then": "it works"},
                {"id": "AC-1.2", "story_id": "US-1", "given": "bad input", "when": "they act", "then": "an error"},
            ],
            "non_functional": [],
            "open_questions": [],
        }
    if agent == "QAEngineer":
        covers = ["AC-1.1", "AC-9.9"] if gaps else ["AC-1.1", "AC-1.2"]
        return {
            "test_cases": [
                {
                    "id": "TC-1",
                    "title": note,
                    "type": "functional",
                    "steps": ["act"],
                    "expected": "it works",
                    "covers": covers,
                }
            ]
        }
    if agent == "SoftwareDeveloper":
        serves = ["US-1", "US-7"] if gaps else ["US-1"]
        return {
            "components": [{"id": "C-1", "name": "App", "responsibility": note, "serves": serves}],
            "diagram": "flowchart LR\n  User --> App",
        }
    return {"decision": "go", "reasons": ["The stub sees no problem."], "issues": [], "summary": note}


# The scripted revision of a follow-up, against `stub_data`: AC-1.2 removed; US-2 and AC-2.1 added; TC-1
# and C-1 changed to cover and serve them.
REVISED_CHANGES = {"added": ["US-2", "AC-2.1"], "removed": ["AC-1.2"], "modified": ["TC-1", "C-1"]}


def revised_data(agent: str, subject: str) -> dict[str, Any]:
    data = stub_data(agent, subject)
    if agent == "ProductManager":
        data["user_stories"].append(
            {"id": "US-2", "priority": "should", "story": "As a user, I want to sign in with email"}
        )
        data["acceptance_criteria"] = [
            data["acceptance_criteria"][0],
            {"id": "AC-2.1", "story_id": "US-2", "given": "an email", "when": "I sign in", "then": "I am in"},
        ]
    elif agent == "QAEngineer":
        data["test_cases"][0]["covers"] = ["AC-1.1", "AC-2.1"]
    elif agent == "SoftwareDeveloper":
        data["components"][0]["serves"] = ["US-1", "US-2"]
    return data


def prompt_of(body: dict[str, Any]) -> str:
    """Every message of a chat-completions request, as one text."""
    return "\n".join(str(message.get("content", "")) for message in body.get("messages", []))


def asked_for(body: dict[str, Any]) -> str:
    """Which agent a request is from, `Triage` for a follow-up's triage."""
    prompt = prompt_of(body)
    return "Triage" if "<previous_documents>" in prompt else _asking_agent(prompt)


def stub_answer(body: dict[str, Any], style: str = "json") -> str:
    """The asking agent's deliverable: `json`, `fenced` (in a markdown fence), `prose` (markdown, no JSON),
    `repair` (prose the first time each agent asks about a requirement, JSON after) or `gaps`."""
    prompt = prompt_of(body)
    requirement = _REQUIREMENT.search(prompt)
    subject = requirement.group(1) if requirement else "unknown"
    agent = _asking_agent(prompt)
    if style == "repair":
        key = f"{agent}:{subject}"
        answers_given[key] = answers_given.get(key, 0) + 1
        style = "prose" if answers_given[key] == 1 else "json"
    if style == "prose":
        return f"# {agent}\n\nStub deliverable for: {subject}\n\n## Summary\n\nStub summary of {subject}."
    text = json.dumps(stub_data(agent, subject, gaps=style == "gaps"), ensure_ascii=False)
    return f"Here it is:\n```json\n{text}\n```" if style == "fenced" else text


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


@app.post("/answers/{style}/v1/chat/completions")
async def answers_in_style(style: str, request: Request) -> Any:
    """Answers as `stub_answer(style)` describes: fenced, prose, repair or gaps."""
    return await answer(await record(request), style=style)


@app.post("/follow-up/{rerun_from}/v1/chat/completions")
async def follow_up(rerun_from: str, request: Request) -> Any:
    """A first task as `/ok/v1`; a follow-up's triage names `rerun_from`, its agents answer `revised_data`."""
    body = await record(request)
    prompt = prompt_of(body)
    if asked_for(body) == "Triage":
        triage = {"classification": "new_feature", "rerun_from": rerun_from, "reason": "Scripted by the stub."}
        return await answer(body, text=json.dumps(triage))
    if "<follow_up_request>" in prompt:
        requirement = _REQUIREMENT.search(prompt)
        data = revised_data(_asking_agent(prompt), requirement.group(1) if requirement else "unknown")
        return await answer(body, text=json.dumps(data))
    return await answer(body)


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


async def answer(body: dict[str, Any], pause_seconds: float = 0.0, style: str = "json", text: str | None = None) -> Any:
    """`text` (default: the stub deliverable), as one JSON answer or as a stream of words `pause_seconds` apart."""
    text = stub_answer(body, style) if text is None else text
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
