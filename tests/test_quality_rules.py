"""The quality rules over structured deliverables (docs/quality.md): each rule trips on its case, in English
and in Chinese, and not on its near misses; severities, order and ids are stable; a clean delivery is clean."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from delivery_service.deliverables.findings import RULES, Finding, find
from delivery_service.deliverables.schemas import RequirementsAnalysis, TechnicalDesign, TestPlan
from delivery_service.deliverables.traceability import Documents, trace

DOCS = Path(__file__).resolve().parent.parent / "docs" / "quality.md"
CJK = re.compile(r"[\u4e00-\u9fff]")

CLEAN: dict[str, Any] = {
    "analysis": {
        "user_stories": [
            {"id": "US-1", "priority": "must", "story": "As a shopper, I want to add a book to my cart"},
            {"id": "US-2", "priority": "should", "story": "As a shopper, I want to see my cart total"},
        ],
        "acceptance_criteria": [
            {"id": "AC-1.1", "story_id": "US-1", "given": "an empty cart", "when": "I add a book", "then": "it is listed"},
            {"id": "AC-2.1", "story_id": "US-2", "given": "two books", "when": "I open the cart", "then": "the sum shows"},
        ],
        "non_functional": [{"id": "NFR-1", "requirement": "Cart page load time", "target": "p95 < 300 ms"}],
    },
    "plan": {
        "test_cases": [
            {"id": "TC-1", "title": "Add", "type": "functional", "steps": ["Add a book"], "expected": "It is listed",
             "covers": ["AC-1.1"]},
            {"id": "TC-2", "title": "Total", "type": "functional", "steps": ["Open the cart"], "expected": "Sum shown",
             "covers": ["AC-2.1", "NFR-1"]},
        ]
    },
    "design": {"components": [{"id": "C-1", "name": "Cart", "responsibility": "Holds books", "serves": ["US-1", "US-2"]}]},
}  # fmt: skip
WHERE = {  # a field of the clean delivery: its path, and the identifier a finding about it targets
    "story": (("analysis", "user_stories", 0, "story"), "US-1"),
    "given": (("analysis", "acceptance_criteria", 0, "given"), "AC-1.1"),
    "when": (("analysis", "acceptance_criteria", 0, "when"), "AC-1.1"),
    "then": (("analysis", "acceptance_criteria", 0, "then"), "AC-1.1"),
    "target": (("analysis", "non_functional", 0, "target"), "NFR-1"),
    "steps": (("plan", "test_cases", 0, "steps"), "TC-1"),
    "expected": (("plan", "test_cases", 0, "expected"), "TC-1"),
}


def edited(*changes: tuple[tuple[Any, ...], Any]) -> dict[str, Any]:
    data = copy.deepcopy(CLEAN)
    for path, value in changes:
        *parents, last = path
        node = data
        for key in parents:
            node = node[key]
        node[last] = value
    return data


def lint(data: dict[str, Any], chinese: bool = False) -> list[Finding]:
    analysis = RequirementsAnalysis.model_validate(data["analysis"])
    plan = TestPlan.model_validate(data["plan"])
    design = TechnicalDesign.model_validate(data["design"])
    return find(Documents(analysis, plan, design), trace(analysis, plan, design), chinese=chinese)


def of(rule: str, found: list[Finding]) -> list[tuple[str, str, str]]:
    return [(f.target, f.field, f.severity) for f in found if f.rule == rule]


TEXT_CASES = [
    ("vague-term", "warning", "story", "As a shopper, I want a fast checkout", True),
    ("vague-term", "warning", "then", "the page is user-friendly", True),
    ("vague-term", "warning", "then", "results appear as soon as possible", True),
    ("vague-term", "warning", "story", "作为顾客，我希望快速结账", True),
    ("vague-term", "warning", "then", "界面简单友好", True),
    ("vague-term", "warning", "then", "the list responds quickly, within 200 ms", False),
    ("vague-term", "warning", "then", "页面在200毫秒内快速显示", False),
    ("vague-term", "warning", "then", "the breakfast menu is listed", False),
    ("unmeasurable-nfr", "error", "target", "fast", True),
    ("unmeasurable-nfr", "error", "target", "highly available", True),
    ("unmeasurable-nfr", "error", "target", "响应要快", True),
    ("unmeasurable-nfr", "error", "target", "99.9%", False),
    ("unmeasurable-nfr", "error", "target", "≤ 2 s", False),
    ("unmeasurable-nfr", "error", "target", "200毫秒内", False),
    ("unmeasurable-nfr", "error", "target", "1000 concurrent users", False),
    ("incomplete-criterion", "error", "then", "TBD", True),
    ("incomplete-criterion", "error", "given", "TODO", True),
    ("incomplete-criterion", "error", "when", "...", True),
    ("incomplete-criterion", "error", "then", "…", True),
    ("incomplete-criterion", "error", "then", "?", True),
    ("incomplete-criterion", "error", "given", "N/A", True),
    ("incomplete-criterion", "error", "then", "待定", True),
    ("incomplete-criterion", "error", "when", "待补充", True),
    ("incomplete-criterion", "error", "then", "  I ADD a  book.", True),
    ("incomplete-criterion", "error", "then", "a todo note is listed", False),
    ("compound-criterion", "info", "then", "the book is listed and the total is updated", True),
    ("compound-criterion", "info", "then", "the book is listed or an error is shown", True),
    ("compound-criterion", "info", "then", "显示书名和价格", True),
    ("compound-criterion", "info", "then", "图书已列出并且总价已更新", True),
    ("compound-criterion", "info", "then", "the command is rejected", False),
    ("compound-criterion", "info", "then", "the brand is shown on Android", False),
    ("story-form", "warning", "story", "Add a book to the cart", True),
    ("story-form", "warning", "story", "As a shopper, I want", True),
    ("story-form", "warning", "story", "添加图书到购物车", True),
    ("story-form", "warning", "story", "As an admin I need to remove books", False),
    ("story-form", "warning", "story", "作为顾客，我希望把图书加入购物车", False),
    ("story-form", "warning", "story", "作为一名顾客我想查看总价", False),
    ("test-without-expected", "error", "expected", "TBD", True),
    ("test-without-expected", "error", "expected", "待定", True),
    ("test-without-expected", "error", "steps", ["...", "TODO"], True),
    ("test-without-expected", "error", "steps", ["...", "Add a book"], False),
    ("test-without-expected", "error", "expected", "3 books are listed", False),
]


@pytest.mark.parametrize(("rule", "severity", "where", "text", "trips"), TEXT_CASES)
def test_each_text_rule_trips_on_its_case_and_not_on_a_near_miss(
    rule: str, severity: str, where: str, text: Any, trips: bool
) -> None:
    path, target = WHERE[where]
    found = lint(edited((path, text)))
    assert of(rule, found) == ([(target, where, severity)] if trips else [])
    assert all(f.rule == rule for f in found), "the clean delivery around the text trips nothing else"


@pytest.mark.parametrize("chinese", [False, True])
def test_a_clean_delivery_has_no_findings(chinese: bool) -> None:
    assert lint(CLEAN, chinese=chinese) == []


@pytest.mark.parametrize(
    ("chinese", "message", "suggestion"),
    [
        (False, "unverifiable term(s) fast, simple in “As a shopper,", "a number with a unit"),
        (True, "含无法验证的词语：fast, simple", "可度量"),
    ],
)
def test_messages_quote_the_text_in_the_language_asked_for(chinese: bool, message: str, suggestion: str) -> None:
    story = "As a shopper, I want a fast and simple checkout " + "with many words after it " * 5
    [finding] = [f for f in lint(edited((WHERE["story"][0], story)), chinese=chinese) if f.rule == "vague-term"]
    assert message in finding.message and suggestion in finding.suggestion
    assert "…”" in finding.message and story not in finding.message, "a long text is shortened"
    assert bool(CJK.search(finding.suggestion)) is chinese


PRIORITY_2 = ("analysis", "user_stories", 1, "priority")
STORY = (WHERE["story"][0], ("analysis", "user_stories", 1, "story"))


@pytest.mark.parametrize(
    ("priority", "severity"), [("must", "error"), ("should", "warning"), ("could", "info"), ("wont", None)]
)
def test_an_untested_criterion_weighs_by_its_storys_priority(priority: str, severity: str | None) -> None:
    data = edited((PRIORITY_2, priority), (("plan", "test_cases", 1, "covers"), ["NFR-1"]))
    assert of("untested-criterion", lint(data)) == ([("AC-2.1", "covers", severity)] if severity else [])


@pytest.mark.parametrize(
    ("path", "value", "target", "field"),
    [
        (("plan", "test_cases", 0, "covers"), ["AC-1.1", "AC-9.1"], "TC-1", "covers"),
        (("design", "components", 0, "serves"), ["US-1", "US-2", "US-9"], "C-1", "serves"),
        (("design", "api"), [{"method": "POST", "path": "/cart", "purpose": "Add", "serves": ["US-9"]}], "POST /cart",
         "serves"),
        (("design", "milestones"), [{"name": "Beta", "scope": ["US-1", "US-9"]}], "Beta", "scope"),
    ],
)  # fmt: skip
def test_a_dangling_reference_names_its_source_field_and_the_missing_id(
    path: tuple[Any, ...], value: Any, target: str, field: str
) -> None:
    found = [f for f in lint(edited((path, value)), chinese=True) if f.rule == "dangling-reference"]
    assert [(f.target, f.field, f.severity) for f in found] == [(target, field, "error")]
    missing = "AC-9.1" if field == "covers" else "US-9"
    assert missing in found[0].message and missing in found[0].suggestion and CJK.search(found[0].message)


def test_a_dangling_reference_from_elsewhere_sits_in_ids() -> None:
    """Neither a test case, a component, an endpoint nor a milestone: the review's issues (`ids`)."""
    analysis = RequirementsAnalysis.model_validate(CLEAN["analysis"])
    traced = trace(analysis, None, None).model_copy(update={"dangling": [{"from": "issue 1", "to": "US-9"}]})
    found = [f for f in find(Documents(analysis), traced) if f.rule == "dangling-reference"]
    assert [(f.target, f.field, f.severity) for f in found] == [("issue 1", "ids", "error")]


@pytest.mark.parametrize(("priority", "trips"), [("must", True), ("should", True), ("could", False)])
def test_a_story_without_component_matters_for_must_and_should(priority: str, trips: bool) -> None:
    data = edited((PRIORITY_2, priority), (("design", "components", 0, "serves"), ["US-1"]))
    assert of("story-without-component", lint(data)) == ([("US-2", "serves", "warning")] if trips else [])


@pytest.mark.parametrize(
    ("changes", "target", "field"),
    [
        ([(STORY[1], "as a SHOPPER,  I want to add a book to my cart.")], "US-2", "story"),
        ([(STORY[0], "作为顾客，我希望登录"), (STORY[1], "作为顾客，我希望登录。")], "US-2", "story"),
        ([(("analysis", "acceptance_criteria", 1), {"id": "AC-2.1", "story_id": "US-2", "given": "An empty cart",
           "when": "I add a book", "then": "it is listed."})], "AC-2.1", "given/when/then"),
        ([(STORY[1], "As a shopper, I want to remove a book from my cart")], None, None),
        ([(STORY[0], "作为顾客，我希望登录"), (STORY[1], "作为顾客，我希望退出")], None, None),
    ],
)  # fmt: skip
def test_a_duplicate_is_reported_on_the_later_one_naming_the_earlier(
    changes: list[tuple[tuple[Any, ...], Any]], target: str | None, field: str | None
) -> None:
    found = [f for f in lint(edited(*changes)) if f.rule == "duplicate"]
    assert [(f.target, f.field, f.severity) for f in found] == ([(target, field, "warning")] if target else [])
    assert all(target.replace("2", "1") in f.message for f in found if target), "names the earlier one"


MESSY = edited(
    (WHERE["story"][0], "Fast checkout"),
    (WHERE["then"][0], "TBD"),
    (("analysis", "acceptance_criteria", 1, "then"), "it is quick and simple"),
    (WHERE["target"][0], "fast"),
    (("plan", "test_cases", 1, "covers"), ["AC-7.1"]),
)


def test_findings_are_stable_ordered_by_rule_then_document_and_numbered() -> None:
    first, second = lint(MESSY), lint(MESSY)
    assert first == second
    assert [f.id for f in first] == [f"Q-{n}" for n in range(1, len(first) + 1)]
    order = [rule.name for rule in RULES]
    assert [order.index(f.rule) for f in first] == sorted(order.index(f.rule) for f in first)
    assert [(f.rule, f.target) for f in first] == [
        ("vague-term", "US-1"),
        ("vague-term", "AC-2.1"),
        ("unmeasurable-nfr", "NFR-1"),
        ("incomplete-criterion", "AC-1.1"),
        ("compound-criterion", "AC-2.1"),
        ("story-form", "US-1"),
        ("untested-criterion", "AC-2.1"),
        ("dangling-reference", "TC-2"),
    ]


def test_every_rule_has_a_source_and_a_heading_in_the_docs() -> None:
    headings = set(re.findall(r"^### `?([\w-]+)`?\s*$", DOCS.read_text(encoding="utf-8"), re.MULTILINE))
    names = [rule.name for rule in RULES]
    assert len(set(names)) == len(names) and all(rule.source for rule in RULES)
    assert set(names) <= headings, f"undocumented: {set(names) - headings}"
