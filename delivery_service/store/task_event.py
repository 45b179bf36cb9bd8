"""The event a task's stream carries (docs/api.md's wire format), serialised once into an SSE frame that every
subscriber of the task shares."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, computed_field

from delivery_service.event_types import TERMINAL_EVENT_TYPES, EventType

SYSTEM_AGENT = "System"


def iso_utc(moment: datetime) -> str:
    """A UTC time as ISO 8601 with microseconds and a `Z` suffix (the API's timestamp format)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


_current_second: tuple[int, str] = (0, "")


def utc_now_iso() -> str:
    """`iso_utc` of the present, on every event's path: the date and time part is built once a second."""
    global _current_second
    now = time.time()
    second = int(now)
    if _current_second[0] != second:
        _current_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_current_second[1]}.{int((now - second) * 1_000_000):06d}Z"


class TaskEvent(BaseModel):
    """One event of a task's stream, exactly as clients receive it in an SSE `data:` line."""

    model_config = ConfigDict(frozen=True)

    task_id: str
    sequence: int = Field(ge=1, description="1, 2, 3... per task; also the SSE `id:`")
    agent_name: str = Field(description="ProductManager, QAEngineer, SoftwareDeveloper, Coordinator or System")
    event_type: EventType
    content: str
    timestamp: str = Field(description="UTC, ISO 8601, ending in Z")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def agent(self) -> str:
        """Alias of `agent_name` kept for existing clients."""
        return self.agent_name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def type(self) -> EventType:
        """Alias of `event_type` kept for existing clients."""
        return self.event_type

    @property
    def is_terminal(self) -> bool:
        return self.event_type in TERMINAL_EVENT_TYPES


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """An event with its JSON payload and SSE frame, serialised once for the store and every subscriber."""

    event: TaskEvent
    payload: str
    frame: bytes

    @classmethod
    def of(cls, event: TaskEvent) -> EncodedEvent:
        """Serialise with orjson (a third of pydantic's time on this path); the same JSON, as tests check."""
        fields = json_fields(event)
        try:
            payload = orjson.dumps(fields).decode()
        except TypeError:  # metadata orjson cannot encode: pydantic knows more types
            payload = event.model_dump_json()
        return cls(event, payload, sse_frame(event.sequence, payload))


def json_fields(event: TaskEvent) -> dict[str, Any]:
    """The fields of an event's JSON, in the order clients receive them (aliases last)."""
    return {
        "task_id": event.task_id,
        "sequence": event.sequence,
        "agent_name": event.agent_name,
        "event_type": event.event_type.value,
        "content": event.content,
        "timestamp": event.timestamp,
        "metadata": event.metadata,
        "agent": event.agent_name,
        "type": event.event_type.value,
    }


def sse_frame(sequence: int, payload_json: str | bytes) -> bytes:
    """The complete SSE frame of an event: `id:` line, one `data:` line of JSON, blank line."""
    payload = payload_json.encode() if isinstance(payload_json, str) else payload_json
    return b"id: %d\ndata: %s\n\n" % (sequence, payload)
