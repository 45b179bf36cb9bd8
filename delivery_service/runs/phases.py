"""The two phases of a task, wherever they run: an embedded worker thread or a Celery worker process.

The *analysis*, then the *delivery*: a crew for the planning documents, their traceability and quality
findings with the release gate (computed by the service, published as two `action`s), and a crew for the
review, given both; the `end` event carries the gate of the whole delivery. A follow-up
begins with the first agent's triage: the agents before the one it names are carried over from the parent
without a model call.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from delivery_service.agents import AGENTS
from delivery_service.crew.factory import FollowUpContext, Handover, Revision, delivery_summary
from delivery_service.deliverables.gate import GatePolicy, Quality, assess, assess_quality, counted
from delivery_service.deliverables.render import changes_section
from delivery_service.deliverables.traceability import Traceability
from delivery_service.llm.model_errors import describe_failure
from delivery_service.llm.providers import model_info
from delivery_service.prompts import is_chinese
from delivery_service.runs.crew_execution import (
    CrewFailed,
    CrewJob,
    CrewResult,
    ProcessCrews,
    load_handler_class,
    run_job,
)
from delivery_service.settings import Settings
from delivery_service.store.records import Deliverable, FollowUp, TaskRecord
from delivery_service.store.task_event import EventType
from delivery_service.task_streams import EventSink

logger = logging.getLogger(__name__)

UNTRIAGED_REASON = "The request could not be triaged, so every agent works on it again."


class Phase(enum.Enum):
    ANALYSIS = "analysis"
    DELIVERY = "delivery"


class PhaseOutcome(enum.Enum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    ENDED = "ended"


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
    follow_up: FollowUp | None = None
    # A follow-up's first agent to run again (its triage); the ones before it are carried over. None: all run.
    rerun_from: str | None = None

    @classmethod
    def of(cls, record: TaskRecord) -> PhaseWork:
        """The work of a task that has not run yet."""
        return cls(
            record.task_id,
            record.requirement,
            record.skip_confirmation,
            record.stream_tokens,
            follow_up=record.follow_up,
        )

    @property
    def revision(self) -> Revision | None:
        return None if self.feedback is None else Revision(analysis=self.analysis, feedback=self.feedback)

    def carried_over(self, step: int) -> Deliverable | None:
        """The parent's deliverable of `step`'s agent when this follow-up keeps it as it is, else None."""
        if self.follow_up is None or self.rerun_from is None or AGENTS.step(self.rerun_from) <= step:
            return None
        return self.follow_up.parent_deliverable(AGENTS.at(step).name)

    def follow_up_context(self) -> FollowUpContext | None:
        """The request and the previous revision's documents, for the agents of a follow-up."""
        if self.follow_up is None:
            return None
        previous = {
            kept.agent_name: json.dumps(kept.data, ensure_ascii=False) if kept.data is not None else kept.content
            for kept in self.follow_up.parent_deliverables
        }
        return FollowUpContext(self.follow_up.request, previous)


class PhaseRunner:
    """Runs one phase of a task on the calling thread, each crew on it too or in a child process."""

    def __init__(self, settings: Settings, crews_in_processes: bool = False) -> None:
        self._settings = settings
        self._model = model_info(settings)
        self._gate_policy = GatePolicy(min_coverage=settings.gate_min_coverage)
        labels = (self._model.provider, self._model.model)
        load_handler_class(settings.crew_events_handler)  # a wrong CREW_EVENTS_HANDLER fails at start
        self._crews: Callable[[CrewJob, EventSink], CrewResult] = (
            ProcessCrews(settings, labels).run
            if crews_in_processes
            else partial(run_job, settings=settings, model_labels=labels)
        )

    def run(self, work: PhaseWork, phase: Phase, sink: EventSink) -> PhaseOutcome:
        """One phase of a task (blocking); ends by publishing, or by asking for a decision."""
        if sink.terminated:
            return PhaseOutcome.ENDED
        try:
            if phase is Phase.ANALYSIS and work.revisions == 0:
                self._announce(work, sink)
                if work.follow_up is not None:
                    self._triage(work, sink)
            if phase is Phase.ANALYSIS:
                first = AGENTS.analysis_steps[0]
                kept = work.carried_over(first)
                if kept is not None:
                    self._carry_over(sink, first, kept)
                    work.analysis, work.analysis_data = kept.content, kept.data
                else:
                    analysis = self._run_crew(
                        work, sink, AGENTS.analysis_steps, revision=work.revision, follow_up=work.follow_up_context()
                    )
                    work.analysis, work.analysis_data = analysis.last_output, analysis.data.get(first)
                    if not work.skip_confirmation:
                        self._ask_for_confirmation(work, sink)
                        return PhaseOutcome.AWAITING_CONFIRMATION
            planning = self._plan(work, sink)
            current = {AGENTS.at(AGENTS.analysis_steps[0]).name: work.analysis_data}
            current |= {AGENTS.at(step).name: planning.data.get(step) for step in AGENTS.planning_steps}
            handover = self._trace(work, planning, current, sink)
            review = self._run_crew(
                work,
                sink,
                AGENTS.review_steps,
                analysis=work.analysis,
                handover=handover,
                follow_up=work.follow_up_context(),
            )
            logger.info("task completed")
            current |= {AGENTS.at(step).name: review.data.get(step) for step in AGENTS.review_steps}
            final = assess(AGENTS.documents(current), self._gate_policy, chinese=is_chinese(work.requirement))
            gate = {"status": final.quality.gate.status, "min_coverage": self._gate_policy.min_coverage}
            summary = delivery_summary(review.last_output)
            sink.publish_system(
                EventType.END, summary, {"usage": work.usage, "deliverables": len(AGENTS), "gate": gate}
            )
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
        result = self._crews(CrewJob(work.task_id, work.requirement, work.stream_tokens, steps, **inputs), sink)
        for key, value in result.usage.items():
            work.usage[key] = work.usage.get(key, 0) + value
        return result

    def _announce(self, work: PhaseWork, sink: EventSink) -> None:
        """The task's `start` event: the model, the agents, and for a follow-up its place in the thread."""
        logger.info("task started on %s/%s", self._model.provider, self._model.model)
        metadata: dict[str, Any] = {
            "model": self._model.public(),
            "total_steps": len(AGENTS),
            "agents": list(AGENTS.names),
            "language": "zh" if is_chinese(work.requirement) else "en",
        }
        if work.worker:
            metadata["worker"] = work.worker
        if work.follow_up is not None:
            follow_up = work.follow_up
            metadata.update(
                parent_task_id=follow_up.parent_task_id, thread_id=follow_up.thread_id, revision=follow_up.revision
            )
        sink.publish_system(
            EventType.START, f"Task started on {self._model.provider} model {self._model.model}", metadata
        )

    def _triage(self, work: PhaseWork, sink: EventSink) -> None:
        """The first agent classifies the follow-up and names the first agent to run again."""
        triage = self._run_crew(work, sink, (), follow_up=work.follow_up_context(), triage=True).data.get(0)
        if triage is None:
            triage = {"classification": "change", "rerun_from": AGENTS[0].name, "reason": UNTRIAGED_REASON}
        work.rerun_from = str(triage["rerun_from"])
        kept = AGENTS.names[: AGENTS.step(work.rerun_from) - 1]
        text = f"Triage: {triage['classification']}; the agents run again from the {work.rerun_from}."
        if kept:
            text += f" Carried over: {', '.join(kept)}."
        sink.publish_system(EventType.ACTION, f"{text} {triage['reason']}", {"kind": "triage", **triage})

    def _carry_over(self, sink: EventSink, step: int, kept: Deliverable) -> None:
        """Publish the parent's deliverable of `step` as this revision's, without a model call."""
        agent = AGENTS.at(step)
        metadata: dict[str, Any] = {"step": step, "total_steps": len(AGENTS), "title": kept.title, "carried_over": True}
        if kept.data is not None:
            metadata["data"] = kept.data
        sink.publish(agent.name, EventType.OUTPUT, kept.content, metadata)
        sink.publish(
            agent.name,
            EventType.STEP_END,
            f"{agent.role}: step {step} of {len(AGENTS)} carried over from the previous revision",
            {"step": step, "total_steps": len(AGENTS), "carried_over": True},
        )

    def _plan(self, work: PhaseWork, sink: EventSink) -> CrewResult:
        """The test plan and the design: carried over or written again, in step order."""
        kept = {step: work.carried_over(step) for step in AGENTS.planning_steps}
        for step, deliverable in kept.items():
            if deliverable is not None:
                self._carry_over(sink, step, deliverable)
        to_run = tuple(step for step, deliverable in kept.items() if deliverable is None)
        carried = "\n\n".join(deliverable.content for deliverable in kept.values() if deliverable is not None)
        follow_up = work.follow_up_context()
        if follow_up is not None and carried:
            follow_up = replace(follow_up, kept=carried)  # the design is given the kept test plan
        planning = (
            self._run_crew(work, sink, to_run, analysis=work.analysis, follow_up=follow_up)
            if to_run
            else CrewResult({})
        )
        for step, deliverable in kept.items():
            if deliverable is not None:
                planning.outputs[step], planning.data[step] = deliverable.content, deliverable.data
        return planning

    def _trace(self, work: PhaseWork, planning: CrewResult, current: dict[str, Any], sink: EventSink) -> Handover:
        """The documents' traceability, then their findings and gate, published for everyone and handed to
        the review (with a follow-up's changes since the previous revision)."""
        found = AGENTS.documents(current)
        traceability = found.traceability()
        sink.publish_system(
            EventType.ACTION, traceability_summary(traceability), {"kind": "traceability", **traceability.model_dump()}
        )
        quality = assess_quality(found, traceability, self._gate_policy, chinese=is_chinese(work.requirement))
        sink.publish_system(EventType.ACTION, quality_summary(quality), {"kind": "quality", **quality.model_dump()})
        changes, appendix = None, ""
        if work.follow_up is not None:
            previous = {kept.agent_name: kept.data for kept in work.follow_up.parent_deliverables}
            computed = AGENTS.changes(previous, current)
            changes = computed.model_dump_json()
            appendix = changes_section(computed.model_dump(), work.follow_up.since, is_chinese(work.requirement))
        return Handover(
            work="\n\n".join(planning.outputs[step] for step in AGENTS.planning_steps),
            traceability=traceability.model_dump_json(),
            quality=quality.model_dump_json(),
            blocking=tuple(quality.gate.reasons) if quality.gate.status == "fail" else (),
            appendix=appendix,
            changes=changes,
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
            f"{question}\n\n{work.analysis.strip()}",
            {
                "question": question,
                "analysis": work.analysis,  # the whole analysis, as markdown, for a client to render
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


def quality_summary(quality: Quality) -> str:
    """The quality event's content, for people."""
    text = f"Quality: {counted(quality.counts)}; release gate {quality.gate.status}."
    return " ".join([text, *quality.gate.reasons]) if quality.gate.status != "pass" else text
