"""Structured deliverables: parsing a model's answer, the documents' own rules, the traceability the service
computes, the decision rule and the markdown rendered from the data."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from delivery_service.agents import AGENTS
from delivery_service.crew.factory import delivery_summary
from delivery_service.deliverables.changes import Changes, diff, id_order
from delivery_service.deliverables.gate import GatePolicy, assess, decide
from delivery_service.deliverables.parsing import parse_deliverable, repair_request
from delivery_service.deliverables.render import render, render_triage, traceability_matrix
from delivery_service.deliverables.schemas import DeliveryReview, RequirementsAnalysis, TechnicalDesign, TestPlan
from delivery_service.deliverables.traceability import Documents, trace

POLICY = GatePolicy(min_coverage=0.8)

ANALYSIS: dict[str, Any] = {
    "user_stories": [
        {"id": "US-1", "priority": "must", "story": "As a user, I want to add a todo, so that I remember it."},
        {"id": "US-2", "priority": "should", "story": "As a user, I want to share a list."},
        {"id": "US-3", "priority": "wont", "story": "As a user, I want voice input."},
    ],
    "acceptance_criteria": [
        {"id": "AC-1.1", "story_id": "US-1", "given": "an empty list", "when": "I add 'milk'", "then": "it is listed"},
        {"id": "AC-1.2", "story_id": "US-1", "given": "a list", "when": "I add an empty item", "then": "it is refused"},
        {"id": "AC-2.1", "story_id": "US-2", "given": "a list", "when": "I share it", "then": "a link is made"},
        {"id": "AC-3.1", "story_id": "US-3", "given": "a microphone", "when": "I speak", "then": "a todo is added"},
    ],
    "non_functional": [{"id": "NFR-1", "requirement": "Pages load fast", "target": "p95 under 300 ms"}],
    "open_questions": ["Do lists need accounts?"],
}


def plan_case(
    case_id: str, title: str, kind: str, steps: list[str], expected: str, covers: list[str]
) -> dict[str, Any]:
    return {"id": case_id, "title": title, "type": kind, "steps": steps, "expected": expected, "covers": covers}


PLAN: dict[str, Any] = {
    "test_cases": [
        plan_case("TC-1", "Add an item", "functional", ["open", "add milk"], "milk is listed", ["AC-1.1"]),
        plan_case("TC-2", "Empty item", "negative", ["add ''"], "refused", ["AC-1.2", "NFR-1"]),
        plan_case("TC-3", "Share", "functional", ["share"], "a link", ["AC-2.1"]),
    ]
}
DESIGN: dict[str, Any] = {
    "components": [
        {"id": "C-1", "name": "Web app", "responsibility": "Lists and items", "serves": ["US-1", "US-2"]},
    ],
    "data_model": [{"entity": "Item", "fields": ["id", "text", "done"]}],
    "api": [{"method": "POST", "path": "/items", "purpose": "Add an item", "serves": ["US-1"]}],
    "diagram": "flowchart LR\n  Browser --> C1[Web app]",
    "risks": [{"id": "R-1", "risk": "Spam via shared links", "mitigation": "Rate limits"}],
    "milestones": [{"name": "MVP", "scope": ["US-1", "US-2"]}],
}
REVIEW: dict[str, Any] = {
    "decision": "go",
    "reasons": ["Every must-have criterion has a test."],
    "issues": [],
    "summary": "A small todo app, ready to build.",
}
DOCUMENTS = {"ProductManager": ANALYSIS, "QAEngineer": PLAN, "SoftwareDeveloper": DESIGN, "Coordinator": REVIEW}


TRIAGE = "Triage"


def schema(agent: str) -> Any:
    """The schema of an agent's deliverable, or of a follow-up's triage."""
    return AGENTS.triage_schema() if agent == TRIAGE else AGENTS.named(agent).schema


def parsed(agent: str, data: dict[str, Any]) -> Any:
    result = parse_deliverable(schema(agent), json.dumps(data))
    assert result.data is not None, result.errors
    return result.data


@pytest.mark.parametrize(
    "answer",
    [
        json.dumps(REVIEW),
        "Here is the review:\n```json\n" + json.dumps(REVIEW, indent=1) + "\n```\nThanks.",
        "Sure. " + json.dumps(REVIEW) + " Done.",
    ],
    ids=["bare", "fenced", "with prose"],
)
def test_the_json_is_found_wherever_the_model_put_it(answer: str) -> None:
    result = parse_deliverable(schema("Coordinator"), answer)
    assert isinstance(result.data, DeliveryReview) and result.errors == []
    assert result.data.decision == "go"


def test_bad_answers_get_errors_that_name_the_field() -> None:
    assert parse_deliverable(schema("QAEngineer"), "No JSON here.").errors == [
        "The answer holds no JSON object: answer with one JSON object only."
    ]
    assert "does not parse" in parse_deliverable(schema("QAEngineer"), '{"test_cases": [}').errors[0]
    wrong = json.loads(json.dumps(ANALYSIS))
    wrong["user_stories"][0]["priority"] = "urgent"
    wrong["acceptance_criteria"][0]["id"] = "AC-9"
    errors = parse_deliverable(schema("ProductManager"), json.dumps(wrong)).errors
    assert any(error.startswith("user_stories.0.priority: ") for error in errors), errors
    assert any(error.startswith("acceptance_criteria.0.id: ") for error in errors), errors
    request = repair_request(errors)
    assert all(error in request for error in errors) and "whole corrected JSON object" in request


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a["acceptance_criteria"][0].update(story_id="US-7"), "AC-1.1 belongs to US-7"),
        (lambda a: a["acceptance_criteria"][2].update(story_id="US-1"), "AC-2.1 must be numbered after"),
        (lambda a: a["user_stories"].append(dict(a["user_stories"][0])), "repeated: US-1"),
    ],
)
def test_an_analysis_keeps_its_own_rules(change: Any, message: str) -> None:
    analysis = json.loads(json.dumps(ANALYSIS))
    change(analysis)
    errors = parse_deliverable(schema("ProductManager"), json.dumps(analysis)).errors
    assert any(message in error for error in errors), errors


def test_complete_documents_trace_completely() -> None:
    analysis = parsed("ProductManager", ANALYSIS)
    traceability = trace(analysis, parsed("QAEngineer", PLAN), parsed("SoftwareDeveloper", DESIGN))
    assert traceability.model_dump() == {
        "acceptance_criteria": 3,  # AC-3.1 belongs to a `wont` story: out of scope
        "covered": 3,
        "coverage": 1.0,
        "uncovered": [],
        "dangling": [],
        "stories_without_component": [],
        "complete": True,
    }
    review = parsed("Coordinator", REVIEW)
    documents = Documents(analysis, parsed("QAEngineer", PLAN), parsed("SoftwareDeveloper", DESIGN), review)
    assert decide(review, assess(documents, POLICY).quality.gate) == ("go", REVIEW["reasons"])


def test_gaps_and_dangling_references_are_found_and_a_must_gap_rules_out_go() -> None:
    plan = json.loads(json.dumps(PLAN))
    plan["test_cases"][0]["covers"] = ["AC-7.1"]  # AC-1.1 (must) now uncovered, AC-7.1 does not exist
    design = json.loads(json.dumps(DESIGN))
    design["components"][0]["serves"] = ["US-1", "US-9"]  # US-2 unserved, US-9 does not exist
    analysis = parsed("ProductManager", ANALYSIS)
    traceability = trace(analysis, parsed("QAEngineer", plan), parsed("SoftwareDeveloper", design))
    assert traceability.uncovered == ["AC-1.1"]
    assert (traceability.covered, traceability.acceptance_criteria, traceability.coverage) == (2, 3, 0.667)
    assert traceability.dangling == [{"from": "TC-1", "to": "AC-7.1"}, {"from": "C-1", "to": "US-9"}]
    assert traceability.stories_without_component == ["US-2"]
    assert traceability.complete is False
    review = parsed("Coordinator", REVIEW)
    documents = Documents(analysis, parsed("QAEngineer", plan), parsed("SoftwareDeveloper", design), review)
    decision, reasons = decide(review, assess(documents, POLICY).quality.gate)
    assert decision == "no_go"
    assert "Must-have acceptance criteria without a test case: AC-1.1." in reasons


def test_without_structured_documents_nothing_vouches_for_go() -> None:
    traceability = trace(None, None, None)
    assert (traceability.acceptance_criteria, traceability.coverage, traceability.complete) == (0, 0.0, False)
    assessment = assess(Documents(review=parsed("Coordinator", REVIEW)), POLICY)
    assert assessment.decision == "no_go" and assessment.quality.gate.status == "fail"
    assert "The requirements analysis could not be read" in assessment.quality.gate.reasons[0]


@pytest.mark.parametrize(
    ("chinese", "headings"),
    [
        (False, ["Requirements analysis", "Test plan", "Technical design", "Delivery review"]),
        (True, ["需求分析", "测试计划", "技术设计", "交付评审"]),
    ],
    ids=["english", "chinese"],
)
def test_markdown_is_rendered_from_the_data_in_the_requirements_language(chinese: bool, headings: list[str]) -> None:
    documents = {agent: parsed(agent, data) for agent, data in DOCUMENTS.items()}
    markdown = {agent: AGENTS.named(agent).render(data, chinese=chinese) for agent, data in documents.items()}
    for text, heading in zip(markdown.values(), headings, strict=True):
        assert text.startswith(f"# {heading}\n")
    assert "**AC-1.2** (US-1)" in markdown["ProductManager"]
    assert re.search(r"^\| TC-2 \|.*\| AC-1\.2, NFR-1 \|", markdown["QAEngineer"], re.MULTILINE)
    assert "```mermaid\nflowchart LR" in markdown["SoftwareDeveloper"]
    assert delivery_summary(markdown["Coordinator"]) == REVIEW["summary"], "the summary section is found"
    assert isinstance(documents["ProductManager"], RequirementsAnalysis)
    assert isinstance(documents["QAEngineer"], TestPlan) and isinstance(documents["SoftwareDeveloper"], TechnicalDesign)


def test_the_matrix_marks_uncovered_criteria() -> None:
    plan = json.loads(json.dumps(PLAN))
    plan["test_cases"] = plan["test_cases"][1:]
    analysis, test_plan = parsed("ProductManager", ANALYSIS), parsed("QAEngineer", plan)
    matrix = traceability_matrix(analysis, test_plan, trace(analysis, test_plan, None))
    assert "| AC-1.1 | US-1 | Must | - | not covered |" in matrix
    assert "| AC-1.2 | US-1 | Must | TC-2 | covered |" in matrix
    assert "Stories no component serves: US-1, US-2" in matrix


def test_the_changes_between_revisions_are_computed_by_identifier() -> None:
    analysis = copy.deepcopy(ANALYSIS)
    analysis["acceptance_criteria"] = [c for c in analysis["acceptance_criteria"] if c["id"] != "AC-1.2"]
    analysis["acceptance_criteria"].append(
        {"id": "AC-1.10", "story_id": "US-1", "given": "a", "when": "b", "then": "c"}
    )
    analysis["user_stories"][1]["story"] = "As a user, I want to share a list with my family."
    analysis["open_questions"] = ["A different question"]  # not an identified item: no change reported
    plan = copy.deepcopy(PLAN)
    plan["test_cases"].append({**plan["test_cases"][0], "id": "TC-4", "covers": ["AC-1.10"]})
    after = {
        **DOCUMENTS,
        "ProductManager": analysis,
        "QAEngineer": plan,
        "Coordinator": {**REVIEW, "decision": "no_go"},
    }

    changes = Changes(added=["AC-1.10", "TC-4"], removed=["AC-1.2"], modified=["US-2"])
    assert diff(DOCUMENTS, after, AGENTS.prefixes) == changes
    assert diff(DOCUMENTS, DOCUMENTS, AGENTS.prefixes) == Changes(added=[], removed=[], modified=[])
    added = diff({}, {"SoftwareDeveloper": DESIGN}, AGENTS.prefixes).added
    assert added == ["C-1", "R-1"], "a document without data adds nothing"
    shuffled = ["AC-1.10", "TC-2", "AC-1.9", "US-10", "US-2", "R-1", "NFR-1"]
    ordered = ["US-2", "US-10", "AC-1.9", "AC-1.10", "NFR-1", "TC-2", "R-1"]
    assert sorted(shuffled, key=id_order(AGENTS.prefixes)) == ordered


def test_a_triage_names_a_known_agent() -> None:
    triage = {"classification": "bug", "rerun_from": "QAEngineer", "reason": "TC-2 tests the wrong thing"}
    assert render(parsed(TRIAGE, triage), render_triage).startswith("bug: re-run from QAEngineer.")
    wrong = parse_deliverable(schema(TRIAGE), json.dumps({**triage, "classification": "chore", "rerun_from": "Tester"}))
    assert wrong.data is None and [error.split(":")[0] for error in wrong.errors] == ["classification", "rerun_from"]
