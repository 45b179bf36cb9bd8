"""The structured form of each agent's deliverable (docs/api.md, "Structured deliverables and traceability").

One pydantic model per agent. Identifiers follow the contract and are checked here: user stories
`US-<n>`, acceptance criteria `AC-<n>.<m>` (criterion m of story n), non-functional requirements
`NFR-<n>`, test cases `TC-<n>`, components `C-<n>`, risks `R-<n>`. A document is valid on its own (ids
unique, each criterion under an existing story of the same number); references *between* documents are
not validation errors but findings of the traceability (`traceability.py`), computed by the service.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
StoryId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^US-[1-9][0-9]*$")]
CriterionId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^AC-[1-9][0-9]*\.[1-9][0-9]*$")]
NfrId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^NFR-[1-9][0-9]*$")]
TestCaseId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^TC-[1-9][0-9]*$")]
ComponentId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^C-[1-9][0-9]*$")]
RiskId = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^R-[1-9][0-9]*$")]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]


class Document(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def identifiers(self) -> list[str]:
        """The identifiers this document defines, which others may refer to."""
        return []

    def references(self) -> list[tuple[str, str]]:
        """(from, to): the identifiers of other documents this one refers to, for the traceability."""
        return []


def _unique(kind: str, ids: Iterable[str]) -> None:
    repeated = sorted(id_ for id_, count in Counter(ids).items() if count > 1)
    if repeated:
        raise ValueError(f"each {kind} needs its own id; repeated: {', '.join(repeated)}")


# --- ProductManager ----------------------------------------------------------------------------------
class UserStory(Document):
    id: StoryId
    priority: Literal["must", "should", "could", "wont"]
    story: Text


class AcceptanceCriterion(Document):
    id: CriterionId
    story_id: StoryId
    given: Text
    when: Text
    then: Text


class NonFunctionalRequirement(Document):
    id: NfrId
    requirement: Text
    target: Text


class RequirementsAnalysis(Document):
    user_stories: list[UserStory] = Field(min_length=1)
    acceptance_criteria: list[AcceptanceCriterion] = Field(min_length=1)
    non_functional: list[NonFunctionalRequirement] = Field(default_factory=list)
    open_questions: list[Text] = Field(default_factory=list)

    def identifiers(self) -> list[str]:
        items = [*self.user_stories, *self.acceptance_criteria, *self.non_functional]
        return [item.id for item in items]

    @model_validator(mode="after")
    def _criteria_belong_to_stories(self) -> RequirementsAnalysis:
        _unique("user story", (story.id for story in self.user_stories))
        _unique("acceptance criterion", (criterion.id for criterion in self.acceptance_criteria))
        _unique("non-functional requirement", (item.id for item in self.non_functional))
        stories = {story.id for story in self.user_stories}
        for criterion in self.acceptance_criteria:
            if criterion.story_id not in stories:
                raise ValueError(f"{criterion.id} belongs to {criterion.story_id}, which is not a user story here")
            if criterion.id.split(".")[0].replace("AC-", "US-") != criterion.story_id:
                raise ValueError(f"{criterion.id} must be numbered after its story {criterion.story_id}")
        return self


# --- QAEngineer ----------------------------------------------------------------------------------------
class TestCase(Document):
    __test__ = False  # a deliverable's test case, not a pytest class

    id: TestCaseId
    title: Text
    type: Literal["functional", "edge", "negative", "performance", "security", "usability"]
    steps: list[Text] = Field(min_length=1)
    expected: Text
    covers: list[Reference] = Field(min_length=1)


class TestPlan(Document):
    __test__ = False

    test_cases: list[TestCase] = Field(min_length=1)

    def identifiers(self) -> list[str]:
        return [case.id for case in self.test_cases]

    def references(self) -> list[tuple[str, str]]:
        return [(case.id, reference) for case in self.test_cases for reference in case.covers]

    @model_validator(mode="after")
    def _unique_ids(self) -> TestPlan:
        _unique("test case", (case.id for case in self.test_cases))
        return self


# --- SoftwareDeveloper ---------------------------------------------------------------------------------
class Component(Document):
    id: ComponentId
    name: Text
    responsibility: Text
    serves: list[Reference] = Field(default_factory=list)


class Entity(Document):
    entity: Text
    fields: list[Text] = Field(min_length=1)


class Endpoint(Document):
    method: Text
    path: Text
    purpose: Text
    serves: list[Reference] = Field(default_factory=list)


class Risk(Document):
    id: RiskId
    risk: Text
    mitigation: Text


class Milestone(Document):
    name: Text
    scope: list[Reference] = Field(default_factory=list)


class TechnicalDesign(Document):
    components: list[Component] = Field(min_length=1)
    data_model: list[Entity] = Field(default_factory=list)
    api: list[Endpoint] = Field(default_factory=list)
    diagram: Annotated[str, StringConstraints(strip_whitespace=True, max_length=20000)] = ""
    risks: list[Risk] = Field(default_factory=list)
    milestones: list[Milestone] = Field(default_factory=list)

    def identifiers(self) -> list[str]:
        return [component.id for component in self.components] + [risk.id for risk in self.risks]

    def references(self) -> list[tuple[str, str]]:
        found = [(component.id, ref) for component in self.components for ref in component.serves]
        found += [(f"{endpoint.method} {endpoint.path}", ref) for endpoint in self.api for ref in endpoint.serves]
        return found + [(milestone.name, ref) for milestone in self.milestones for ref in milestone.scope]

    @model_validator(mode="after")
    def _unique_ids(self) -> TechnicalDesign:
        _unique("component", (component.id for component in self.components))
        _unique("risk", (risk.id for risk in self.risks))
        return self


# --- Coordinator ---------------------------------------------------------------------------------------
class ReviewIssue(Document):
    ids: list[Reference] = Field(default_factory=list)
    problem: Text
    fix: Text


Decision = Literal["go", "no_go"]


class DeliveryReview(Document):
    decision: Decision
    reasons: list[Text] = Field(min_length=1)
    issues: list[ReviewIssue] = Field(default_factory=list)
    summary: Text


# --- a follow-up's triage (the first agent's, before anything is re-run) ----------------------------------
class Triage(Document):
    """What a follow-up request is, and the first agent whose document it changes (the registry narrows
    `rerun_from` to its agents' names: `delivery_service.agents.Pipeline.triage_schema`)."""

    classification: Literal["change", "new_feature", "bug"]
    rerun_from: Reference
    reason: Text
