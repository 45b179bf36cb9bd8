"""A user's CrewEventsHandler subclass, loaded by the service through CREW_EVENTS_HANDLER in a test."""

from __future__ import annotations

from agents_config import AgentSpec
from crew_factory import CrewEventsHandler
from delivery_service.store.task_event import EventType


class WordCountingHandler(CrewEventsHandler):
    """Adds an `action` after each deliverable with its word count."""

    def on_agent_output(self, agent: AgentSpec, step: int, content: str) -> None:
        super().on_agent_output(agent, step, content)
        self.stream.publish(agent.name, EventType.ACTION, f"{len(content.split())} words", {"kind": "word_count"})
