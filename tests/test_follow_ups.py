"""Follow-ups: a new revision of a completed task, in its thread, re-running only what the request concerns.

The stub's `/follow-up/<agent>/v1` triages to that agent and answers with a scripted revision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from conftest import Deployment, Mode, ServerProcess, on_stub, read_stream, start_task, stub_requests, wait_for_status
from openai_stub import REVISED_CHANGES, asked_for, prompt_of

ALICE = {"Authorization": "Bearer alice-key-0123"}
BOB = {"Authorization": "Bearer bob-key-4567"}


def completed(base: str, requirement: str = "Build a todo app", headers: dict[str, str] | None = None) -> str:
    response = httpx.post(f"{base}/api/run_task", json={"user_requirement": requirement}, headers=headers)
    assert response.status_code == 202, response.text
    task_id = str(response.json()["task_id"])
    assert read_stream(base, task_id, headers=headers)[-1]["event_type"] == "end"
    return task_id


def follow_up(base: str, task_id: str, request: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{base}/api/task/{task_id}/follow_up", json={"request": request}, headers=headers)


def followed(
    base: str, task_id: str, request: str, headers: dict[str, str] | None = None
) -> tuple[str, list[dict[str, Any]]]:
    """A follow-up run to its end: its id and events."""
    response = follow_up(base, task_id, request, headers)
    assert response.status_code == 202, response.text
    child = str(response.json()["task_id"])
    events = read_stream(base, child, headers=headers)
    assert events[-1]["event_type"] == "end", events[-1]
    return child, events


def result(base: str, task_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = httpx.get(f"{base}/api/task/{task_id}/result", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def prompts_to(stub: ServerProcess, since: int, agent: str) -> list[str]:
    """The prompts `agent` sent the stub after its first `since` requests."""
    return [prompt_of(r["body"]) for r in stub_requests(stub, since=since) if asked_for(r["body"]) == agent]


def parent_on_stub(
    start_service: Callable[..., ServerProcess | Deployment], openai_stub: ServerProcess, rerun_from: str
) -> tuple[str, str, int]:
    """A service on `/follow-up/<rerun_from>/v1` with one completed task: its URL, the task, and how many
    requests the stub had before any follow-up."""
    service = start_service(**on_stub(openai_stub, f"/follow-up/{rerun_from}/v1"))
    parent = completed(service.base_url)
    return service.base_url, parent, len(stub_requests(openai_stub))


def test_a_triage_naming_the_qa_engineer_reruns_qa_design_and_review_only(
    mode: Mode, openai_stub: ServerProcess
) -> None:
    base, parent, seen = parent_on_stub(mode.start, openai_stub, "QAEngineer")

    response = follow_up(base, parent, "Add a test for sign-in with email")
    assert response.status_code == 202
    started = response.json()
    assert (started["parent_task_id"], started["thread_id"], started["revision"]) == (parent, parent, 2)
    events = read_stream(base, started["task_id"])
    assert events[-1]["event_type"] == "end"

    triage = [e for e in events if e["metadata"].get("kind") == "triage"]
    assert len(triage) == 1 and triage[0]["agent_name"] == "System"
    assert {k: triage[0]["metadata"][k] for k in ("classification", "rerun_from")} == {
        "classification": "new_feature",
        "rerun_from": "QAEngineer",
    }
    carried = [(e["agent_name"], e["event_type"]) for e in events if e["metadata"].get("carried_over")]
    assert carried == [("ProductManager", "output"), ("ProductManager", "step_end")]
    started_agents = [e["agent_name"] for e in events if e["event_type"] == "agent_start"]
    assert started_agents == ["QAEngineer", "SoftwareDeveloper", "Coordinator"]

    asked = [asked_for(request["body"]) for request in stub_requests(openai_stub, since=seen)]
    assert "ProductManager" not in asked, "a carried-over agent makes no model request"
    assert sorted(set(asked)) == ["Coordinator", "QAEngineer", "SoftwareDeveloper", "Triage"]

    revised, original = result(base, started["task_id"]), result(base, parent)
    analysis = {d["agent_name"]: d for d in revised["deliverables"]}["ProductManager"]
    assert analysis["data"] == original["deliverables"][0]["data"], "the analysis is the parent's, unchanged"
    assert revised["changes"] == {"added": [], "removed": [], "modified": ["TC-1", "C-1"]}
    assert {"from": "TC-1", "to": "AC-2.1"} in revised["traceability"]["dangling"], "traceability is recomputed"
    assert revised["status"] == "completed" and revised["revision"] == 2 and revised["parent_task_id"] == parent


def test_a_design_rerun_is_given_the_test_plan_kept_from_the_parent(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    base, parent, seen = parent_on_stub(start_service, openai_stub, "SoftwareDeveloper")
    child, events = followed(base, parent, "The design misses offline mode")

    carried = [e["agent_name"] for e in events if e["metadata"].get("carried_over") and e["event_type"] == "output"]
    assert carried == ["ProductManager", "QAEngineer"]
    design_prompts = prompts_to(openai_stub, seen, "SoftwareDeveloper")
    kept_plan = result(base, parent)["deliverables"][1]["content"]
    assert design_prompts and all(kept_plan.strip() in prompt for prompt in design_prompts), (
        "the design sees the kept plan"
    )


def test_the_changes_of_a_scripted_revision_are_exactly_its_changed_identifiers(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    base, parent, seen = parent_on_stub(start_service, openai_stub, "ProductManager")
    child, events = followed(base, parent, "Add sign-in with email")

    assert not [e for e in events if e["metadata"].get("carried_over")], "every agent runs again"
    revised = result(base, child)
    assert revised["changes"] == REVISED_CHANGES
    listed = {kind: ", ".join(ids) for kind, ids in REVISED_CHANGES.items()}
    review = {d["agent_name"]: d for d in revised["deliverables"]}["Coordinator"]["content"]
    assert f"- Added: {listed['added']}\n- Removed: {listed['removed']}\n- Modified: {listed['modified']}" in review
    stories = {d["agent_name"]: d for d in revised["deliverables"]}["ProductManager"]["data"]["user_stories"]
    assert [story["id"] for story in stories] == ["US-1", "US-2"], "US-1 keeps its number"

    review_prompts = prompts_to(openai_stub, seen, "Coordinator")
    assert review_prompts and all('"removed":["AC-1.2"]' in prompt for prompt in review_prompts), (
        "the Coordinator is given the computed changes"
    )


def test_threads_branches_limits_and_bad_requests(mode: Mode) -> None:
    service = mode.start(MAX_THREAD_REVISIONS="4", FAKE_LLM_DELAY_MS="20")
    base = service.base_url
    root = completed(base)
    first, _ = followed(base, root, "Add a test for empty titles")
    branch, _ = followed(base, root, "Add sign-in with email")
    deeper, events = followed(base, first, "The review should weigh offline use")
    assert [e["metadata"]["rerun_from"] for e in events if e["metadata"].get("kind") == "triage"] == ["Coordinator"]

    thread = httpx.get(f"{base}/api/threads/{root}").json()
    assert thread["thread_id"] == root
    assert [(t["task_id"], t["revision"], t["parent_task_id"]) for t in thread["tasks"]] == [
        (root, 1, None),
        (first, 2, root),
        (branch, 3, root),
        (deeper, 4, first),
    ], "oldest first; two follow-ups of one parent are two branches with their own numbers"
    assert [t["request"] for t in thread["tasks"]][1:] == [
        "Add a test for empty titles",
        "Add sign-in with email",
        "The review should weigh offline use",
    ]
    assert result(base, deeper)["thread_id"] == root and result(base, deeper)["parent_task_id"] == first
    listed = {t["task_id"]: t for t in httpx.get(f"{base}/api/tasks").json()["tasks"]}
    fields = ("thread_id", "revision", "parent_task_id", "request")
    assert [tuple(listed[task][key] for key in fields) for task in (root, first, deeper)] == [
        (root, 1, None, "Build a todo app"),
        (root, 2, root, "Add a test for empty titles"),
        (root, 4, first, "The review should weigh offline use"),
    ], "a list tells follow-ups apart: their thread, revision, parent and request"

    full = follow_up(base, branch, "One more")
    assert full.status_code == 409 and "MAX_THREAD_REVISIONS" in full.json()["detail"]
    assert follow_up(base, root, "   ").status_code == 422
    assert follow_up(base, "no-such-task", "Add a feature").status_code == 404
    assert httpx.get(f"{base}/api/threads/{first}").status_code == 404, "a thread's id is its first task's"
    assert httpx.get(f"{base}/api/threads/no-such-thread").status_code == 404

    running = start_task(base, "Build a slow app")
    wait_for_status(base, running, "running", timeout=30)
    refused = follow_up(base, running, "Add a feature")
    assert refused.status_code == 409 and "is running" in refused.json()["detail"]


def test_a_thread_belongs_to_its_key(mode: Mode) -> None:
    base = mode.start(API_KEYS="alice-key-0123, bob-key-4567").base_url
    root = completed(base, "Alice's private project", headers=ALICE)
    assert follow_up(base, root, "Add a feature", headers=BOB).status_code == 404
    assert follow_up(base, root, "Add a feature").status_code == 401
    child, _ = followed(base, root, "Add a feature", headers=ALICE)
    assert httpx.get(f"{base}/api/threads/{root}", headers=BOB).status_code == 404
    tasks = httpx.get(f"{base}/api/threads/{root}", headers=ALICE).json()["tasks"]
    assert [t["task_id"] for t in tasks] == [root, child]


def test_a_follow_up_after_a_restart_starts_from_the_stored_parent(mode: Mode) -> None:
    second = mode.start()
    root = completed(second.base_url)
    parent_result = result(second.base_url, root)
    second.restart()  # killed: nothing kept in memory

    child, events = followed(second.base_url, root, "Add a test for long titles")
    kept = next(e for e in events if e["metadata"].get("carried_over") and e["event_type"] == "output")
    assert kept["content"] == parent_result["deliverables"][0]["content"]
    revised = result(second.base_url, child)
    assert revised["changes"] == {"added": ["TC-7"], "removed": [], "modified": []}
    review = revised["deliverables"][-1]["content"]
    assert review.endswith("## Changes since revision 1\n\n- Added: TC-7\n- Removed: none\n- Modified: none\n"), (
        "the service ends the review with what changed, whatever the model wrote"
    )
