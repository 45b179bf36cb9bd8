"""Structured deliverables end to end, over real HTTP: the scripted model, and an OpenAI-compatible server
answering JSON, fenced JSON, prose then JSON (one repair), prose only (the fallback), or JSON whose
documents do not trace (an uncovered must-have criterion and dangling references)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from conftest import ServerProcess, read_stream, start_task

AGENTS = ["ProductManager", "QAEngineer", "SoftwareDeveloper", "Coordinator"]


def run(service: ServerProcess, requirement: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    task_id = start_task(service.base_url, requirement)
    events = read_stream(service.base_url, task_id)
    assert events[-1]["event_type"] == "end", events[-1]["content"]
    return events, httpx.get(f"{service.base_url}/api/task/{task_id}/result").json()


def actions(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == "action" and e["metadata"].get("kind") == kind]


def stub_requests(stub: ServerProcess, path: str, requirement: str) -> list[dict[str, Any]]:
    seen = httpx.get(f"{stub.base_url}/requests").json()
    return [r for r in seen if r["path"].startswith(path) and requirement in r["body"]["messages"][-1]["content"]]


def test_the_scripted_model_delivers_data_and_a_computed_traceability(fake_service: ServerProcess) -> None:
    events, result = run(fake_service, "Build a recipe sharing site")
    outputs = [e for e in events if e["event_type"] == "output"]
    assert [e["metadata"]["data"] is not None for e in outputs] == [True] * 4
    assert [e["metadata"]["attempts"] for e in outputs] == [1, 1, 1, 1], "valid at the first answer"
    assert [d["data"] for d in result["deliverables"]] == [e["metadata"]["data"] for e in outputs]
    assert result["deliverables"][0]["data"]["user_stories"][0]["id"] == "US-1"
    assert "**AC-1.1** (US-1)" in result["deliverables"][0]["content"], "the markdown is rendered from the data"
    [traced] = actions(events, "traceability")
    assert traced["agent_name"] == "System"
    assert events.index(traced) < next(i for i, e in enumerate(events) if e["agent_name"] == "Coordinator")
    assert result["traceability"] == {key: traced["metadata"][key] for key in result["traceability"]}
    assert result["traceability"]["coverage"] == 1.0 and result["traceability"]["complete"] is True
    assert result["decision"] == "go"
    markdown = httpx.get(f"{fake_service.base_url}/api/task/{result['task_id']}/result?format=markdown").text
    assert "## Traceability matrix" in markdown and "| AC-1.2 | US-1 | Must | TC-2 | covered |" in markdown
    assert markdown.count(result["summary"]) == 1, "the summary is the review's own section, printed once"


def test_json_from_an_openai_compatible_server_plain_or_fenced(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    for style in ("ok", "answers/fenced"):
        service = start_service(LLM_PROVIDER="openai", LLM_BASE_URL=f"{openai_stub.base_url}/{style}/v1")
        requirement = f"Track my running shoes ({style})"
        events, result = run(service, requirement)
        assert all(d["data"] is not None for d in result["deliverables"]), style
        assert not actions(events, "structure_fallback")
        assert len(stub_requests(openai_stub, f"/{style}/", requirement)) == 4, "one request per agent, no repair"
        assert f"Stub deliverable for: {requirement}" in result["deliverables"][0]["content"]
        service.stop()


def test_an_answer_that_does_not_fit_gets_one_repair_request(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    service = start_service(LLM_PROVIDER="openai", LLM_BASE_URL=f"{openai_stub.base_url}/answers/repair/v1")
    requirement = "Book a meeting room"
    events, result = run(service, requirement)
    requests = stub_requests(openai_stub, "/answers/repair/", requirement)
    assert len(requests) == 8, "prose first, then the repaired JSON, for each of the four agents"
    repairs = [r for r in requests if "does not fit the required JSON schema" in str(r["body"]["messages"])]
    assert len(repairs) == 4
    assert all(d["data"] is not None for d in result["deliverables"])
    assert not actions(events, "structure_fallback")
    assert [e["metadata"]["attempts"] for e in events if e["event_type"] == "output"] == [2, 2, 2, 2]


def test_an_answer_that_never_fits_falls_back_to_its_text_and_the_task_ends(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    service = start_service(LLM_PROVIDER="openai", LLM_BASE_URL=f"{openai_stub.base_url}/answers/prose/v1")
    requirement = "Count birds in the garden"
    events, result = run(service, requirement)
    fallbacks = actions(events, "structure_fallback")
    assert [e["metadata"]["agent"] for e in fallbacks] == AGENTS
    assert all(e["metadata"]["errors"] for e in fallbacks) and "after one repair request" in fallbacks[0]["content"]
    assert [d["data"] for d in result["deliverables"]] == [None] * 4
    assert result["deliverables"][0]["content"].startswith("# ProductManager\n\nStub deliverable for: ")
    assert result["traceability"]["acceptance_criteria"] == 0 and result["traceability"]["complete"] is False
    assert result["decision"] == "no_go", "nothing vouches for go without structured documents"
    assert len(stub_requests(openai_stub, "/answers/prose/", requirement)) == 8


def test_gaps_are_reported_and_a_must_gap_turns_go_into_no_go(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    service = start_service(LLM_PROVIDER="openai", LLM_BASE_URL=f"{openai_stub.base_url}/answers/gaps/v1")
    events, result = run(service, "Plan a school trip")
    [traced] = actions(events, "traceability")
    assert traced["metadata"]["uncovered"] == ["AC-1.2"]
    assert traced["metadata"]["dangling"] == [{"from": "TC-1", "to": "AC-9.9"}, {"from": "C-1", "to": "US-7"}]
    assert "Not covered: AC-1.2" in traced["content"]
    review = result["deliverables"][3]
    assert review["data"]["decision"] == "no_go", "the stub's review said go"
    assert "Must-have acceptance criteria without a test case: AC-1.2." in review["data"]["reasons"]
    assert review["content"].startswith("# Delivery review\n\n## Decision: No-go")
    assert result["decision"] == "no_go" and result["traceability"]["coverage"] == 0.5
    coordinator_prompt = stub_requests(openai_stub, "/answers/gaps/", "Plan a school trip")[-1]["body"]["messages"]
    assert '"uncovered":["AC-1.2"]' in str(coordinator_prompt), "the Coordinator is given the traceability"


def test_a_chinese_requirement_gets_chinese_headings(fake_service: ServerProcess) -> None:
    _, result = run(fake_service, "开发一个简单的待办事项应用")
    headings = [d["content"].splitlines()[0] for d in result["deliverables"]]
    assert headings == ["# 需求分析", "# 测试计划", "# 技术设计", "# 交付评审"]
    assert "## 结论: 通过" in result["deliverables"][3]["content"]
