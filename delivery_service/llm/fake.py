"""A deterministic, scripted model for tests and benchmarks (LLM_PROVIDER=fake).

It behaves like a streaming LLM towards CrewAI (call-started, stream-chunk and call-completed
events, estimated token usage) but answers from a fixed script keyed by the agent's role, so a run is
reproducible, needs no network and costs no tokens. Every answer says that it is scripted. A follow-up's
triage picks the first agent whose document the request's words name ("test", "design", "review"),
and a follow-up adds a story (US-3) and a test case (TC-7) of its own.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from delivery_service.agents import AGENTS_BY_ROLE
from delivery_service.llm.chunked import ChunkStreamingLLM, Conversation, prompt_text

_REQUIREMENT_BLOCK = re.compile(r"<requirement>\s*(.*?)\s*</requirement>", re.DOTALL)
_FEEDBACK_BLOCK = re.compile(r"<feedback>\s*(.*?)\s*</feedback>", re.DOTALL)
_FOLLOW_UP_BLOCK = re.compile(r"<follow_up_request>\s*(.*?)\s*</follow_up_request>", re.DOTALL)
# A follow-up's triage, scripted from the request's words: the first agent whose document it names.
_TRIAGE_WORDS = (
    ("QAEngineer", ("test",)),
    ("SoftwareDeveloper", ("design", "architecture", "component")),
    ("Coordinator", ("review",)),
)

SCRIPTED_NOTICE = "Scripted output of the `fake` model: it demonstrates the pipeline, not real analysis."


def _triage(request: str) -> dict[str, Any]:
    words = request.lower()
    rerun_from = next(
        (agent for agent, names in _TRIAGE_WORDS if any(name in words for name in names)), "ProductManager"
    )
    classification = (
        "bug"
        if any(name in words for name in ("bug", "wrong", "fix"))
        else "new_feature"
        if "add" in words
        else "change"
    )
    return {
        "classification": classification,
        "rerun_from": rerun_from,
        "reason": f"Scripted triage of: {request[:120]}",
    }


def _analysis(requirement: str, feedback: str | None, follow_up: str | None) -> dict[str, Any]:
    analysis = _first_analysis(requirement, feedback)
    if follow_up:  # a follow-up adds a story of its own; US-1 and US-2 stay as they were
        analysis["user_stories"].append(
            {"id": "US-3", "priority": "should", "story": f"As a user, I want: {follow_up}"}
        )
        analysis["acceptance_criteria"].append(
            {
                "id": "AC-3.1",
                "story_id": "US-3",
                "given": "the new request",
                "when": "I use it",
                "then": "it works as asked",
            }
        )
    return analysis


def _first_analysis(requirement: str, feedback: str | None) -> dict[str, Any]:
    questions = [SCRIPTED_NOTICE, "Who are the users, and how many?"]
    if feedback:
        questions.append(f"Feedback taken into account: {feedback}")
    return {
        "user_stories": [
            {"id": "US-1", "priority": "must", "story": f"As a user, I want the core workflow of: {requirement}"},
            {
                "id": "US-2",
                "priority": "should",
                "story": "As a user, I want to see my history, so that I can resume work.",
            },
        ],
        "acceptance_criteria": [
            {
                "id": "AC-1.1",
                "story_id": "US-1",
                "given": "valid input",
                "when": "I submit it",
                "then": "it is saved and shown",
            },
            {
                "id": "AC-1.2",
                "story_id": "US-1",
                "given": "invalid input",
                "when": "I submit it",
                "then": "I see a clear error",
            },
            {
                "id": "AC-2.1",
                "story_id": "US-2",
                "given": "saved items",
                "when": "I open the app",
                "then": "they are listed newest first",
            },
        ],
        "non_functional": [
            {"id": "NFR-1", "requirement": "Responds quickly", "target": "p95 under 200 ms"},
            {"id": "NFR-2", "requirement": "Data survives a restart", "target": "no saved item is lost"},
        ],
        "open_questions": questions,
    }


def _case(number: int, title: str, kind: str, step: str, expected: str, covers: list[str]) -> dict[str, Any]:
    return {"id": f"TC-{number}", "title": title, "type": kind, "steps": [step], "expected": expected, "covers": covers}


_TEST_PLAN = {
    "test_cases": [
        _case(
            1,
            f"Valid input is saved ({SCRIPTED_NOTICE})",
            "functional",
            "submit valid input",
            "saved and shown",
            ["AC-1.1"],
        ),
        _case(2, "Invalid input is refused", "negative", "submit empty input", "a clear error", ["AC-1.2"]),
        _case(3, "History newest first", "functional", "reopen the app", "items newest first", ["AC-2.1"]),
        _case(4, "Long input", "edge", "submit 10,000 characters", "saved intact", ["AC-1.1"]),
        _case(5, "Under load", "performance", "100 users at once", "p95 under 200 ms", ["NFR-1"]),
        _case(6, "Markup stays text", "security", "submit <script>", "shown as text", ["AC-1.1"]),
    ]
}


def _test_plan(follow_up: str | None) -> dict[str, Any]:
    if not follow_up:
        return _TEST_PLAN
    extra = _case(
        7,
        f"Follow-up: {follow_up[:80]}",
        "functional",
        "use what the follow-up asked for",
        "it works as asked",
        ["AC-1.1"],
    )
    return {"test_cases": [*_TEST_PLAN["test_cases"], extra]}


_DESIGN = {
    "components": [
        {
            "id": "C-1",
            "name": "API service",
            "responsibility": f"FastAPI JSON API. {SCRIPTED_NOTICE}",
            "serves": ["US-1", "US-2"],
        },
        {
            "id": "C-2",
            "name": "Persistence layer",
            "responsibility": "SQLite storage of items",
            "serves": ["US-1", "US-2"],
        },
        {"id": "C-3", "name": "Web UI", "responsibility": "Browser pages for the workflow", "serves": ["US-1", "US-2"]},
    ],
    "data_model": [{"entity": "item", "fields": ["id", "title", "created_at", "done"]}],
    "api": [
        {"method": "POST", "path": "/items", "purpose": "Save an item", "serves": ["US-1"]},
        {"method": "GET", "path": "/items", "purpose": "List items newest first", "serves": ["US-2"]},
    ],
    "diagram": "flowchart LR\n  UI[Web UI] --> API[API service]\n  API --> DB[(SQLite)]",
    "risks": [{"id": "R-1", "risk": "Scope creep", "mitigation": "Ship the must-have stories first"}],
    "milestones": [{"name": "API", "scope": ["US-1"]}, {"name": "UI and release", "scope": ["US-2"]}],
}


def _review(requirement: str) -> dict[str, Any]:
    return {
        "decision": "go",
        "reasons": [SCRIPTED_NOTICE, "Every acceptance criterion has a test case and a component."],
        "issues": [{"ids": ["US-1"], "problem": "User numbers are unknown.", "fix": "Ask the requester."}],
        "summary": f"A scripted delivery plan for: {requirement[:120]}",
    }


def scripted_answer(role: str, prompt: str) -> str:
    """The scripted answer of the agent whose CrewAI role is `role` to `prompt`: its deliverable's JSON."""
    requirement_match = _REQUIREMENT_BLOCK.search(prompt)
    requirement = requirement_match.group(1) if requirement_match else "(no requirement found)"
    feedback_match = _FEEDBACK_BLOCK.search(prompt)
    follow_up_match = _FOLLOW_UP_BLOCK.search(prompt)
    follow_up = follow_up_match.group(1) if follow_up_match else None
    agent = AGENTS_BY_ROLE.get(role)
    name = agent.name if agent else "Coordinator"
    if follow_up is not None and "<previous_documents>" in prompt:
        return (
            f"Thought: I will triage the follow-up.\nFinal Answer: {json.dumps(_triage(follow_up), ensure_ascii=False)}"
        )
    data = {
        "ProductManager": lambda: _analysis(
            requirement, feedback_match.group(1) if feedback_match else None, follow_up
        ),
        "QAEngineer": lambda: _test_plan(follow_up),
        "SoftwareDeveloper": lambda: _DESIGN,
        "Coordinator": lambda: _review(requirement),
    }[name]()
    return f"Thought: I will write the {name} deliverable as the JSON asked for.\nFinal Answer: {json.dumps(data, ensure_ascii=False)}"


class ScriptedLLM(ChunkStreamingLLM):
    """Streams a scripted answer in `chunk_chars`-sized chunks, `chunk_delay_seconds` apart."""

    llm_type: str = "fake"
    chunk_delay_seconds: float = 0.0
    chunk_chars: int = 24

    def chunks(self, conversation: Conversation, from_task: Any, from_agent: Any) -> Iterator[str]:
        answer = scripted_answer(getattr(from_agent, "role", "") or "", prompt_text(conversation))
        for start in range(0, len(answer), self.chunk_chars):
            if self.chunk_delay_seconds:
                time.sleep(self.chunk_delay_seconds)
            yield answer[start : start + self.chunk_chars]
