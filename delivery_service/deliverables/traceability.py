"""How well a delivery's documents fit together, computed by the service from their data, never by a model.

`trace` takes the analysis, test plan and design (any of them may be missing: a model whose output
could not be brought into shape) and answers the contract's `traceability` object: coverage of the
acceptance criteria by test cases, references to identifiers that do not exist, stories that no
component serves. `decide` applies the contract's rule to the Coordinator's decision: never `go` while
a `must` story has an uncovered criterion.

Stories prioritised `wont` are out of scope: their criteria are not counted, and no component needs to
serve them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from delivery_service.deliverables.schemas import (
    SCHEMAS,
    Decision,
    DeliveryReview,
    RequirementsAnalysis,
    TechnicalDesign,
    TestPlan,
)


class Traceability(BaseModel):
    """The contract's `traceability` object; `dangling` items are `{"from": id, "to": missing id}`."""

    acceptance_criteria: int
    covered: int
    coverage: float
    uncovered: list[str]
    dangling: list[dict[str, str]]
    stories_without_component: list[str]
    complete: bool


def trace(
    analysis: RequirementsAnalysis | None, test_plan: TestPlan | None, design: TechnicalDesign | None
) -> Traceability:
    """The traceability of whatever documents there are (a missing one covers and serves nothing)."""
    stories = {story.id: story for story in analysis.user_stories} if analysis else {}
    in_scope = {story_id for story_id, story in stories.items() if story.priority != "wont"}
    all_criteria = analysis.acceptance_criteria if analysis else []
    criteria = [criterion for criterion in all_criteria if criterion.story_id in in_scope]
    known = set(stories) | {criterion.id for criterion in all_criteria}
    known |= {item.id for item in (analysis.non_functional if analysis else [])}
    known |= {case.id for case in (test_plan.test_cases if test_plan else [])}
    known |= {component.id for component in (design.components if design else [])}
    known |= {risk.id for risk in (design.risks if design else [])}

    covered_ids = {reference for case in (test_plan.test_cases if test_plan else []) for reference in case.covers}
    uncovered = [criterion.id for criterion in criteria if criterion.id not in covered_ids]

    dangling: list[dict[str, str]] = []
    for case in test_plan.test_cases if test_plan else []:
        dangling += [{"from": case.id, "to": reference} for reference in case.covers if reference not in known]
    served: set[str] = set()
    for component in design.components if design else []:
        served |= set(component.serves)
        dangling += [{"from": component.id, "to": ref} for ref in component.serves if ref not in known]
    for endpoint in design.api if design else []:
        served |= set(endpoint.serves)
        source = f"{endpoint.method} {endpoint.path}"
        dangling += [{"from": source, "to": reference} for reference in endpoint.serves if reference not in known]
    for milestone in design.milestones if design else []:
        dangling += [{"from": milestone.name, "to": ref} for ref in milestone.scope if ref not in known]
    without_component = [story_id for story_id in stories if story_id in in_scope and story_id not in served]

    covered = len(criteria) - len(uncovered)
    return Traceability(
        acceptance_criteria=len(criteria),
        covered=covered,
        coverage=round(covered / len(criteria), 3) if criteria else 0.0,
        uncovered=uncovered,
        dangling=dangling,
        stories_without_component=without_component,
        complete=bool(criteria) and not uncovered and not dangling and not without_component,
    )


def must_gaps(analysis: RequirementsAnalysis | None, traceability: Traceability) -> list[str]:
    """Uncovered criteria of `must` stories: each one rules out `go`."""
    if analysis is None:
        return []
    must = {story.id for story in analysis.user_stories if story.priority == "must"}
    uncovered = set(traceability.uncovered)
    return [c.id for c in analysis.acceptance_criteria if c.story_id in must and c.id in uncovered]


def decide(
    review: DeliveryReview | None, analysis: RequirementsAnalysis | None, traceability: Traceability
) -> tuple[Decision, list[str]]:
    """The delivery's decision and its reasons: the Coordinator's, but never `go` with a `must` gap.

    Without a structured review or analysis there is nothing to vouch for a `go`: the answer is `no_go`.
    """
    reasons = list(review.reasons) if review else []
    if review is None or analysis is None:
        missing = "review" if review is None else "requirements analysis"
        return "no_go", [*reasons, f"The {missing} could not be read as structured data, so coverage is unproven."]
    gaps = must_gaps(analysis, traceability)
    if gaps:
        note = gap_reason(gaps)
        return "no_go", [*reasons, note] if note not in reasons else reasons
    return review.decision, reasons


def gap_reason(gaps: list[str] | tuple[str, ...]) -> str:
    """The reason the service adds when must-have criteria have no test case."""
    return f"Must-have acceptance criteria without a test case: {', '.join(gaps)}."


@dataclass(frozen=True)
class Documents:
    """A delivery's structured documents; None where a model's answer stayed text (or is missing)."""

    analysis: RequirementsAnalysis | None = None
    test_plan: TestPlan | None = None
    design: TechnicalDesign | None = None
    review: DeliveryReview | None = None


def documents(data_by_agent: Mapping[str, dict[str, Any] | None]) -> Documents:
    """Deliverable data, keyed by agent name, as the agents' models (None where there is none or it no
    longer fits the schema)."""
    found: dict[str, Any] = {}
    for agent_name, schema in SCHEMAS.items():
        data = data_by_agent.get(agent_name)
        try:
            found[agent_name] = schema.model_validate(data) if data is not None else None
        except ValidationError:
            found[agent_name] = None
    return Documents(found["ProductManager"], found["QAEngineer"], found["SoftwareDeveloper"], found["Coordinator"])


def assess(data_by_agent: Mapping[str, dict[str, Any] | None]) -> tuple[Traceability, Decision]:
    """The traceability and the decision of a finished delivery, from its deliverables' data."""
    found = documents(data_by_agent)
    traceability = trace(found.analysis, found.test_plan, found.design)
    decision, _ = decide(found.review, found.analysis, traceability)
    return traceability, decision
