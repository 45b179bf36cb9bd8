"""The MCP server at /mcp and the AG-UI endpoint, each with its protocol's own reference package.

MCP: the official `mcp` SDK's client over streamable HTTP against a real uvicorn. AG-UI: the stream of
`POST /api/ag-ui` parsed into the `ag-ui-protocol` package's event models.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pytest
from ag_ui.core import Event, RunAgentInput, UserMessage
from ag_ui.core import EventType as AgUiEventType
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from pydantic import TypeAdapter

from conftest import ServerProcess, read_stream, status, wait_until
from delivery_service import __version__

AGENT_NAMES = ["ProductManager", "QAEngineer", "SoftwareDeveloper", "Coordinator"]
ALICE = {"Authorization": "Bearer alice-key-0123"}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
EVENTS = TypeAdapter(Event)


async def with_session(base: str, headers: dict[str, str] | None, use: Callable[[ClientSession], Any]) -> Any:
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(60.0)) as client:
        async with streamable_http_client(f"{base}/mcp", http_client=client) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await use(session)


def test_mcp_tools_run_a_delivery_with_progress_per_step(start_service: Callable[..., ServerProcess]) -> None:
    server = start_service(API_KEYS="alice-key-0123", FAKE_LLM_DELAY_MS="5")
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def use(session: ClientSession) -> dict[str, Any]:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert tools == {"start_delivery", "get_delivery", "confirm_delivery", "cancel_delivery", "run_delivery"}
        result = await session.call_tool(
            "run_delivery", {"requirement": "Build a todo app"}, progress_callback=on_progress
        )
        assert not result.isError, result.content
        answer = dict(result.structuredContent or {})
        task_id = answer["status"]["task_id"]
        page = await session.read_resource(f"delivery://tasks/{task_id}/deliverables/QAEngineer")
        answer["resource"] = page.contents[0].text  # type: ignore[union-attr]
        unknown = await session.call_tool("get_delivery", {"task_id": "no-such-task"})
        answer["unknown"] = (unknown.isError, unknown.content[0].text)  # type: ignore[union-attr]
        return answer

    answer = asyncio.run(with_session(server.base_url, ALICE, use))
    assert [(done, total) for done, total, _ in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert "ProductManager finished" in str(progress[0][2])
    result = answer["result"]
    assert answer["status"]["status"] == "completed" and result["decision"] == "go"
    assert result["quality"]["gate"]["status"] == "pass", "the tool's result carries the findings and gate"
    assert [d["agent_name"] for d in result["deliverables"]] == AGENT_NAMES
    assert answer["resource"] == result["deliverables"][1]["content"]
    assert answer["unknown"][0] and "404" in answer["unknown"][1]
    # The run is an ordinary task of the same key, in the API.
    newest = httpx.get(f"{server.base_url}/api/tasks", headers=ALICE).json()["tasks"][0]
    assert newest["task_id"] == answer["status"]["task_id"] and newest["status"] == "completed"


def test_mcp_start_confirm_and_cancel_are_the_apis_own(start_service: Callable[..., ServerProcess]) -> None:
    server = start_service(FAKE_LLM_DELAY_MS="5")

    async def use(session: ClientSession) -> tuple[str, str]:
        started = (
            await session.call_tool("start_delivery", {"requirement": "Build a wiki", "skip_confirmation": False})
        ).structuredContent
        task_id = str(started["task_id"])  # type: ignore[index]
        for _ in range(600):
            status = (await session.call_tool("get_delivery", {"task_id": task_id})).structuredContent["status"]  # type: ignore[index]
            if status["status"] == "awaiting_confirmation":
                break
            await asyncio.sleep(0.05)  # polling a condition (bounded), as an MCP client would
        else:
            raise AssertionError(f"task {task_id} never waited for confirmation")
        confirmed = await session.call_tool("confirm_delivery", {"task_id": task_id, "approved": True})
        assert not confirmed.isError, confirmed.content
        other = (
            await session.call_tool("start_delivery", {"requirement": "Build a chat", "skip_confirmation": False})
        ).structuredContent
        cancelled = await session.call_tool("cancel_delivery", {"task_id": other["task_id"]})  # type: ignore[index]
        return task_id, str(cancelled.structuredContent["status"])  # type: ignore[index]

    task_id, cancelled_status = asyncio.run(with_session(server.base_url, None, use))
    assert read_stream(server.base_url, task_id)[-1]["event_type"] == "end"
    assert cancelled_status == "cancelled"


def test_mcp_refuses_a_wrong_key(start_service: Callable[..., ServerProcess]) -> None:
    server = start_service(API_KEYS="alice-key-0123")
    response = httpx.post(
        f"{server.base_url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": "Bearer wrong", "Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401 and "API_KEYS" in response.json()["detail"]
    with pytest.raises(ExceptionGroup) as refused:  # the SDK's client raises from its task group
        asyncio.run(
            with_session(server.base_url, {"Authorization": "Bearer wrong"}, lambda session: session.list_tools())
        )
    matched, _ = refused.value.split(httpx.HTTPStatusError)
    assert matched is not None and matched.exceptions[0].response.status_code == 401  # type: ignore[attr-defined]


UNPARSABLE = {
    "JSON nested 5,000 deep": b"[" * 5000 + b"]" * 5000,
    "invalid UTF-8": b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list\xff"}',
    "a 4,301-digit id": b'{"jsonrpc": "2.0", "id": ' + b"9" * 4301 + b', "method": "tools/list"}',
    "truncated JSON": b'{"jsonrpc": "2.0", "id": 1,',
    "an unpaired surrogate in the id": b'{"jsonrpc": "2.0", "id": "\\ud800", "method": "ping"}',
}
NOT_A_MESSAGE = {"an array": b"[]", "a number": b"5", "no method": b'{"jsonrpc": "2.0", "id": 1}'}


def test_mcp_answers_a_malformed_body_with_a_json_rpc_error_after_authentication(
    start_service: Callable[..., ServerProcess],
) -> None:
    server = start_service(API_KEYS="alice-key-0123")
    expected = [(name, body, -32700) for name, body in UNPARSABLE.items()]
    for name, body, code in expected + [(name, body, -32600) for name, body in NOT_A_MESSAGE.items()]:
        anonymous = httpx.post(f"{server.base_url}/mcp", content=body, headers=MCP_HEADERS)
        assert anonymous.status_code == 401, (name, anonymous.text)
        answer = httpx.post(f"{server.base_url}/mcp", content=body, headers={**MCP_HEADERS, **ALICE})
        assert answer.status_code == 400, (name, answer.status_code, answer.text)
        error = answer.json()
        assert error["jsonrpc"] == "2.0" and error["id"] is None and error["error"]["code"] == code, (name, error)
        assert "JSON-RPC" in error["error"]["message"], (name, error)


def test_mcp_opens_no_get_stream_and_says_to_post(start_service: Callable[..., ServerProcess]) -> None:
    """A stateless server sends every answer in the POST's response: a GET stream would only be held open."""
    server = start_service(API_KEYS="alice-key-0123")
    sse = {"Accept": "text/event-stream"}
    assert httpx.get(f"{server.base_url}/mcp", headers=sse).status_code == 401
    for method in ("GET", "DELETE", "PUT"):
        response = httpx.request(method, f"{server.base_url}/mcp", headers={**sse, **ALICE}, timeout=10)
        assert response.status_code == 405 and response.headers["allow"] == "POST", (method, response.text)
        assert "POST" in response.json()["detail"]


def test_mcp_reports_the_services_name_and_version(fake_service: ServerProcess) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
    }
    response = httpx.post(f"{fake_service.base_url}/mcp", json=initialize, headers=MCP_HEADERS)
    (data,) = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(data)["result"]["serverInfo"] == {"name": "multi-agent-delivery", "version": __version__}


def ag_ui_events(base: str, run_input: dict[str, Any], headers: dict[str, str] | None = None) -> list[Any]:
    """The AG-UI events of one run, each parsed with the ag-ui-protocol package's models."""
    with httpx.stream("POST", f"{base}/api/ag-ui", json=run_input, headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return [
            EVENTS.validate_python(json.loads(line[6:])) for line in response.iter_lines() if line.startswith("data: ")
        ]


def run_input(text: str, **forwarded: Any) -> dict[str, Any]:
    payload = RunAgentInput(
        thread_id="thread-1",
        run_id="run-1",
        state={},
        tools=[],
        context=[],
        forwarded_props=forwarded,
        messages=[UserMessage(id="m1", role="user", content=text)],
    )
    return payload.model_dump(mode="json", by_alias=True, exclude_none=True)


def test_ag_ui_runs_a_task_in_the_contracts_event_order(start_service: Callable[..., ServerProcess]) -> None:
    server = start_service()
    events = ag_ui_events(server.base_url, run_input("Build a todo app"))
    kinds = [event.type for event in events]
    assert kinds[0] is AgUiEventType.RUN_STARTED and kinds[-1] is AgUiEventType.RUN_FINISHED
    assert kinds[-2] is AgUiEventType.STATE_SNAPSHOT
    started_finished = (AgUiEventType.STEP_STARTED, AgUiEventType.STEP_FINISHED)
    steps = [(event.type, event.step_name) for event in events if event.type in started_finished]
    assert steps == [(kind, agent) for agent in AGENT_NAMES for kind in started_finished]
    messages = [event for event in events if event.type is AgUiEventType.TEXT_MESSAGE_START]
    assert [message.name for message in messages] == AGENT_NAMES
    for start in messages:  # each deliverable: start, content, end, inside its agent's step
        content, end = events[events.index(start) + 1 : events.index(start) + 3]
        assert content.type is AgUiEventType.TEXT_MESSAGE_CONTENT and end.type is AgUiEventType.TEXT_MESSAGE_END
        assert content.message_id == end.message_id == start.message_id
    task_id = events[0].metadata["task_id"]
    snapshot = events[-2].snapshot
    assert snapshot["task_id"] == task_id and len(snapshot["deliverables"]) == 4
    assert snapshot["traceability"]["coverage"] >= 0 and snapshot["quality"]["gate"]["status"] in ("pass", "concerns")
    assert events[-1].outcome.type == "success" and events[-1].thread_id == "thread-1" and events[-1].run_id == "run-1"
    listed = httpx.get(f"{server.base_url}/api/tasks").json()["tasks"]
    assert task_id in {task["task_id"] for task in listed}
    assert read_stream(server.base_url, task_id)[-1]["event_type"] == "end"


def test_ag_ui_streams_tokens_and_pauses_for_confirmation_as_an_interrupt(
    start_service: Callable[..., ServerProcess],
) -> None:
    server = start_service()
    first = ag_ui_events(server.base_url, run_input("Build a todo app", skip_confirmation=False, stream_tokens=True))
    contents = [event for event in first if event.type is AgUiEventType.TEXT_MESSAGE_CONTENT]
    assert len(contents) > 1, "deltas arrive as content events"
    finished = first[-1]
    assert finished.type is AgUiEventType.RUN_FINISHED and finished.outcome.type == "interrupt"
    (interrupt,) = finished.outcome.interrupts
    assert interrupt.reason == "confirmation_required" and interrupt.response_schema["required"] == ["approved"]

    second = ag_ui_events(server.base_url, resume_input(interrupt.id, {"approved": True}))
    assert second[0].type is AgUiEventType.RUN_STARTED and second[-1].outcome.type == "success"
    assert [e.step_name for e in second if e.type is AgUiEventType.STEP_STARTED] == AGENT_NAMES[1:]


def resume_input(interrupt_id: str, payload: Any, status: str = "resolved") -> dict[str, Any]:
    resumed = run_input("Build a todo app")
    resumed["runId"] = "run-2"
    resumed["resume"] = [{"interruptId": interrupt_id, "status": status, "payload": payload}]
    return resumed


def interrupted_run(base: str, headers: dict[str, str] | None = None) -> tuple[str, Any]:
    """A run that pauses for confirmation: its task and the interrupt it finished with."""
    events = ag_ui_events(base, run_input("Build a todo app", skip_confirmation=False), headers)
    (interrupt,) = events[-1].outcome.interrupts
    return str(events[0].metadata["task_id"]), interrupt


def test_ag_ui_resume_refuses_a_payload_its_response_schema_refuses(fake_service: ServerProcess) -> None:
    base = fake_service.base_url
    task_id, interrupt = interrupted_run(base)
    schema = jsonschema.Draft202012Validator(interrupt.response_schema)
    for payload in (False, None, "reject", {}, {"approved": "no"}, {"approved": False}, {"approved": True, "extra": 1}):
        # The schema the interrupt announced refuses it, and so does the service.
        assert not schema.is_valid(payload), payload
        response = httpx.post(f"{base}/api/ag-ui", json=resume_input(interrupt.id, payload))
        assert response.status_code == 422, (payload, response.text)
        assert response.json()["detail"][0]["loc"][:4] == ["body", "resume", 0, "payload"], response.text
    assert status(base, task_id)["status"] == "awaiting_confirmation"
    assert schema.is_valid({"approved": False, "feedback": "Add offline use."})
    rejected = ag_ui_events(base, resume_input(interrupt.id, {"approved": False, "feedback": "Add offline use."}))
    assert rejected[-1].outcome.type == "interrupt", "the revised analysis waits for a decision again"


def test_ag_ui_resume_of_a_finished_run_ends_with_its_outcome(fake_service: ServerProcess) -> None:
    base = fake_service.base_url
    _, approved = interrupted_run(base)
    assert ag_ui_events(base, resume_input(approved.id, {"approved": True}))[-1].outcome.type == "success"
    _, cancelled = interrupted_run(base)
    assert ag_ui_events(base, resume_input(cancelled.id, None, "cancelled"))[-1].outcome.type == "cancelled"
    for interrupt, outcome in ((approved, "success"), (cancelled, "cancelled")):
        for payload, resolution in (({"approved": True}, "resolved"), (None, "cancelled")):
            again = ag_ui_events(base, resume_input(interrupt.id, payload, resolution))
            assert again[0].type is AgUiEventType.RUN_STARTED, (outcome, resolution)
            assert again[-1].type is AgUiEventType.RUN_FINISHED and again[-1].outcome.type == outcome, (
                outcome,
                resolution,
            )


INVISIBLE = {"\u200b": "U+200B ZERO WIDTH SPACE", "\ufeff\u0301": "U+FEFF", "\x07": "U+0007"}


def test_ag_ui_messages_and_mcp_tools_need_a_visible_character(fake_service: ServerProcess) -> None:
    base = fake_service.base_url
    for text, named in INVISIBLE.items():
        response = httpx.post(f"{base}/api/ag-ui", json=run_input(f" {text} "))
        assert response.status_code == 422, response.text
        message = response.json()["detail"][0]["msg"]
        assert message.startswith("The last user message has no visible character") and named in message, message

    async def use(session: ClientSession) -> list[str]:
        _, interrupt = interrupted_run(base)
        task_id = interrupt.id.removeprefix("confirm-")
        calls = [("start_delivery", {"requirement": text}) for text in INVISIBLE]
        calls += [("run_delivery", {"requirement": "\u200b"})]
        calls += [("confirm_delivery", {"task_id": task_id, "approved": False, "feedback": "\u200b"})]
        answers = [await session.call_tool(name, arguments) for name, arguments in calls]
        assert all(answer.isError for answer in answers), answers
        return [answer.content[0].text for answer in answers]  # type: ignore[union-attr]

    texts = asyncio.run(with_session(base, None, use))
    for text, named in zip(texts, [*INVISIBLE.values(), "U+200B", "U+200B"], strict=True):
        assert "has no visible character" in text and named in text and "Value error" not in text, text


def test_ag_ui_reports_a_failing_model_as_run_error(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    failing = f"{openai_stub.base_url}/status/500/v1"
    server = start_service(LLM_PROVIDER="openai", LLM_BASE_URL=failing, LLM_API_KEY="k", LLM_MAX_RETRIES="0")
    events = ag_ui_events(server.base_url, run_input("Build a todo app"))
    assert events[0].type is AgUiEventType.RUN_STARTED
    assert events[-1].type is AgUiEventType.RUN_ERROR and events[-1].message and events[-1].code
    task_id = events[0].metadata["task_id"]
    wait_until(lambda: status(server.base_url, task_id)["status"] == "failed", 30, "failed")


def test_ag_ui_refuses_a_run_without_a_user_message(start_service: Callable[..., ServerProcess]) -> None:
    server = start_service()
    payload = run_input("x")
    payload["messages"] = []
    response = httpx.post(f"{server.base_url}/api/ag-ui", json=payload)
    assert response.status_code == 422 and "user message" in response.json()["detail"][0]["msg"]
    bad = httpx.post(f"{server.base_url}/api/ag-ui", json=run_input("x", priority=12))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:3] == ["body", "forwardedProps", "priority"]


@pytest.mark.slow  # a process killed, or a client that goes away: not the image's packages
def test_ag_ui_client_that_goes_away_cancels_the_task_only_when_it_asked_to(
    start_service: Callable[..., ServerProcess],
) -> None:
    server = start_service(FAKE_LLM_DELAY_MS="50")
    for on_disconnect, outcome in (("cancel", "cancelled"), ("continue", "completed")):
        body = run_input("Build a todo app", on_disconnect=on_disconnect)
        with httpx.stream("POST", f"{server.base_url}/api/ag-ui", json=body, timeout=60) as response:
            lines = (json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: "))
            task_id = next(lines)["metadata"]["task_id"]
            assert next(event for event in lines if event["type"] == "STEP_STARTED")["stepName"] == "ProductManager"
        # The connection is closed here, while the ProductManager works.
        wait_until(lambda t=task_id, o=outcome: status(server.base_url, t)["status"] == o, 60, outcome)
