"""Steering runs: cancel, human confirmation, timeouts, the waiting line, token deltas, LLM retries.

Cancel, confirmation, timeouts, the waiting line and deltas run in both modes (`mode`); in the cluster,
MAX_CONCURRENT_TASKS=n is n Celery workers, and Nginx spreads the requests over two replicas.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import (
    AGENT_NAMES,
    Deployment,
    Mode,
    ServerProcess,
    StartService,
    follow_in_background,
    on_stub,
    read_stream,
    sequences,
    start_task,
    status,
    stub_requests,
    wait_for_status,
    wait_until,
)
from delivery_service.agents import AGENTS
from delivery_service.llm.fake import scripted_answer

NO_TASK = "00000000-0000-0000-0000-000000000000"


def post(service: ServerProcess | Deployment, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(f"{service.base_url}{path}", json=body)


# --- cancel ---------------------------------------------------------------------------------------
def test_cancel_queued_running_and_finished_tasks(mode: Mode) -> None:
    service = mode.start(MAX_CONCURRENT_TASKS="1", FAKE_LLM_DELAY_MS="50")
    started = [post(service, "/api/run_task", {"user_requirement": text}).json() for text in ("running", "queued")]
    assert [(s["status"], "busy" in s["message"]) for s in started] == [("started", False), ("queued", True)]
    running, queued = (s["task_id"] for s in started)
    follower = start_task(service.base_url, "runs after the others")
    wait_for_status(service.base_url, running, "running")
    waiting = status(service.base_url, queued)
    assert (waiting["status"], waiting["queue_position"]) == ("queued", 1)

    cancelled = post(service, f"/api/task/{queued}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert status(service.base_url, follower)["queue_position"] == 1, "the line moved up"
    queued_events = read_stream(service.base_url, queued)
    assert [e["event_type"] for e in queued_events] == ["action", "cancelled"]
    assert queued_events[0]["metadata"] == {"kind": "queued", "queue_position": 1}

    running_stream = follow_in_background(service.base_url, running)
    wait_until(lambda: status(service.base_url, running)["current_agent"] is not None, 30, "an agent to be working")
    response = post(service, f"/api/task/{running}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    events = running_stream()
    assert events[-1]["event_type"] == "cancelled" and [e["event_type"] for e in events].count("cancelled") == 1
    assert "end" not in [e["event_type"] for e in events]
    assert sequences(events) == list(range(1, len(events) + 1))

    follower_events = read_stream(service.base_url, follower)
    assert follower_events[-1]["event_type"] == "end", "the freed worker took the next task"
    assert follower_events[1]["event_type"] == "start"
    assert follower_events[1]["timestamp"] >= events[-1]["timestamp"], "it started after the running task ended"

    for task_id, final in ((running, "cancelled"), (queued, "cancelled"), (follower, "completed")):
        again = post(service, f"/api/task/{task_id}/cancel")
        assert again.status_code == 202 and again.json()["status"] == final, "cancelling again changes nothing"
    assert read_stream(service.base_url, running) == events
    assert post(service, f"/api/task/{NO_TASK}/cancel").status_code == 404


def test_cancel_stops_the_model_calls(start_service: StartService, openai_stub: ServerProcess) -> None:
    service = start_service(**on_stub(openai_stub, "/slow/v1", LLM_MODEL="cancel-probe", MAX_CONCURRENT_TASKS="1"))
    task_id = start_task(service.base_url, "cancel me while the model streams", stream_tokens=True)
    follower = start_task(service.base_url, "next in line")
    wait_until(lambda: status(service.base_url, task_id)["last_sequence"] >= 5, 30, "the model to be streaming deltas")
    assert post(service, f"/api/task/{task_id}/cancel").json()["status"] == "cancelled"
    assert read_stream(service.base_url, follower)[-1]["event_type"] == "end", "the cancelled crew freed its worker"
    calls = [r for r in stub_requests(openai_stub) if r["body"]["model"] == "cancel-probe"]
    cancelled_calls = [r for r in calls if "cancel me while the model streams" in r["body"]["messages"][-1]["content"]]
    assert len(cancelled_calls) == 1, "no model call was made for the task after its cancel"


# --- confirmation ---------------------------------------------------------------------------------
def test_confirm_approve_continues_without_holding_a_worker(mode: Mode) -> None:
    service = mode.start(MAX_CONCURRENT_TASKS="1")
    task_id = start_task(service.base_url, "Build a budget tracker", skip_confirmation=False)
    waiting = wait_for_status(service.base_url, task_id, "awaiting_confirmation")
    assert waiting["completed_steps"] == 1

    other = start_task(service.base_url, "runs while the first waits for a human")
    assert read_stream(service.base_url, other)[-1]["event_type"] == "end", "a paused task holds no worker"

    assert post(service, f"/api/task/{task_id}/confirm", {"approved": True}).status_code == 202
    events = read_stream(service.base_url, task_id)
    kinds = [e["event_type"] for e in events]
    assert kinds.count("confirmation_required") == 1 and kinds[-1] == "end"
    question = events[kinds.index("confirmation_required")]
    assert "Approve it" in question["content"] and "Requirements analysis" in question["content"]
    assert question["metadata"]["max_revisions"] == 3
    assert kinds.index("confirmation_required") < kinds.index("agent_start", kinds.index("confirmation_required"))
    assert [e["agent_name"] for e in events if e["event_type"] == "agent_start"] == AGENT_NAMES
    assert len(httpx.get(f"{service.base_url}/api/task/{task_id}/result").json()["deliverables"]) == 4


def test_reject_with_feedback_revises_the_analysis(mode: Mode) -> None:
    service = mode.start(MAX_REVISIONS="1")
    task_id = start_task(service.base_url, "Build a recipe app", skip_confirmation=False)
    wait_for_status(service.base_url, task_id, "awaiting_confirmation")
    assert post(service, f"/api/task/{task_id}/confirm", {"approved": False}).status_code == 422, "feedback required"
    feedback = "Add a shopping list generated from recipes."
    rejected = post(service, f"/api/task/{task_id}/confirm", {"approved": False, "feedback": feedback})
    assert rejected.status_code == 202

    assert rejected.json()["status"] == "running"
    wait_for_status(service.base_url, task_id, "awaiting_confirmation")
    over_limit = post(service, f"/api/task/{task_id}/confirm", {"approved": False, "feedback": "more"})
    assert over_limit.status_code == 409 and "MAX_REVISIONS" in over_limit.json()["detail"]
    assert post(service, f"/api/task/{task_id}/confirm", {"approved": True}).status_code == 202
    events = read_stream(service.base_url, task_id)
    analyses = [e["content"] for e in events if e["event_type"] == "output" and e["agent_name"] == "ProductManager"]
    assert len(analyses) == 2
    assert feedback not in analyses[0] and f"Feedback taken into account: {feedback}" in analyses[1]
    result = httpx.get(f"{service.base_url}/api/task/{task_id}/result").json()
    assert result["deliverables"][0]["content"] == analyses[1], "the revision replaces the first analysis"
    assert [d["agent_name"] for d in result["deliverables"]] == AGENT_NAMES
    step_usages = [e["metadata"]["usage"] for e in events if e["event_type"] == "step_end"]
    assert len(step_usages) == 5, "the revised analysis made its own model call"
    usage = status(service.base_url, task_id)["usage"]
    for kind in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert usage[kind] == sum(step[kind] for step in step_usages) > 0, "every call counts, the revision's too"
    assert events[-1]["metadata"]["usage"] == usage


def test_confirmation_errors_and_timeout(mode: Mode) -> None:
    service = mode.start(CONFIRMATION_TIMEOUT_SECONDS="1", FAKE_LLM_DELAY_MS="20")
    skipped = start_task(service.base_url, "no confirmation asked")
    wait_for_status(service.base_url, skipped, "running")
    not_waiting = post(service, f"/api/task/{skipped}/confirm", {"approved": True})
    assert not_waiting.status_code == 409 and "not waiting for a confirmation" in not_waiting.json()["detail"]

    task_id = start_task(service.base_url, "nobody answers", skip_confirmation=False)
    events = read_stream(service.base_url, task_id)
    assert events[-1]["event_type"] == "cancelled" and events[-1]["metadata"]["reason"] == "confirmation_timeout"
    assert "CONFIRMATION_TIMEOUT_SECONDS=1 s" in events[-1]["content"]
    assert status(service.base_url, task_id)["status"] == "cancelled"
    assert post(service, f"/api/task/{task_id}/confirm", {"approved": True}).status_code == 409
    assert post(service, f"/api/task/{NO_TASK}/confirm", {"approved": True}).status_code == 404


def test_cancel_while_waiting_for_confirmation(mode: Mode) -> None:
    service = mode.start()
    task_id = start_task(service.base_url, "cancel me at the checkpoint", skip_confirmation=False)
    wait_for_status(service.base_url, task_id, "awaiting_confirmation")
    response = post(service, f"/api/task/{task_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    events = read_stream(service.base_url, task_id)
    assert [e["event_type"] for e in events][-2:] == ["confirmation_required", "cancelled"]
    assert post(service, f"/api/task/{task_id}/confirm", {"approved": True}).status_code == 409
    assert post(service, f"/api/task/{task_id}/cancel").json()["status"] == "cancelled"
    assert read_stream(service.base_url, task_id) == events


# --- timeouts and the waiting line -----------------------------------------------------------------
def test_task_timeout_ends_the_task_with_an_error(mode: Mode) -> None:
    service = mode.start(TASK_TIMEOUT_SECONDS="1", FAKE_LLM_DELAY_MS="100")
    events = read_stream(service.base_url, start_task(service.base_url))
    assert events[-1]["event_type"] == "error" and events[-1]["metadata"]["error_type"] == "task_timeout"
    assert "TASK_TIMEOUT_SECONDS=1 s" in events[-1]["content"]


def test_waiting_line_orders_by_priority_and_refuses_when_full(mode: Mode) -> None:
    service = mode.start(MAX_CONCURRENT_TASKS="1", MAX_QUEUED_TASKS="3", FAKE_LLM_DELAY_MS="30")
    blocker = start_task(service.base_url, "blocker")
    low = start_task(service.base_url, "low", priority=0)
    high = start_task(service.base_url, "high", priority=5)
    low_later = start_task(service.base_url, "low later", priority=0)
    positions = {
        name: status(service.base_url, task)["queue_position"]
        for name, task in (("high", high), ("low", low), ("low_later", low_later))
    }
    assert positions == {"high": 1, "low": 2, "low_later": 3}
    full = httpx.post(f"{service.base_url}/api/run_task", json={"user_requirement": "one too many"})
    assert full.status_code == 429 and int(full.headers["retry-after"]) > 0
    assert "MAX_QUEUED_TASKS" in full.json()["detail"]

    post(service, f"/api/task/{blocker}/cancel")
    starts = {}
    for name, task in (("high", high), ("low", low), ("low_later", low_later)):
        events = read_stream(service.base_url, task)
        assert events[-1]["event_type"] == "end"
        starts[name] = next(e["timestamp"] for e in events if e["event_type"] == "start")
    assert starts["high"] < starts["low"] < starts["low_later"]


# --- token deltas ------------------------------------------------------------------------------------
def test_deltas_are_coalesced_and_concatenate_to_the_model_output(mode: Mode) -> None:
    """With a one-minute interval, a call sends at most two deltas (the first, then the rest at its end)."""
    service = mode.start(DELTA_INTERVAL_MS="60000")
    requirement = "Build a habit tracker"
    events = read_stream(service.base_url, start_task(service.base_url, requirement, stream_tokens=True))
    prompt = f"<requirement>\n{requirement}\n</requirement>"
    for agent in AGENTS:
        deltas = [e for e in events if e["agent_name"] == agent.name and e["event_type"] == "delta"]
        answer = scripted_answer(agent.role, prompt)
        assert "".join(e["content"] for e in deltas) == answer
        assert 1 <= len(deltas) <= 2 < len(answer) // 24, "many model chunks, joined into at most two deltas"


# --- LLM retries --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "ends", "retries", "requests"),
    [
        ("/flaky/two-429/2/429/v1", "end", 2, 6),
        ("/flaky/three-500/3/500/v1", "error", 2, 3),
        ("/status/401/v1", "error", 0, 1),
        ("/status/400/v1", "error", 0, 1),
    ],
)
def test_transient_failures_are_retried_visibly(
    start_service: StartService,
    openai_stub: ServerProcess,
    path: str,
    ends: str,
    retries: int,
    requests: int,
) -> None:
    service = start_service(**on_stub(openai_stub, path, LLM_MAX_RETRIES="2", LLM_RETRY_BASE_SECONDS="0.05"))
    requirement = f"retry probe {path}"
    events = read_stream(service.base_url, start_task(service.base_url, requirement))
    assert events[-1]["event_type"] == ends
    announced = [e for e in events if e["event_type"] == "action" and e["metadata"].get("kind") == "llm_retry"]
    assert len(announced) == retries
    assert [e["metadata"]["attempt"] for e in announced] == list(range(1, retries + 1))
    assert all(e["agent_name"] == "ProductManager" for e in announced)
    if "429" in path:
        assert all(e["metadata"]["delay_seconds"] == 0.2 for e in announced), "Retry-After is honoured"
    calls = [r for r in stub_requests(openai_stub, path) if requirement in r["body"]["messages"][-1]["content"]]
    assert len(calls) == requests
    if ends == "error" and retries:
        assert "after 2 retries" in events[-1]["content"]


def test_timeouts_are_retried_then_reported(start_service: StartService, openai_stub: ServerProcess) -> None:
    settings = {"LLM_TIMEOUT_SECONDS": "0.5", "LLM_MAX_RETRIES": "1", "LLM_RETRY_BASE_SECONDS": "0.05"}
    service = start_service(**on_stub(openai_stub, "/hang/v1", **settings))
    events = read_stream(service.base_url, start_task(service.base_url, "timeout probe"))
    retries = [e for e in events if e["metadata"].get("kind") == "llm_retry"]
    assert len(retries) == 1 and "Timeout" in retries[0]["metadata"]["reason"]
    assert events[-1]["event_type"] == "error"
    assert "did not answer within LLM_TIMEOUT_SECONDS=0.5 s" in events[-1]["content"]
