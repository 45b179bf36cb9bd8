"""The pipeline as data: a fifth agent registered in one file (tests/security_reviewer.py) runs end to end.

The registry puts it where it says (after the SoftwareDeveloper), numbers the steps from its order, lets
the triage name it, and traces its references; a service started with AGENT_PLUGINS=security_reviewer
streams its output with its step, stores it, renders it in the result's markdown and traces it. The
cluster mode's run of the same agent, on a Celery worker, is in tests/test_cluster.py.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi.testclient import TestClient

import main
from conftest import ServerProcess, read_stream, start_task
from delivery_service.agents import AGENTS, Pipeline
from delivery_service.deliverables.traceability import trace
from delivery_service.llm.fake import scripted_answer
from delivery_service.scripted_answers import Brief
from security_reviewer import SECURITY_REVIEWER

PLUGIN = "security_reviewer"
FIVE = ["ProductManager", "QAEngineer", "SoftwareDeveloper", "SecurityReviewer", "Coordinator"]


def with_plugin() -> Pipeline:
    """The default agents and the plugin's, in a registry of the test's own (AGENTS stays as it is)."""
    agents = Pipeline(AGENTS)
    agents.load_plugins((PLUGIN,))
    return agents


def test_the_pipeline_endpoint_lists_the_default_agents_and_the_event_facts() -> None:
    body = TestClient(main.app).get("/api/agents").json()  # no lifespan: the registry needs no service
    assert [(a["name"], a["step"], a["phase"], a["reviews"]) for a in body["agents"]] == [
        ("ProductManager", 1, "analysis", False),
        ("QAEngineer", 2, "delivery", False),
        ("SoftwareDeveloper", 3, "delivery", False),
        ("Coordinator", 4, "delivery", True),
    ]
    assert body["agents"][0]["title_zh"] == "需求分析" and body["agents"][1]["traces_to"] == ["AC", "NFR"]
    ending = {kind["event_type"]: kind["status"] for kind in body["event_types"] if kind["terminal"]}
    assert ending == {"end": "completed", "error": "failed", "cancelled": "cancelled"}
    messages = {kind["event_type"]: kind["message_type"] for kind in body["event_types"] if kind["message_type"]}
    assert messages["step_end"] == "task.step_completed" and len(messages) == 5


def test_a_registered_agent_takes_its_place_and_the_steps_follow() -> None:
    agents = with_plugin()
    assert list(agents.names) == FIVE and list(AGENTS.names) == [name for name in FIVE if name != "SecurityReviewer"]
    assert agents.step("SecurityReviewer") == 4 and agents.at(5).name == "Coordinator"
    assert (agents.analysis_steps, agents.planning_steps, agents.review_steps) == ((1,), (2, 3, 4), (5,))
    assert agents.prefixes[-1] == "SEC", "its identifiers sort after the design's"
    triage = agents.triage_schema().model_validate(
        {"classification": "change", "rerun_from": "SecurityReviewer", "reason": "threats"}
    )
    assert triage.rerun_from == "SecurityReviewer"
    agents.load_plugins((PLUGIN,))
    assert len(agents) == 5, "a plugin module is registered once"
    with pytest.raises(ValueError, match="already registered"):
        agents.add(SECURITY_REVIEWER)


def test_its_references_are_traced_and_its_items_compared() -> None:
    agents = with_plugin()
    data = {agent.name: agent.scripted(Brief("A todo app")) for agent in agents}
    found = agents.documents(data)
    assert [type(document).__name__ for document in found.others] == ["ThreatModel"]
    traceability = trace(found.analysis, found.test_plan, found.design, found.others)
    assert traceability.dangling == [{"from": "SEC-2", "to": "US-9"}]
    after = {**data, "SecurityReviewer": {"threats": data["SecurityReviewer"]["threats"][:1]}}
    assert agents.changes(data, after).removed == ["SEC-2"]
    markdown = agents.named("SecurityReviewer").render(found.others[0])
    assert markdown.startswith("# Threat model\n") and "**SEC-1** (US-1)" in markdown


def test_without_the_plugin_the_fake_model_knows_four_agents() -> None:
    assert scripted_answer("Security Reviewer", "<requirement>x</requirement>").startswith(
        "Thought: I will write the Coordinator deliverable"
    ), "an unknown role gets the last agent's script, as before"


def assert_five_agents_delivered(base_url: str) -> None:
    """A task on a service with the plugin: the fifth agent streamed, stored, rendered and traced."""
    listed = httpx.get(f"{base_url}/api/agents").json()["agents"]
    assert [(agent["name"], agent["step"]) for agent in listed] == [(name, step) for step, name in enumerate(FIVE, 1)]
    task_id = start_task(base_url, "A todo app")
    events = read_stream(base_url, task_id)
    outputs = [event for event in events if event["event_type"] == "output"]
    assert [event["agent_name"] for event in outputs] == FIVE
    threats = outputs[3]
    assert threats["metadata"]["step"] == 4 and threats["metadata"]["total_steps"] == 5
    assert threats["metadata"]["data"]["threats"][0]["id"] == "SEC-1"
    assert threats["content"].startswith("# Threat model\n")
    traced = next(e for e in events if e["event_type"] == "action" and e["metadata"].get("kind") == "traceability")
    assert traced["metadata"]["dangling"] == [{"from": "SEC-2", "to": "US-9"}]
    assert events[-1]["event_type"] == "end" and events[-1]["metadata"]["deliverables"] == 5

    result = httpx.get(f"{base_url}/api/task/{task_id}/result").json()
    assert [d["agent_name"] for d in result["deliverables"]] == FIVE
    assert result["deliverables"][3]["data"]["threats"][1]["story_id"] == "US-9"
    assert result["traceability"]["dangling"] == [{"from": "SEC-2", "to": "US-9"}]
    markdown = httpx.get(f"{base_url}/api/task/{task_id}/result", params={"format": "markdown"}).text
    assert "<!-- SecurityReviewer: Threat model -->" in markdown and "**SEC-1** (US-1)" in markdown
    assert httpx.get(f"{base_url}/api/task/{task_id}/status").json()["total_steps"] == 5


def test_a_fifth_agent_runs_end_to_end_in_the_embedded_mode(start_service: Callable[..., ServerProcess]) -> None:
    assert_five_agents_delivered(start_service(AGENT_PLUGINS=PLUGIN).base_url)


def test_a_fifth_agent_runs_in_crew_processes(start_service: Callable[..., ServerProcess]) -> None:
    assert_five_agents_delivered(start_service(AGENT_PLUGINS=PLUGIN, CREW_EXECUTION="process").base_url)
