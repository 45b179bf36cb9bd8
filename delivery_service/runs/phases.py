"""The two phases of a task, wherever they run: an embedded worker thread or a Celery worker process.

A task runs in two phases: the *analysis* (ProductManager), then the *delivery*: a crew for the test
plan and the design (QAEngineer, SoftwareDeveloper), the traceability of the three documents computed
by the service and published as a System `action`, and a crew for the review (Coordinator), which is
given that traceability. `PhaseRunner.run` runs one phase against any `EventSink` and ends
it by publishing (the terminal event, or `confirmation_required`); `PhaseWork` is what one phase
hands to the next. The messages a task's control publishes (decisions, timeouts) are built here too,
so the embedded runner and the cluster say the same thing.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from delivery_service.agents import AGENT_NAMES
from delivery_service.runs.crew_execution import CrewFailed, CrewJob, CrewResult
from delivery_service.crew.events import EventSink
from delivery_service.crew.factory import (
    ANALYSIS_STEPS,
    PLANNING_STEPS,
    REVIEW_STEPS,
    Handover,
    Revision,
    delivery_summary,
)
from delivery_service.deliverables.traceability import Traceability, documents, must_gaps, trace
from delivery_service.llm.errors import describe_failure
from delivery_service.llm.providers import ModelInfo
from delivery_service.settings import Settings
from delivery_service.store.events import EventType

logger = logging.getLogger(__name__)


class Phase(enum.Enum):
    ANALYSIS = "analysis"
    DELIVERY = "delivery"


class PhaseOutcome(enum.Enum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    ENDED = "ended"


class CrewRunner(Protocol):
    def run(self, job: CrewJob, sink: EventSink) -> CrewResult: ...


@dataclass
class PhaseWork:
    """A task's request, and what its phases hand on: the analysis, revisions, feedback, token usage."""

    task_id: str
    requirement: str
    skip_confirmation: bool
    stream_tokens: bool
    revisions: int = 0
    analysis: str = ""
    analysis_data: dict[str, Any] | None = None  # the analysis as data, when the model gave its structure
    feedback: str | None = None  # the requester's feedback on `analysis`, for the next revision
    usage: dict[str, int] = field(default_factory=dict)
    worker: str | None = None  # the worker process running the phase (cluster), shown in `start`

    @property
    def revision(self) -> Revision | None:
        return None if self.feedback is None else Revision(analysis=self.analysis, feedback=self.feedback)


class PhaseRunner:
    """Runs one phase of a task on the calling thread; see the module docstring."""

    def __init__(self, settings: Settings, model: ModelInfo, crews: CrewRunner) -> None:
        self._settings = settings
        self._model = model
        self._crews = crews

    def run(self, work: PhaseWork, phase: Phase, sink: EventSink) -> PhaseOutcome:
        """One phase of a task (blocking); ends by publishing, or by asking for a decision."""
        if sink.terminated:
            return PhaseOutcome.ENDED
        try:
            if phase is Phase.ANALYSIS and work.revisions == 0:
                logger.info("task started on %s/%s", self._model.provider, self._model.model)
                worker = {"worker": work.worker} if work.worker else {}
                sink.publish_system(
                    EventType.START,
                    f"Task started on {self._model.provider} model {self._model.model}",
                    {"model": self._model.public(), "total_steps": len(AGENT_NAMES), "agents": list(AGENT_NAMES), **worker},
                )
            if phase is Phase.ANALYSIS:
                analysis = self._run_crew(work, sink, ANALYSIS_STEPS, revision=work.revision)
                work.analysis, work.analysis_data = analysis.last_output, analysis.data.get(ANALYSIS_STEPS[0])
                if not work.skip_confirmation:
                    self._ask_for_confirmation(work, sink)
                    return PhaseOutcome.AWAITING_CONFIRMATION
            planning = self._run_crew(work, sink, PLANNING_STEPS, analysis=work.analysis)
            handover = self._trace(work, planning, sink)
            review = self._run_crew(work, sink, REVIEW_STEPS, analysis=work.analysis, handover=handover)
            logger.info("task completed")
            summary = delivery_summary(review.last_output)
            sink.publish_system(EventType.END, summary, {"usage": work.usage, "deliverables": 4})
        except Exception as exc:
            if sink.terminated:
                return PhaseOutcome.ENDED
            failure = (
                exc.failure
                if isinstance(exc, CrewFailed)
                else describe_failure(exc, self._settings, self._model.endpoint or self._model.provider)
            )
            logger.warning("task failed: %s (%s)", failure.kind, type(exc).__name__)
            sink.publish_system(EventType.ERROR, failure.message, {"error_type": failure.kind})
        return PhaseOutcome.ENDED

    def _run_crew(self, work: PhaseWork, sink: EventSink, steps: tuple[int, ...], **inputs: Any) -> CrewResult:
        """One crew of a task (some of its steps), its token usage added to the task's."""
        job = CrewJob(work.task_id, work.requirement, work.stream_tokens, steps, **inputs)
        result = self._crews.run(job, sink)
        for key, value in result.usage.items():
            work.usage[key] = work.usage.get(key, 0) + value
        return result

    def _trace(self, work: PhaseWork, planning: CrewResult, sink: EventSink) -> Handover:
        """The documents' traceability, published for everyone and handed to the review."""
        found = documents(
            {
                "ProductManager": work.analysis_data,
                "QAEngineer": planning.data.get(PLANNING_STEPS[0]),
                "SoftwareDeveloper": planning.data.get(PLANNING_STEPS[1]),
            }
        )
        traceability = trace(found.analysis, found.test_plan, found.design)
        sink.publish_system(EventType.ACTION, traceability_summary(traceability), {"kind": "traceability", **traceability.model_dump()})
        return Handover(
            work="\n\n".join(planning.outputs[step] for step in PLANNING_STEPS),
            traceability=traceability.model_dump_json(),
            must_gaps=tuple(must_gaps(found.analysis, traceability)),
        )

    def _ask_for_confirmation(self, work: PhaseWork, sink: EventSink) -> None:
        left = self._settings.max_revisions - work.revisions
        question = (
            "The requirements analysis is ready for your review. Approve it to continue with the test plan, the "
            "technical design and the delivery review, or reject it with feedback to have it revised "
            f"({left} revision{'s' if left != 1 else ''} left)."
        )
        sink.publish_system(
            EventType.CONFIRMATION_REQUIRED,
            f"{question}\n\n{delivery_summary(work.analysis)[:1500]}",
            {
                "question": question,
                "revision": work.revisions,
                "max_revisions": self._settings.max_revisions,
                "timeout_seconds": self._settings.confirmation_timeout_seconds,
            },
        )


def traceability_summary(traceability: Traceability) -> str:
    """The traceability event's content, for people."""
    text = (
        f"Traceability: {traceability.covered} of {traceability.acceptance_criteria} acceptance criteria have "
        f"a test case ({traceability.coverage:.0%})."
    )
    if traceability.uncovered:
        text += f" Not covered: {', '.join(traceability.uncovered)}."
    if traceability.dangling:
        text += " References to nothing: " + ", ".join(f"{d['from']} → {d['to']}" for d in traceability.dangling) + "."
    if traceability.stories_without_component:
        text += f" Stories no component serves: {', '.join(traceability.stories_without_component)}."
    return text


# --- what control publishes ------------------------------------------------------------------------
def revisions_exhausted(task_id: str, revisions: int) -> str:
    return (
        f"The analysis of task {task_id} was already revised {revisions} times (MAX_REVISIONS). "
        "Approve it, or cancel the task and submit a clearer requirement."
    )


def decision(approved: bool, feedback: str, revision: int, max_revisions: int) -> tuple[str, dict[str, Any]]:
    """The `action` event (content, metadata) that resumes a task after a decision on its analysis."""
    if approved:
        return "The analysis was approved: the delivery continues.", {"kind": "resumed", "decision": "approved"}
    return (
        f"The analysis was rejected with feedback: the ProductManager revises it (revision {revision} of "
        f"{max_revisions}).",
        {"kind": "resumed", "decision": "rejected", "feedback": feedback, "revision": revision},
    )


CANCELLED_ON_REQUEST = ("The task was cancelled at the requester's request.", {"reason": "requested"})


def timed_out(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The `error` (content, metadata) of a task that ran past TASK_TIMEOUT_SECONDS."""
    return (
        f"The task ran longer than TASK_TIMEOUT_SECONDS={settings.task_timeout_seconds:g} s, so it was "
        "stopped. Raise TASK_TIMEOUT_SECONDS for long runs, or submit a smaller requirement.",
        {"error_type": "task_timeout"},
    )


def decision_expired(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The `cancelled` (content, metadata) of a task nobody confirmed within CONFIRMATION_TIMEOUT_SECONDS."""
    return (
        "No decision on the requirements analysis arrived within CONFIRMATION_TIMEOUT_SECONDS="
        f"{settings.confirmation_timeout_seconds:g} s, so the task was cancelled. Submit it again, "
        "or start it with skip_confirmation: true.",
        {"reason": "confirmation_timeout"},
    )


def worker_lost(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The `error` (content, metadata) of a task whose worker stopped renewing its lease (cluster)."""
    return (
        "The worker running this task's crew stopped answering (no sign of life for WORKER_LEASE_SECONDS="
        f"{settings.worker_lease_seconds:g} s) before the crew finished, so the task stopped. What it produced so "
        "far is kept; submit the requirement again. If it keeps happening, check the workers' logs and memory.",
        {"error_type": "worker_died"},
    )
