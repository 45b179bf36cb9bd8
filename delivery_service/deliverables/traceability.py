"""How well a delivery's documents fit together, computed by the service from their data, never by a model.

Stories prioritised `wont` are out of scope: their criteria are not counted, and no component need serve them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from delivery_service.deliverables.schemas import (
    DeliveryReview,
    Document,
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
    analysis: RequirementsAnalysis | None,
    test_plan: TestPlan | None,
    design: TechnicalDesign | None,
    others: Sequence[Document] = (),
) -> Traceability:
    """The traceability of whatever documents there are (a missing one covers and serves nothing); `others`
    (further agents') define identifiers and may refer to missing ones, like the plan and the design."""
    stories = {story.id: story for story in analysis.user_stories} if analysis else {}
    in_scope = {story_id for story_id, story in stories.items() if story.priority != "wont"}
    all_criteria = analysis.acceptance_criteria if analysis else []
    criteria = [criterion for criterion in all_criteria if criterion.story_id in in_scope]
    present = [document for document in (analysis, test_plan, design, *others) if document is not None]
    known = {identifier for document in present for identifier in document.identifiers()}

    covered_ids = {reference for case in (test_plan.test_cases if test_plan else []) for reference in case.covers}
    uncovered = [criterion.id for criterion in criteria if criterion.id not in covered_ids]

    dangling = [
        {"from": source, "to": target}
        for document in present
        for source, target in document.references()
        if target not in known
    ]
    served = {ref for component in (design.components if design else []) for ref in component.serves}
    served |= {ref for endpoint in (design.api if design else []) for ref in endpoint.serves}
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


def gap_reason(gaps: list[str] | tuple[str, ...]) -> str:
    """The reason the service adds when must-have criteria have no test case."""
    return f"Must-have acceptance criteria without a test case: {', '.join(gaps)}."


@dataclass(frozen=True)
class Documents:
    """A delivery's structured documents by kind (None: missing or left as text); `others`: further agents'."""

    analysis: RequirementsAnalysis | None = None
    test_plan: TestPlan | None = None
    design: TechnicalDesign | None = None
    review: DeliveryReview | None = None
    others: tuple[Document, ...] = ()

    @classmethod
    def of(cls, found: Iterable[Document | None]) -> Documents:
        present = [document for document in found if document is not None]
        known = (RequirementsAnalysis, TestPlan, TechnicalDesign, DeliveryReview)
        firsts = [next((document for document in present if type(document) is kind), None) for kind in known]
        return cls(*firsts, tuple(document for document in present if type(document) not in known))  # type: ignore[arg-type]

    def traceability(self) -> Traceability:
        return trace(self.analysis, self.test_plan, self.design, self.others)
