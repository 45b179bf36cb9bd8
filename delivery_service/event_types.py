"""The event types of a task's stream (docs/api.md, "Event types") and the facts about each, in one table.

Plain data, read by the store's projection, the webhook outbox, the metrics, the command line (which
imports none of the service) and, through `GET /api/agents`, the test UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class EventType(str, Enum):
    """The `event_type` of an event (docs/api.md, "Event types")."""

    START = "start"
    AGENT_START = "agent_start"
    THOUGHT = "thought"
    ACTION = "action"
    OUTPUT = "output"
    STEP_END = "step_end"
    DELTA = "delta"
    CONFIRMATION_REQUIRED = "confirmation_required"
    END = "end"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class EventFacts:
    terminal: bool = False  # it ends the task: exactly one terminal event, last
    status: str | None = None  # the task status the event sets (a value of `store.records.TaskStatus`)
    message_type: str | None = None  # the webhook message it causes


EVENT_FACTS: dict[EventType, EventFacts] = {
    EventType.START: EventFacts(status="running"),
    EventType.AGENT_START: EventFacts(status="running"),
    EventType.THOUGHT: EventFacts(),
    EventType.ACTION: EventFacts(),
    EventType.OUTPUT: EventFacts(),
    EventType.STEP_END: EventFacts(status="running", message_type="task.step_completed"),
    EventType.DELTA: EventFacts(),
    EventType.CONFIRMATION_REQUIRED: EventFacts(
        status="awaiting_confirmation", message_type="task.awaiting_confirmation"
    ),
    EventType.END: EventFacts(terminal=True, status="completed", message_type="task.completed"),
    EventType.ERROR: EventFacts(terminal=True, status="failed", message_type="task.failed"),
    EventType.CANCELLED: EventFacts(terminal=True, status="cancelled", message_type="task.cancelled"),
}

TERMINAL_EVENT_TYPES = frozenset(kind for kind, facts in EVENT_FACTS.items() if facts.terminal)
# The status each terminal event ends a task in, by the event type's value.
ENDING_STATUS: dict[str, str] = {kind.value: str(facts.status) for kind, facts in EVENT_FACTS.items() if facts.terminal}
