"""The pipeline as data: `AGENTS`, the ordered registry of a delivery's agents (ARCHITECTURE.md explains it).

It holds the four default agents, built from `prompts.py`; a module named in AGENT_PLUGINS adds its own
with a `register(agents: Pipeline)` that calls `agents.add(spec, after=...)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from pydantic import create_model

from delivery_service import scripted_answers
from delivery_service.deliverables.changes import Changes, diff
from delivery_service.deliverables.parsing import Parsed, parse_deliverable
from delivery_service.deliverables.render import (
    WORDS,
    Renderer,
    live_markdown,
    render,
    render_analysis,
    render_design,
    render_plan,
    render_review,
)
from delivery_service.deliverables.schemas import (
    DeliveryReview,
    Document,
    RequirementsAnalysis,
    TechnicalDesign,
    TestPlan,
    Triage,
)
from delivery_service.deliverables.traceability import Documents
from delivery_service.prompts import AGENT_TEXTS, TASK_TEMPLATES, TaskTemplate
from delivery_service.scripted_answers import Brief

Phase = Literal["analysis", "delivery"]


@dataclass(frozen=True)
class AgentSpec:
    """Everything the service knows of one agent of the delivery."""

    name: str
    role: str
    goal: str
    backstory: str
    approach: str
    title: str  # its deliverable's title, in English
    title_zh: str
    templates: Mapping[str, TaskTemplate]  # by prompt style: "full"; "compact", "compact_zh" (embedded model)
    schema: type[Document]
    renderer: Renderer
    scripted: Callable[[Brief], dict[str, Any]]
    phase: Phase = "delivery"  # "analysis": before the requester's confirmation
    reviews: bool = False  # handed the computed traceability; its summary ends the task
    prefixes: tuple[str, ...] = ()  # the identifiers it defines: "US" for US-1, ...
    traces_to: tuple[str, ...] = ()  # the prefixes of the identifiers it refers to

    def parse(self, answer: str) -> Parsed:
        """A model's answer validated as this agent's deliverable."""
        return parse_deliverable(self.schema, answer)

    def validate(self, data: Mapping[str, Any]) -> Document | None:
        """Stored deliverable data as this agent's document, or None when it no longer fits the schema."""
        try:
            return self.schema.model_validate(data)
        except ValueError:
            return None

    def render(self, data: Document, chinese: bool = False) -> str:
        return render(data, self.renderer, chinese)

    def live_markdown(self, text: str, chinese: bool = False) -> str:
        return live_markdown(self.renderer, text, chinese)


class Pipeline(Sequence[AgentSpec]):
    """The ordered registry of agents: a sequence of their specs, in the order they run."""

    def __init__(self, specs: Iterable[AgentSpec] = ()) -> None:
        self._specs: list[AgentSpec] = []
        self._plugins: set[str] = set()
        for spec in specs:
            self.add(spec)

    def add(self, spec: AgentSpec, *, after: str | None = None) -> None:
        """Register `spec`, last or right after the agent named `after`."""
        if spec.name in self.names or spec.role in {agent.role for agent in self}:
            raise ValueError(f"an agent named {spec.name} or with the role {spec.role} is already registered")
        place = len(self._specs) if after is None else self.step(after)
        self._specs.insert(place, spec)

    def load_plugins(self, modules: tuple[str, ...]) -> None:
        """Import each module and call its `register(agents)`, once per module (AGENT_PLUGINS)."""
        for module in modules:
            if module not in self._plugins:
                importlib.import_module(module).register(self)
                self._plugins.add(module)

    def __len__(self) -> int:
        return len(self._specs)

    @overload
    def __getitem__(self, index: int) -> AgentSpec: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[AgentSpec]: ...

    def __getitem__(self, index: int | slice) -> AgentSpec | Sequence[AgentSpec]:
        return self._specs[index]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(agent.name for agent in self._specs)

    def named(self, name: str) -> AgentSpec:
        agent = self.get(name)
        if agent is None:
            raise KeyError(f"no agent named {name}; the agents are {', '.join(self.names)}")
        return agent

    def get(self, name: str) -> AgentSpec | None:
        return next((agent for agent in self._specs if agent.name == name), None)

    def by_role(self, role: str | None) -> AgentSpec | None:
        """The agent of a CrewAI role (CrewAI's events name agents by role)."""
        return next((agent for agent in self._specs if agent.role == role), None)

    def step(self, name: str) -> int:
        """The agent's step: its place in the pipeline, from 1 (docs/api.md, `metadata.step`)."""
        return self.names.index(name) + 1

    def at(self, step: int) -> AgentSpec:
        return self._specs[step - 1]

    def _steps(self, phase: Phase, reviews: bool) -> tuple[int, ...]:
        specs = enumerate(self._specs, start=1)
        return tuple(number for number, agent in specs if agent.phase == phase and agent.reviews == reviews)

    @property
    def analysis_steps(self) -> tuple[int, ...]:
        """The analysis crew's steps (before the requester's confirmation)."""
        return self._steps("analysis", False)

    @property
    def planning_steps(self) -> tuple[int, ...]:
        """The delivery's documents: the first crew after the confirmation (test plan, design, ...)."""
        return self._steps("delivery", False)

    @property
    def review_steps(self) -> tuple[int, ...]:
        """The review's crew, handed the documents' traceability."""
        return self._steps("delivery", True)

    @property
    def delivery_steps(self) -> tuple[int, ...]:
        return self.planning_steps + self.review_steps

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Every agent's identifier prefixes, in the pipeline's order (the order of a change list)."""
        return tuple(prefix for agent in self._specs for prefix in agent.prefixes)

    def triage_schema(self) -> type[Triage]:
        """`Triage` whose `rerun_from` is one of these agents' names."""
        rerun_from = Literal[self.names]  # type: ignore[valid-type]
        return create_model("Triage", __base__=Triage, rerun_from=(rerun_from, ...))

    def documents(self, data_by_agent: Mapping[str, dict[str, Any] | None]) -> Documents:
        """Deliverable data by agent name as documents (None where there is none or it no longer fits)."""
        found = []
        for agent in self._specs:
            data = data_by_agent.get(agent.name)
            found.append(agent.validate(data) if data is not None else None)
        return Documents.of(found)

    def changes(self, before: Mapping[str, Any], after: Mapping[str, Any]) -> Changes:
        """A follow-up's changes since its parent, identifiers in the pipeline's order of prefixes."""
        return diff(before, after, self.prefixes)


def _default(name: str, heading: str, **entry: Any) -> AgentSpec:
    """A default agent: its texts from `prompts.py`, its titles from the renderer's headings."""
    templates = {style: TASK_TEMPLATES[style][name] for style in TASK_TEMPLATES}
    title, title_zh = WORDS[False][heading], WORDS[True][heading]
    return AgentSpec(name=name, title=title, title_zh=title_zh, templates=templates, **AGENT_TEXTS[name], **entry)


AGENTS = Pipeline(
    [
        _default(
            "ProductManager",
            "analysis",
            schema=RequirementsAnalysis,
            renderer=render_analysis,
            scripted=scripted_answers.analysis,
            phase="analysis",
            prefixes=("US", "AC", "NFR"),
        ),
        _default(
            "QAEngineer",
            "plan",
            schema=TestPlan,
            renderer=render_plan,
            scripted=scripted_answers.test_plan,
            prefixes=("TC",),
            traces_to=("AC", "NFR"),
        ),
        _default(
            "SoftwareDeveloper",
            "design",
            schema=TechnicalDesign,
            renderer=render_design,
            scripted=scripted_answers.design,
            prefixes=("C", "R"),
            traces_to=("US",),
        ),
        _default(
            "Coordinator",
            "review",
            schema=DeliveryReview,
            renderer=render_review,
            scripted=scripted_answers.review,
            reviews=True,
            traces_to=("US", "AC", "NFR", "TC", "C", "R"),
        ),
    ]
)
