"""Task records: what a task asked for and where it stands, as a projection of its events.

A record changes only by applying its own events, in order, on the event writer's thread right before
they are stored together, so it always agrees with the stored events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

import orjson

from delivery_service.agents import AGENTS
from delivery_service.event_types import EVENT_FACTS, TERMINAL_EVENT_TYPES
from delivery_service.store.task_event import SYSTEM_AGENT, EventType, TaskEvent, utc_now_iso


class TaskStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens")

FINISHED_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})

# System `action` events that move a task between waiting for a worker and running.
_SCHEDULING_STATUS = {"queued": TaskStatus.QUEUED, "resumed": TaskStatus.RUNNING}


@dataclass(frozen=True)
class Deliverable:
    agent_name: str
    title: str
    content: str  # markdown, rendered from `data` when the answer had the deliverable's structure
    data: dict[str, Any] | None = None  # the structured deliverable (deliverables.schemas), JSON-ready


@dataclass(frozen=True)
class FollowUp:
    """What makes a task a follow-up: the completed task it revises, its thread and revision, the request,
    and a copy of the parent's deliverables it starts from (the parent may be purged before it runs)."""

    parent_task_id: str
    thread_id: str  # the first task's id
    revision: int  # 2, 3, ... in the order the thread's follow-ups were made
    request: str
    parent_deliverables: tuple[Deliverable, ...] = ()
    parent_revision: int = 0  # the parent's revision (0 in records stored before it was kept: `revision` - 1)

    @property
    def since(self) -> int:
        """The revision this one's changes are counted from."""
        return self.parent_revision or self.revision - 1

    def parent_deliverable(self, agent_name: str) -> Deliverable | None:
        return next((kept for kept in self.parent_deliverables if kept.agent_name == agent_name), None)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> FollowUp:
        kept = tuple(Deliverable(**deliverable) for deliverable in values.get("parent_deliverables", ()))
        return cls(**{**values, "parent_deliverables": kept})


@dataclass(frozen=True)
class WebhookTarget:
    """A URL that receives some of a task's webhook messages (store/outbox.py), fixed when the task is made."""

    url: str
    events: tuple[str, ...]  # message types, e.g. "task.completed"


@dataclass
class TaskRecord:
    """One task: its request, and the state its events have produced so far."""

    task_id: str
    requirement: str
    skip_confirmation: bool
    stream_tokens: bool
    priority: int
    model: dict[str, Any]
    owner: str | None = None
    status: TaskStatus = TaskStatus.QUEUED
    current_agent: str | None = None
    completed_steps: int = 0
    total_steps: int = field(default_factory=lambda: len(AGENTS))
    last_sequence: int = 0
    created_at: str = field(default_factory=utc_now_iso)
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    summary: str | None = None
    deliverables: list[Deliverable] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(USAGE_KEYS, 0))
    follow_up: FollowUp | None = None
    webhooks: tuple[WebhookTarget, ...] = ()
    gate: dict[str, Any] | None = None  # a completed task's release gate: {"status", "min_coverage"} (`end` event)
    waiver: dict[str, str] | None = None  # a person's waiver of that gate, {"reason", "at", "by"}: not an event

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def thread_id(self) -> str:
        """A task starts its own thread; a follow-up belongs to its parent's."""
        return self.follow_up.thread_id if self.follow_up else self.task_id

    @property
    def revision(self) -> int:
        return self.follow_up.revision if self.follow_up else 1

    @property
    def request(self) -> str:
        """What this revision asked for: the requirement, or the follow-up's request."""
        return self.follow_up.request if self.follow_up else self.requirement

    def apply(self, event: TaskEvent) -> bool:
        """Advance the record by one event of its stream (events arrive in sequence order).

        Returns whether anything beyond `last_sequence` changed: most events (deltas, thoughts, tool
        actions) only add to the stream, and the store need not rewrite the task for them.
        """
        self.last_sequence = event.sequence
        kind = event.event_type
        if kind is EventType.START:
            self.status = TaskStatus.RUNNING
            self.started_at = event.timestamp
        elif kind is EventType.AGENT_START:
            self.status = TaskStatus.RUNNING
            self.current_agent = event.agent_name
        elif kind is EventType.OUTPUT:
            self._keep_deliverable(event)
        elif kind is EventType.STEP_END:
            self.completed_steps = max(self.completed_steps, int(event.metadata.get("step", self.completed_steps + 1)))
            self._add_usage(event.metadata.get("usage"))
        elif kind is EventType.CONFIRMATION_REQUIRED:
            self.status = TaskStatus.AWAITING_CONFIRMATION
            self.current_agent = None
        elif kind is EventType.ACTION and event.agent_name == SYSTEM_AGENT:
            self.status = _SCHEDULING_STATUS.get(str(event.metadata.get("kind")), self.status)
        elif kind in TERMINAL_EVENT_TYPES:
            self.status = TaskStatus(EVENT_FACTS[kind].status)
            self.finished_at = event.timestamp
            self.current_agent = None
            if kind is EventType.END:
                self.summary = event.content
                gate = event.metadata.get("gate")
                self.gate = gate if isinstance(gate, dict) else None
            elif kind is EventType.ERROR:
                self.error = event.content
        else:
            return False
        return True

    def _keep_deliverable(self, event: TaskEvent) -> None:
        """Add an agent's deliverable; a revised one replaces the agent's earlier version."""
        title = str(event.metadata.get("title") or event.agent_name)
        data = event.metadata.get("data")
        deliverable = Deliverable(event.agent_name, title, event.content, data if isinstance(data, dict) else None)
        for index, kept in enumerate(self.deliverables):
            if kept.agent_name == event.agent_name:
                self.deliverables[index] = deliverable
                return
        self.deliverables.append(deliverable)

    def _add_usage(self, step_usage: object) -> None:
        """Add one step's token usage: a revised step adds its new calls."""
        if not isinstance(step_usage, dict):
            return
        for key in USAGE_KEYS:
            value = step_usage.get(key)
            if isinstance(value, int):
                self.usage[key] = self.usage.get(key, 0) + value

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes | str) -> TaskRecord:
        values = orjson.loads(data)
        values["status"] = TaskStatus(values["status"])
        values["deliverables"] = [Deliverable(**deliverable) for deliverable in values["deliverables"]]
        if values.get("follow_up"):
            values["follow_up"] = FollowUp.from_dict(values["follow_up"])
        values["webhooks"] = webhook_targets(values.get("webhooks", ()))
        return cls(**values)

    def snapshot(self) -> TaskRecord:
        """An independent copy of the current state, for `restore`."""
        return replace(self, deliverables=list(self.deliverables), usage=dict(self.usage))

    def restore(self, snapshot: TaskRecord) -> None:
        """Go back to the state of `snapshot`, when events applied since could not be stored."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(snapshot, name))


def webhook_targets(stored: list[dict[str, Any]] | tuple[()]) -> tuple[WebhookTarget, ...]:
    return tuple(WebhookTarget(target["url"], tuple(target["events"])) for target in stored)
