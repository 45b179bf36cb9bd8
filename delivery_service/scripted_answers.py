"""The scripted answers of the `fake` model (LLM_PROVIDER=fake), as data: one function per default agent,
from the `Brief` the model read from its prompt to the agent's deliverable as JSON-ready data.

They trip the quality rules on purpose for some requirements (docs/quality.md), so that demos and tests
meet each gate: the first story quotes the requirement (a vague word in it, such as "fast" or 简单, is a
`vague-term` warning: `concerns`), and a requirement saying TBD (or 待定) gets a non-functional requirement
with no measurable target (an `unmeasurable-nfr` error: `fail`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Brief:
    """What a scripted answer is written from."""

    requirement: str
    feedback: str | None = None
    follow_up: str | None = None
    quality: dict[str, Any] | None = None  # the findings and gate the Coordinator is handed


# A follow-up's triage, scripted from the request's words: the first agent whose document it names.
_TRIAGE_WORDS = (
    ("QAEngineer", ("test",)),
    ("SoftwareDeveloper", ("design", "architecture", "component")),
    ("Coordinator", ("review",)),
)

SCRIPTED_NOTICE = "Scripted output of the `fake` model: it demonstrates the pipeline, not real analysis."


def triage(request: str) -> dict[str, Any]:
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


def analysis(brief: Brief) -> dict[str, Any]:
    """The ProductManager's: two stories, three criteria, two non-functional requirements."""
    data = _first_analysis(brief.requirement, brief.feedback)
    if follow_up := brief.follow_up:  # a follow-up adds a story of its own; US-1 and US-2 stay as they were
        data["user_stories"].append({"id": "US-3", "priority": "should", "story": f"As a user, I want: {follow_up}"})
        data["acceptance_criteria"].append(_criterion("3.1", "the new request", "I use it", "it works as asked"))
    return data


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
            _criterion("1.1", "valid input", "I submit it", "it is saved and shown"),
            _criterion("1.2", "invalid input", "I submit it", "I see a clear error"),
            _criterion("2.1", "saved items", "I open the app", "they are listed newest first"),
        ],
        "non_functional": [
            {"id": "NFR-1", "requirement": "Responds quickly", "target": "p95 under 200 ms"},
            {"id": "NFR-2", "requirement": "Data survives a restart", "target": "0 saved items lost in 100 restarts"},
            *_UNDECIDED_NFR * any(word in requirement for word in ("TBD", "待定")),
        ],
        "open_questions": questions,
    }


_UNDECIDED_NFR = [{"id": "NFR-3", "requirement": "Scales with its users", "target": "TBD"}]


def _criterion(number: str, given: str, when: str, then: str) -> dict[str, str]:
    return {"id": f"AC-{number}", "story_id": f"US-{number[0]}", "given": given, "when": when, "then": then}


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


def test_plan(brief: Brief) -> dict[str, Any]:
    """The QAEngineer's: six cases, and one more in a follow-up."""
    follow_up = brief.follow_up
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


_DESIGN: dict[str, Any] = {
    "components": [
        {"id": f"C-{number}", "name": name, "responsibility": job, "serves": ["US-1", "US-2"]}
        for number, (name, job) in enumerate(
            [
                ("API service", f"FastAPI JSON API. {SCRIPTED_NOTICE}"),
                ("Persistence layer", "SQLite storage of items"),
                ("Web UI", "Browser pages for the workflow"),
            ],
            start=1,
        )
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


def design(brief: Brief) -> dict[str, Any]:
    """The SoftwareDeveloper's: three components serving both stories."""
    return _DESIGN


def review(brief: Brief) -> dict[str, Any]:
    """The Coordinator's: `go` (the service turns it into `no_go` over a failing gate), answering each
    error and warning finding it was handed in `issues`."""
    return {
        "decision": "go",
        "reasons": [SCRIPTED_NOTICE, "Every acceptance criterion has a test case and a component."],
        "issues": [
            *answered_findings(brief.quality),
            {"ids": ["US-1"], "problem": "User numbers are unknown.", "fix": "Ask the requester."},
        ],
        "summary": f"A scripted delivery plan for: {brief.requirement[:120]}",
    }


def answered_findings(quality: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A review's `issues` for the error and warning findings of the service's `quality` object."""
    findings = (quality or {}).get("findings", [])
    return [
        {"ids": [found["target"]], "problem": found["message"], "fix": found["suggestion"]}
        for found in findings
        if found.get("severity") in ("error", "warning")
    ]
