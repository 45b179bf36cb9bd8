"""Real model paths: an OpenAI-compatible server (success and each failure), DashScope, the embedded model."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from conftest import AGENT_NAMES, ServerProcess, free_port, on_stub, read_stream, sequences, start_task, stub_requests

SECRET_KEY = "sk-test-secret-0123456789"


def test_openai_compatible_endpoint_end_to_end(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    settings = on_stub(openai_stub, "/ok/v1", LLM_PROVIDER="auto", LLM_API_KEY=SECRET_KEY, LLM_MODEL="stub-model")
    service = start_service(**settings)
    health = httpx.get(f"{service.base_url}/healthz").json()
    assert health["model"]["provider"] == "openai", "auto picks the OpenAI-compatible endpoint when LLM_BASE_URL is set"
    assert health["model"]["model"] == "stub-model"
    assert SECRET_KEY not in httpx.get(f"{service.base_url}/healthz").text

    requirement = "Build a recipe sharing site"
    task_id = start_task(service.base_url, requirement, stream_tokens=True)
    events = read_stream(service.base_url, task_id)
    assert events[-1]["event_type"] == "end"
    assert sequences(events) == list(range(1, len(events) + 1))
    outputs = [e for e in events if e["event_type"] == "output"]
    assert [e["agent_name"] for e in outputs] == AGENT_NAMES
    for output in outputs:
        assert f"Stub deliverable for: {requirement}" in output["content"]
    assert outputs[0]["content"].startswith("# Requirements analysis")
    assert any(e["event_type"] == "delta" for e in events), "tokens streamed from the server arrive as deltas"
    thoughts = [e["content"] for e in events if e["event_type"] == "thought"]
    assert len(thoughts) == 4, "one plan per agent; the stub's plain markdown is no parse failure to report"
    assert not any("parse" in thought.lower() for thought in thoughts), thoughts
    step_ends = [e for e in events if e["event_type"] == "step_end"]
    assert all(e["metadata"]["usage"]["total_tokens"] > 0 for e in step_ends), "token usage comes from the stream"
    usage = httpx.get(f"{service.base_url}/api/task/{task_id}/status").json()["usage"]
    assert usage["prompt_tokens"] == 4 * 10, "the stub reports 10 prompt tokens per call, one call per agent"
    assert usage["completion_tokens"] == sum(e["metadata"]["usage"]["completion_tokens"] for e in step_ends) > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    seen = [r for r in stub_requests(openai_stub, "/ok/") if r["body"]["model"] == "stub-model"]
    assert len(seen) == 4, "one chat completion per agent"
    for request in seen:
        assert request["authorization"] == f"Bearer {SECRET_KEY}"
        assert request["body"]["model"] == "stub-model"
        assert request["body"]["stream"] is True
        assert requirement in request["body"]["messages"][-1]["content"]


def test_dashscope_is_chosen_by_its_key(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    service = start_service(
        LLM_PROVIDER="auto",
        DASHSCOPE_API_KEY=SECRET_KEY,
        DASHSCOPE_BASE_URL=f"{openai_stub.base_url}/ok/v1",
        LLM_BASE_URL="http://127.0.0.1:1/v1",
    )
    assert httpx.get(f"{service.base_url}/healthz").json()["model"]["model"] == "qwen-plus"
    task_id = start_task(service.base_url, "做一个天气查询小程序")
    events = read_stream(service.base_url, task_id)
    assert events[-1]["event_type"] == "end"
    seen = [
        r for r in stub_requests(openai_stub, "/ok/") if "做一个天气查询小程序" in r["body"]["messages"][-1]["content"]
    ]
    assert len(seen) == 4
    assert {r["body"]["model"] for r in seen} == {"qwen-plus"}
    assert {r["authorization"] for r in seen} == {f"Bearer {SECRET_KEY}"}
    assert "Simplified Chinese" in seen[0]["body"]["messages"][-1]["content"], (
        "agents answer in the requirement's language"
    )


@pytest.mark.parametrize(
    ("base_path", "expected"),
    [
        ("/status/401/v1", ["rejected the API key", "HTTP 401", "LLM_API_KEY"]),
        ("/status/500/v1", ["HTTP 500", "submit the task again later"]),
        ("/status/429/v1", ["kept answering 429", "Wait a minute"]),
        ("/status/404/v1", ["404", "LLM_MODEL", "LLM_BASE_URL"]),
        ("refused", ["Could not connect", "LLM_BASE_URL"]),
        ("/hang/v1", ["did not answer within LLM_TIMEOUT_SECONDS=1 s", "Raise LLM_TIMEOUT_SECONDS"]),
    ],
)
def test_llm_failures_end_the_task_with_one_clear_error(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess, base_path: str, expected: list[str]
) -> None:
    settings = on_stub(openai_stub, base_path, LLM_API_KEY=SECRET_KEY, LLM_TIMEOUT_SECONDS="1", LLM_MAX_RETRIES="0")
    if base_path == "refused":
        settings["LLM_BASE_URL"] = f"http://127.0.0.1:{free_port()}/v1"
    service = start_service(**settings)
    task_id = start_task(service.base_url, "Build a chat app")
    events = read_stream(service.base_url, task_id)

    assert sequences(events) == list(range(1, len(events) + 1))
    assert events[0]["event_type"] == "start"
    assert [e["event_type"] for e in events].count("error") == 1
    error = events[-1]
    assert error["event_type"] == "error" and error["agent_name"] == "System"
    for phrase in expected:
        assert phrase in error["content"]
    assert SECRET_KEY not in error["content"] and "Traceback" not in error["content"]
    status = httpx.get(f"{service.base_url}/api/task/{task_id}/status").json()
    assert status["status"] == "failed" and status["error"] == error["content"]
    assert SECRET_KEY not in service.log(), "the key never reaches the log"


@pytest.mark.slow
@pytest.mark.timeout(600)  # two runs on the embedded model, each slower on a busy machine
def test_embedded_local_model_runs_a_task_and_a_follow_up_to_the_end(
    start_service: Callable[..., ServerProcess],
) -> None:
    service = start_service(LLM_PROVIDER="local")
    health = httpx.get(f"{service.base_url}/healthz").json()
    assert health["model"]["provider"] == "local"
    assert "demonstrates the pipeline" in health["model"]["note"]

    requirement = "Build a simple todo list web app"
    task_id = start_task(service.base_url, requirement)
    events = read_stream(service.base_url, task_id)
    assert events[-1]["event_type"] == "end", events[-1]["content"]
    assert sequences(events) == list(range(1, len(events) + 1))
    assert events[0]["metadata"]["model"]["model"] == "smollm2-135m"
    outputs = [e for e in events if e["event_type"] == "output"]
    assert len(outputs) == 4
    for output, heading in zip(
        outputs, ["# Requirements analysis", "# Test plan", "# Technical design", "# Delivery review"], strict=True
    ):
        assert output["content"].startswith(f"{heading}\n"), "markdown rendered from the data"
        assert output["metadata"]["data"] is not None, "the embedded model fills the deliverable's schema"
        assert len(output["content"]) < 6000, "the small model's output is capped"
    result = httpx.get(f"{service.base_url}/api/task/{task_id}/result").json()
    assert result["traceability"]["dangling"] == [] and result["traceability"]["complete"] is True
    review = result["deliverables"][3]["data"]
    assert review["decision"] == result["decision"] == "go", "the decision follows the computed coverage"
    assert review["reasons"][0] == "2 of 2 acceptance criteria have a test case."
    assert not [e for e in events if e["metadata"].get("kind") == "structure_fallback"]
    thoughts = [e["content"] for e in events if e["event_type"] == "thought"]
    assert not any("parse" in thought.lower() for thought in thoughts), "no parser internals shown as thoughts"
    assert httpx.get(f"{service.base_url}/readyz").json()["ready"] is True

    follow_up = httpx.post(
        f"{service.base_url}/api/task/{task_id}/follow_up", json={"request": "Add a test for sign-in"}
    )
    assert follow_up.status_code == 202
    revised = read_stream(service.base_url, follow_up.json()["task_id"])
    assert revised[-1]["event_type"] == "end", revised[-1]["content"]
    (triage,) = [e for e in revised if e["metadata"].get("kind") == "triage"]
    assert triage["metadata"]["rerun_from"] == "ProductManager", "the embedded model does not triage: all run again"
    assert len([e for e in revised if e["event_type"] == "output"]) == 4
