"""Builds a fresh four-agent crew per task and turns its CrewAI events into the task's events.

Routing: CrewAI's event bus is one object per process and its handlers see every crew's events, in
no guaranteed order. A *stream sink* (`crewai.events.stream_context.add_stream_sink`) instead lives
in a contextvar: it is called synchronously, in order, in the emitting context of this run only,
and CrewAI copies the context into its helper threads. So each run registers its own
`CrewEventsHandler` as a sink around `kickoff()`, and every event it sees belongs to its task.

The handler must stay a quick hand-off: it only builds slim events and publishes them to the
task's stream, which never blocks.
"""

from __future__ import annotations

import re
from typing import Any

from agents_config import (
    AGENTS,
    AGENTS_BY_ROLE,
    TASK_TEMPLATES,
    AgentSpec,
    as_prompt_data,
    requirement_language,
)
from crewai_runtime import crewai
from crewai.agents.parser import AgentAction, AgentFinish
from crewai.events.stream_context import add_stream_sink, reset_stream_sinks
from crewai.events.types.llm_events import LLMCallCompletedEvent, LLMStreamChunkEvent
from crewai.events.types.logging_events import AgentLogsExecutionEvent
from crewai.events.types.task_events import TaskCompletedEvent, TaskStartedEvent
from crewai.events.types.tool_usage_events import ToolUsageStartedEvent
from crewai.hooks import HookAborted
from stream_manager import TaskStream
from task_events import EventType

TOTAL_STEPS = len(AGENTS)
_SUMMARY_HEADING = re.compile(r"^#{1,6}\s*(summary|总结|摘要|概要)\b.*$", re.IGNORECASE | re.MULTILINE)
_NEXT_HEADING = re.compile(r"^#{1,6}\s", re.MULTILINE)
_THOUGHT_LABEL = re.compile(r"^\s*thought\s*:\s*", re.IGNORECASE)
_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")


class CrewEventsHandler:
    """Maps one crew run's CrewAI events to task events on its stream.

    Every step yields `agent_start`, `thought`, an `action` for the hand-off of earlier deliverables,
    optional `delta`s (when the task asked for tokens), the model's own reasoning as another
    `thought` when it gives one, then `output` and `step_end`.

    To add behaviour (forward outputs to a chat room, count tokens per agent...), subclass it,
    override the `on_*` hooks, call `super()` so the stream still gets its events, and point the
    CREW_EVENTS_HANDLER setting at your class (`package.module:ClassName`).
    """

    def __init__(self, stream: TaskStream, *, stream_tokens: bool, step_by_task_id: dict[str, int]) -> None:
        self.stream = stream
        self.stream_tokens = stream_tokens
        self._step_by_task_id = step_by_task_id
        self._usage: dict[str, dict[str, int]] = {}

    # --- hooks ------------------------------------------------------------------------------------
    def on_agent_start(self, agent: AgentSpec, step: int) -> None:
        metadata = {"step": step, "total_steps": TOTAL_STEPS, "role": agent.role, "title": agent.deliverable_title}
        self.stream.publish(agent.name, EventType.AGENT_START, f"{agent.role} started: {agent.deliverable_title}", metadata)
        self.on_agent_thought(agent, agent.approach, source="plan")
        earlier = [spec.deliverable_title for spec in AGENTS[: step - 1]]
        if earlier:
            self.on_agent_action(agent, f"Reads the hand-off: {', '.join(earlier)}", {"kind": "handoff", "inputs": earlier})

    def on_agent_thought(self, agent: AgentSpec, text: str, *, source: str = "model") -> None:
        self.stream.publish(agent.name, EventType.THOUGHT, text, {"source": source})

    def on_agent_action(self, agent: AgentSpec, description: str, metadata: dict[str, Any]) -> None:
        self.stream.publish(agent.name, EventType.ACTION, description, metadata)

    def on_agent_token(self, agent: AgentSpec, text: str) -> None:
        self.stream.publish(agent.name, EventType.DELTA, text)

    def on_agent_output(self, agent: AgentSpec, step: int, content: str) -> None:
        metadata = {"step": step, "total_steps": TOTAL_STEPS, "title": agent.deliverable_title}
        self.stream.publish(agent.name, EventType.OUTPUT, content, metadata)

    def on_step_end(self, agent: AgentSpec, step: int) -> None:
        metadata: dict[str, Any] = {"step": step, "total_steps": TOTAL_STEPS}
        if agent.name in self._usage:
            metadata["usage"] = self._usage[agent.name]
        self.stream.publish(agent.name, EventType.STEP_END, f"{agent.role} finished step {step} of {TOTAL_STEPS}", metadata)

    # --- CrewAI events ----------------------------------------------------------------------------
    def __call__(self, source: Any, event: Any) -> None:
        """The stream sink: called by CrewAI for every event of this run, in order.

        Once the task has ended from outside (the server stopping), it stops the crew at its next
        event: CrewAI lets HookAborted through without retrying.
        """
        if self.stream.terminated:
            raise HookAborted("the task has already ended")
        if isinstance(event, LLMStreamChunkEvent):
            if self.stream_tokens and event.chunk and (agent := AGENTS_BY_ROLE.get(event.agent_role or "")):
                self.on_agent_token(agent, event.chunk)
        elif isinstance(event, TaskStartedEvent):
            if (step := self._step(event.task_id)) is not None:
                self.on_agent_start(AGENTS[step - 1], step)
        elif isinstance(event, AgentLogsExecutionEvent):
            self._on_formatted_answer(AGENTS_BY_ROLE.get(event.agent_role), event.formatted_answer)
        elif isinstance(event, ToolUsageStartedEvent):
            if agent := AGENTS_BY_ROLE.get(event.agent_role or ""):
                self.on_agent_action(agent, f"Uses tool {event.tool_name}", {"kind": "tool", "tool": event.tool_name})
        elif isinstance(event, LLMCallCompletedEvent):
            self._add_usage(AGENTS_BY_ROLE.get(event.agent_role or ""), event.usage)
        elif isinstance(event, TaskCompletedEvent):
            if (step := self._step(event.task_id)) is not None:
                agent = AGENTS[step - 1]
                self.on_agent_output(agent, step, event.output.raw)
                self.on_step_end(agent, step)

    def _step(self, crewai_task_id: str | None) -> int | None:
        return self._step_by_task_id.get(str(crewai_task_id))

    def _on_formatted_answer(self, agent: AgentSpec | None, answer: Any) -> None:
        if agent is None or not isinstance(answer, (AgentAction, AgentFinish)):
            return
        thought = _THOUGHT_LABEL.sub("", answer.thought).strip()
        if thought:
            self.on_agent_thought(agent, thought)
        if isinstance(answer, AgentAction):
            self.on_agent_action(agent, f"Uses tool {answer.tool}", {"kind": "tool", "tool": answer.tool})

    def _add_usage(self, agent: AgentSpec | None, usage: dict[str, Any] | None) -> None:
        if agent is None or not usage:
            return
        totals = self._usage.setdefault(agent.name, dict.fromkeys(_USAGE_KEYS, 0))
        for key in _USAGE_KEYS:
            value = usage.get(key)
            if isinstance(value, int):
                totals[key] += value

    @property
    def usage(self) -> dict[str, int]:
        """Token usage of the whole run, summed over agents."""
        return {key: sum(agent_usage[key] for agent_usage in self._usage.values()) for key in _USAGE_KEYS}


def build_crew(requirement: str, llm: Any) -> tuple[crewai.Crew, dict[str, int]]:
    """A new sequential crew for one requirement, and the step number (1-4) of each CrewAI task id.

    Each agent's task gets every earlier task as context, so later agents see earlier deliverables.
    """
    language = requirement_language(requirement)
    templates = TASK_TEMPLATES["full"]
    agents: list[crewai.Agent] = []
    tasks: list[crewai.Task] = []
    for spec in AGENTS:
        agent = crewai.Agent(
            role=spec.role,
            goal=spec.goal,
            backstory=spec.backstory,
            llm=llm,
            allow_delegation=False,
            max_retry_limit=0,
            max_iter=3,
            verbose=False,
        )
        template = templates[spec.name]
        task = crewai.Task(
            description=template.description.format(requirement=as_prompt_data(requirement), language=language),
            expected_output=template.expected_output,
            agent=agent,
            context=list(tasks),
        )
        agents.append(agent)
        tasks.append(task)
    crew = crewai.Crew(agents=agents, tasks=tasks, process=crewai.Process.sequential, verbose=False)
    return crew, {str(task.id): step for step, task in enumerate(tasks, start=1)}


def run_crew(crew: crewai.Crew, handler: CrewEventsHandler) -> Any:
    """Kick the crew off with `handler` as this run's stream sink (blocking: call from a worker thread)."""
    token = add_stream_sink(handler)
    try:
        return crew.kickoff()
    finally:
        reset_stream_sinks(token)


def delivery_summary(review: str) -> str:
    """The summary section of the Coordinator's review, or the whole review when it has none."""
    heading = _SUMMARY_HEADING.search(review)
    if heading is None:
        return review.strip()
    rest = review[heading.end() :]
    next_heading = _NEXT_HEADING.search(rest)
    section = rest[: next_heading.start()] if next_heading else rest
    return section.strip() or review.strip()
