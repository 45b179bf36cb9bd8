"""Turns one crew run's CrewAI events into the task's events: `CrewEventsHandler`, publishing to an `EventSink`.

The handler is a CrewAI *stream sink*, not an event-bus handler: the bus is process-wide and unordered,
while a sink lives in a contextvar (copied into CrewAI's helper threads) and sees only this run's events,
in order. It must stay a quick hand-off: publishing to the task's stream never blocks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from crewai.agents.parser import AgentAction, AgentFinish
from crewai.events.types.llm_events import (
    LLMCallCompletedEvent,
    LLMCallFailedEvent,
    LLMCallStartedEvent,
    LLMStreamChunkEvent,
)
from crewai.events.types.logging_events import AgentLogsExecutionEvent
from crewai.events.types.task_events import TaskCompletedEvent, TaskStartedEvent
from crewai.events.types.tool_usage_events import ToolUsageStartedEvent
from crewai.hooks import HookAborted

from delivery_service.agents import AGENTS, AgentSpec
from delivery_service.crew.structure import StructuredAnswer
from delivery_service.crewai_runtime import crewai  # noqa: F401  (CrewAI must be prepared before its submodules)
from delivery_service.llm.retry import Retry
from delivery_service.observability.metrics import record_llm_call
from delivery_service.store.records import USAGE_KEYS
from delivery_service.store.task_event import SYSTEM_AGENT, EventType
from delivery_service.task_streams import EventSink

_THOUGHT_LABEL = re.compile(r"^\s*thought\s*:\s*", re.IGNORECASE)
# The thought CrewAI's parser gives an answer that is not in its "Thought: ... Final Answer:" format
# (crewai.utilities.agent_utils.format_answer). The whole answer is still taken as the agent's output,
# so nothing failed: plain markdown is what most models, and the embedded one, write.
_PARSER_FALLBACK_THOUGHT = "Failed to parse LLM response"


class CrewEventsHandler:
    """Maps one crew run's CrewAI events to task events on its stream.

    Token chunks are joined into at most one `delta` per agent per `delta_interval_seconds`, without losing
    or reordering text. `step_by_task_id` maps the crew's CrewAI task ids to steps (`AGENTS.step`).

    To add behaviour, subclass it, override the `on_*` hooks, call `super()` so the stream still gets its
    events, and point the CREW_EVENTS_HANDLER setting at your class (`package.module:ClassName`).
    """

    def __init__(
        self,
        stream: EventSink,
        *,
        stream_tokens: bool,
        delta_interval_seconds: float = 0.05,
        model_labels: tuple[str, str] = ("unknown", "unknown"),
        llm_calls: Callable[[str, str, str, float, dict[str, Any] | None], None] = record_llm_call,
    ) -> None:
        self.stream = stream
        self.model_labels = model_labels
        self._llm_calls = llm_calls
        self._call_started: dict[str, float] = {}
        self.stream_tokens = stream_tokens
        self.step_by_task_id: dict[str, int] = {}
        self.current_agent: AgentSpec | None = None
        self._delta_interval = delta_interval_seconds
        self._pending_tokens: dict[str, list[str]] = {}
        self._last_delta: dict[str, float] = {}
        self._usage: dict[str, dict[str, int]] = {}
        self._data_by_step: dict[int, dict[str, Any] | None] = {}
        self._attempts_by_step: dict[int, int] = {}

    # --- hooks ------------------------------------------------------------------------------------
    def on_agent_start(self, agent: AgentSpec, step: int) -> None:
        self.current_agent = agent
        metadata = _step_metadata(step, role=agent.role, title=agent.title)
        self.stream.publish(agent.name, EventType.AGENT_START, f"{agent.role} started: {agent.title}", metadata)
        self.on_agent_thought(agent, agent.approach, source="plan")
        earlier = [spec.title for spec in AGENTS[: step - 1]]
        if earlier:
            self.on_agent_action(
                agent, f"Reads the hand-off: {', '.join(earlier)}", {"kind": "handoff", "inputs": earlier}
            )

    def on_agent_thought(self, agent: AgentSpec, text: str, *, source: str = "model") -> None:
        self.stream.publish(agent.name, EventType.THOUGHT, text, {"source": source})

    def on_agent_action(self, agent: AgentSpec, description: str, metadata: dict[str, Any]) -> None:
        self.stream.publish(agent.name, EventType.ACTION, description, metadata)

    def on_agent_token(self, agent: AgentSpec, text: str) -> None:
        """Text the model wrote, coalesced: at most one call per agent per DELTA_INTERVAL_MS."""
        self.stream.publish(agent.name, EventType.DELTA, text)

    def on_llm_retry(self, retry: Retry) -> None:
        """A model request failed for a passing reason and is about to be sent again (any thread)."""
        agent_name = self.current_agent.name if self.current_agent else SYSTEM_AGENT
        self.stream.publish(
            agent_name,
            EventType.ACTION,
            f"The model request failed ({retry.reason}); retry {retry.attempt} of {retry.max_retries} "
            f"in {retry.delay_seconds:.1f} s.",
            {"kind": "llm_retry", **asdict(retry), "delay_seconds": round(retry.delay_seconds, 3)},
        )

    def on_agent_output(self, agent: AgentSpec, step: int, content: str) -> None:
        metadata = _step_metadata(step, title=agent.title)
        if (data := self._data_by_step.get(step)) is not None:
            metadata["data"] = data
        if step in self._attempts_by_step:
            metadata["attempts"] = self._attempts_by_step[step]
        self.stream.publish(agent.name, EventType.OUTPUT, content, metadata)

    def _take_structure(self, agent: AgentSpec, step: int, task: Any) -> None:
        """The step's data from its `StructuredAnswer`; a System action when the answer stayed text."""
        answer = getattr(getattr(task, "guardrail", None), "__self__", None)
        if not isinstance(answer, StructuredAnswer):
            return
        self._data_by_step[step] = answer.public_data()
        self._attempts_by_step[step] = answer.attempts
        if answer.fallback_errors is not None:
            problems = "; ".join(answer.fallback_errors[:3])
            self.stream.publish_system(
                EventType.ACTION,
                f"The {agent.title.lower()} is kept as the model wrote it: its answer did not fit "
                f"the schema after one repair request ({problems}). Its structured data is missing.",
                {"kind": "structure_fallback", "agent": agent.name, "step": step, "errors": answer.fallback_errors},
            )

    def on_step_end(self, agent: AgentSpec, step: int) -> None:
        metadata = _step_metadata(step)
        if agent.name in self._usage:
            metadata["usage"] = self._usage[agent.name]
        self.stream.publish(
            agent.name, EventType.STEP_END, f"{agent.role} finished step {step} of {len(AGENTS)}", metadata
        )

    # --- CrewAI events ----------------------------------------------------------------------------
    def __call__(self, source: Any, event: Any) -> None:
        """The stream sink. Once the task has ended from outside, it stops the crew at its next event
        (CrewAI lets HookAborted through without retrying)."""
        if self.stream.terminated:
            raise HookAborted("the task has already ended")
        if isinstance(event, LLMStreamChunkEvent):
            if self.stream_tokens and event.chunk and (agent := AGENTS.by_role(event.agent_role)):
                self._buffer_token(agent, event.chunk)
        elif isinstance(event, TaskStartedEvent):
            if (step := self._step(event.task_id)) is not None:
                self.on_agent_start(AGENTS.at(step), step)
        elif isinstance(event, AgentLogsExecutionEvent):
            self._on_formatted_answer(AGENTS.by_role(event.agent_role), event.formatted_answer)
        elif isinstance(event, ToolUsageStartedEvent):
            if agent := AGENTS.by_role(event.agent_role):
                self.on_agent_action(agent, f"Uses tool {event.tool_name}", {"kind": "tool", "tool": event.tool_name})
        elif isinstance(event, LLMCallStartedEvent):
            self._call_started[event.call_id] = time.monotonic()
        elif isinstance(event, (LLMCallCompletedEvent, LLMCallFailedEvent)):
            self._count_llm_call(event)
            if agent := AGENTS.by_role(event.agent_role):
                self._flush_tokens(agent)
                if isinstance(event, LLMCallCompletedEvent):
                    self._add_usage(agent, event.usage)
        elif isinstance(event, TaskCompletedEvent):
            if (step := self._step(event.task_id)) is not None:
                agent = AGENTS.at(step)
                self._take_structure(agent, step, event.task)
                self.on_agent_output(agent, step, event.output.raw)
                self.on_step_end(agent, step)

    def _step(self, crewai_task_id: str | None) -> int | None:
        return self.step_by_task_id.get(str(crewai_task_id))

    def _count_llm_call(self, event: LLMCallCompletedEvent | LLMCallFailedEvent) -> None:
        started = self._call_started.pop(event.call_id, time.monotonic())
        completed = isinstance(event, LLMCallCompletedEvent)
        usage = event.usage if isinstance(event, LLMCallCompletedEvent) else None
        self._llm_calls(*self.model_labels, "ok" if completed else "failed", time.monotonic() - started, usage)

    def _buffer_token(self, agent: AgentSpec, chunk: str) -> None:
        self._pending_tokens.setdefault(agent.name, []).append(chunk)
        if time.monotonic() - self._last_delta.get(agent.name, 0.0) >= self._delta_interval:
            self._flush_tokens(agent)

    def _flush_tokens(self, agent: AgentSpec) -> None:
        pending = self._pending_tokens.pop(agent.name, [])
        if pending:
            self.on_agent_token(agent, "".join(pending))
            self._last_delta[agent.name] = time.monotonic()

    def _on_formatted_answer(self, agent: AgentSpec | None, answer: Any) -> None:
        if agent is None or not isinstance(answer, (AgentAction, AgentFinish)):
            return
        thought = _THOUGHT_LABEL.sub("", answer.thought).strip()
        if thought and thought != _PARSER_FALLBACK_THOUGHT:
            self.on_agent_thought(agent, thought)
        if isinstance(answer, AgentAction):
            self.on_agent_action(agent, f"Uses tool {answer.tool}", {"kind": "tool", "tool": answer.tool})

    def _add_usage(self, agent: AgentSpec, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        totals = self._usage.setdefault(agent.name, dict.fromkeys(USAGE_KEYS, 0))
        for key in USAGE_KEYS:
            value = usage.get(key)
            if isinstance(value, int):
                totals[key] += value

    @property
    def data_by_step(self) -> dict[int, dict[str, Any] | None]:
        """Each finished step's structured deliverable (None where the answer stayed text)."""
        return dict(self._data_by_step)

    @property
    def usage(self) -> dict[str, int]:
        """Token usage of the whole run, summed over agents."""
        return {key: sum(agent_usage[key] for agent_usage in self._usage.values()) for key in USAGE_KEYS}


def _step_metadata(step: int, **extra: Any) -> dict[str, Any]:
    return {"step": step, "total_steps": len(AGENTS), **extra}
