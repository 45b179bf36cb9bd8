"""The release gate over real HTTP, in both modes: the scripted model's requirements meet each computed gate
(docs/quality.md), and every place a person looks at a task shows it: the `quality` action before the
Coordinator, the review answering the findings, the result, its markdown, `/api/tasks` and the `end` event."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conftest import Mode, read_stream, start_task, wait_until
from delivery_service.agents import AGENTS
from delivery_service.deliverables.gate import GatePolicy, gate
from delivery_service.deliverables.traceability import Documents, Traceability
from delivery_service.scripted_answers import Brief
from webhook_receiver import WebhookReceiver, webhook_settings


def delivered(base: str, requirement: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    task_id = start_task(base, requirement)
    events = read_stream(base, task_id)
    assert events[-1]["event_type"] == "end", events[-1]["content"]
    response = httpx.get(f"{base}/api/task/{task_id}/result")
    assert response.status_code == 200, response.text
    return events, response.json()


@pytest.mark.parametrize(
    ("requirement", "status", "decision", "rules"),
    [
        ("Build a todo app to track chores", "pass", "go", {"compound-criterion"}),
        ("Build a fast todo app", "concerns", "go", {"vague-term", "compound-criterion"}),
        ("Build a todo app; the scale is TBD", "fail", "no_go", {"unmeasurable-nfr", "compound-criterion"}),
    ],
    ids=["pass", "concerns", "fail"],
)
def test_each_gate_is_computed_shown_and_answered(
    mode: Mode, requirement: str, status: str, decision: str, rules: set[str]
) -> None:
    base = mode.fast().base_url
    events, result = delivered(base, requirement)
    quality = result["quality"]
    assert quality["gate"]["status"] == status and result["decision"] == decision
    assert {finding["rule"] for finding in quality["findings"]} == rules
    assert [finding["id"] for finding in quality["findings"]] == [f"Q-{n}" for n in range(1, len(rules) + 1)]
    assert quality["gate"]["policy"] == {"min_coverage": 0.8} and quality["gate"]["waiver"] is None
    assert sum(quality["counts"].values()) == len(quality["findings"])

    kinds = [(e["agent_name"], e["event_type"], e["metadata"].get("kind")) for e in events]
    coordinator = kinds.index(("Coordinator", "agent_start", None))
    assert (
        kinds.index(("System", "action", "traceability")) < kinds.index(("System", "action", "quality")) < coordinator
    )
    [announced] = [e for e in events if e["metadata"].get("kind") == "quality"]
    assert announced["metadata"]["gate"]["status"] == status and f"release gate {status}" in announced["content"]
    assert events[-1]["metadata"]["gate"] == {"status": status, "min_coverage": 0.8}

    review = result["deliverables"][-1]["data"]
    answered = {target for issue in review["issues"] for target in issue["ids"]}
    serious = [f for f in quality["findings"] if f["severity"] in ("error", "warning")]
    assert {finding["target"] for finding in serious} <= answered, "the Coordinator answers each finding"
    if status == "fail":
        assert review["decision"] == "no_go" and "Error findings: NFR-3 (unmeasurable-nfr)." in review["reasons"]

    listed = httpx.get(f"{base}/api/tasks", params={"limit": 100}).json()["tasks"]
    assert {task["task_id"]: task["gate"] for task in listed}[result["task_id"]] == status
    markdown = httpx.get(f"{base}/api/task/{result['task_id']}/result", params={"format": "markdown"}).text
    assert f"## Quality\n\n**Release gate: {status}**" in markdown


def test_a_chinese_requirement_gets_chinese_findings(mode: Mode) -> None:
    base = mode.fast().base_url
    _, result = delivered(base, "开发一个简单的待办事项应用")
    [vague] = [finding for finding in result["quality"]["findings"] if finding["rule"] == "vague-term"]
    assert vague["target"] == "US-1" and "简单" in vague["message"]
    assert result["quality"]["gate"]["status"] == "concerns"
    markdown = httpx.get(f"{base}/api/task/{result['task_id']}/result", params={"format": "markdown"}).text
    assert "## 质量\n\n**发布门禁: 有疑虑**" in markdown


def traced(coverage: float, uncovered: list[str]) -> Traceability:
    covered = round(coverage * 10)
    return Traceability(
        acceptance_criteria=10,
        covered=covered,
        coverage=coverage,
        uncovered=uncovered,
        dangling=[],
        stories_without_component=[],
        complete=not uncovered,
    )


def test_coverage_below_the_policy_is_a_concern_and_a_missing_document_a_failure() -> None:
    documents = AGENTS.documents({agent.name: agent.scripted(Brief("Track chores")) for agent in AGENTS})
    assert gate(documents, traced(0.7, []), [], GatePolicy(min_coverage=0.8)).status == "concerns"
    assert gate(documents, traced(0.7, []), [], GatePolicy(min_coverage=0.7)).status == "pass"
    missing = gate(Documents(analysis=documents.analysis), traced(1.0, []), [], GatePolicy(min_coverage=0.0))
    assert missing.status == "fail" and "The test plan could not be read" in missing.reasons[0]


ALICE = {"Authorization": "Bearer alice-key-0123"}
BOB = {"Authorization": "Bearer bob-key-4567"}


def waive(base: str, task_id: str, reason: object, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{base}/api/task/{task_id}/waive", json={"reason": reason}, headers=headers)


def test_a_person_waives_a_gate_on_the_record_once(mode: Mode, receiver: WebhookReceiver) -> None:
    keys = "alice:alice-key-0123,bob-key-4567"
    settings = webhook_settings(receiver.secret, API_KEYS=keys, LOG_LEVEL="info", GATE_MIN_COVERAGE="0.5")
    deployment = mode.start(**settings)
    base = deployment.base_url
    started = httpx.post(
        f"{base}/api/run_task",
        json={"user_requirement": "Build a fast todo app", "webhook_url": receiver.url("/hooks")},
        headers=ALICE,
    )
    task_id = started.json()["task_id"]
    assert read_stream(base, task_id, headers=ALICE)[-1]["event_type"] == "end"

    assert waive(base, task_id, "   ", ALICE).status_code == 422, "a reason with nothing visible"
    assert waive(base, task_id, "x" * 2001, ALICE).status_code == 422
    assert waive(base, task_id, "Agreed with the owner", BOB).status_code == 404, "another key's task"
    waived = waive(base, task_id, "  Speed is agreed in NFR-1.  ", ALICE)
    assert waived.status_code == 200, waived.text
    gate = waived.json()["quality"]["gate"]
    assert gate["status"] == "waived" and waived.json()["decision"] == "go"
    assert {key: gate["waiver"][key] for key in ("reason", "by")} == {
        "reason": "Speed is agreed in NFR-1.",
        "by": "alice",
    }
    assert gate["reasons"], "the computed reasons stay on the record"
    assert gate["policy"] == {"min_coverage": 0.5}, "GATE_MIN_COVERAGE, as the task completed with it"

    again = waive(base, task_id, "once more", ALICE)
    assert again.status_code == 409 and "waived" in again.json()["detail"]
    result = httpx.get(f"{base}/api/task/{task_id}/result", headers=ALICE).json()
    assert result["quality"]["gate"] == gate
    listed = httpx.get(f"{base}/api/tasks", headers=ALICE).json()["tasks"]
    assert [task["gate"] for task in listed if task["task_id"] == task_id] == ["waived"]
    markdown = httpx.get(f"{base}/api/task/{task_id}/result", params={"format": "markdown"}, headers=ALICE).text
    assert "**Release gate: waived**" in markdown and "Waived by alice" in markdown

    audit = [line for line in deployment.log().splitlines() if '"action": "task.waived"' in line]
    assert len(audit) == 1 and '"gate": "concerns"' in audit[0] and task_id in audit[0]
    [message] = [m for m in receiver.wait_for("/hooks", 6) if m.payload["type"] == "task.waived"]
    assert message.verified and message.payload["data"]["waiver"] == gate["waiver"]
    assert message.payload["data"]["gate"] == "waived" and message.payload["data"]["task_id"] == task_id

    passed = httpx.post(
        f"{base}/api/run_task", json={"user_requirement": "Build a todo app to track chores"}, headers=BOB
    ).json()["task_id"]
    assert read_stream(base, passed, headers=BOB)[-1]["event_type"] == "end"
    refused = waive(base, passed, "no need", BOB)
    assert refused.status_code == 409 and "gate is pass" in refused.json()["detail"]
    paused = httpx.post(
        f"{base}/api/run_task", json={"user_requirement": "Build a fast app", "skip_confirmation": False}, headers=BOB
    ).json()["task_id"]
    status = f"{base}/api/task/{paused}/status"
    wait_until(lambda: httpx.get(status, headers=BOB).json()["status"] == "awaiting_confirmation", 60, "a pause")
    early = waive(base, paused, "too early", BOB)
    assert early.status_code == 409 and "the task is awaiting_confirmation" in early.json()["detail"]
