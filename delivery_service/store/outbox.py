"""The webhook outbox: which messages an event causes, and what a store keeps of each one's delivery.

A message comes from one stored event and one webhook target of its task, and is stored in the same
transaction as the event (SQLite's `save`, the cluster's append script); `task.waived`, from a person's
waiver, in the same transaction as the waiver (the stores' `waive`). Its body is fixed then; only the
signature and `webhook-timestamp` change between attempts.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

import orjson

from delivery_service.event_types import EVENT_FACTS
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import EventType, TaskEvent

# The message type an event causes, and the task's status it reports (`event_types.EVENT_FACTS`).
MESSAGE_TYPES: dict[EventType, tuple[str, str]] = {
    kind: (facts.message_type, str(facts.status)) for kind, facts in EVENT_FACTS.items() if facts.message_type
}
WAIVED = "task.waived"  # a person waived a completed task's release gate: no event causes it
ALL_MESSAGE_TYPES = (*(message_type for message_type, _ in MESSAGE_TYPES.values()), WAIVED)

DeliveryStatus = Literal["pending", "delivered", "failed"]


def webhook_id(task_id: str, sequence: int | str, target_index: int | str) -> str:
    """Unique and the same on every retry; the cluster's append script, which alone knows the sequence, fills
    in the two `%d` of `webhook_id(task_id, "%d", "%d")`."""
    return f"msg_{task_id.replace('-', '')}_{sequence}_{target_index}"


def result_url(public_url: str, task_id: str) -> str:
    """Where a receiver reads the task's result: absolute with PUBLIC_URL set, else the path."""
    return f"{public_url.rstrip('/')}/api/task/{task_id}/result"


def body_parts(event: TaskEvent, public_url: str) -> tuple[bytes, bytes] | None:
    """The JSON body of the messages `event` causes, before and after its sequence number; None if none.

    Split at the sequence so the cluster's append script, which assigns the sequence, can join them.
    """
    kind = MESSAGE_TYPES.get(event.event_type)
    if kind is None:
        return None
    message_type, status = kind
    data: dict[str, object] = {
        "task_id": event.task_id,
        "status": status,
        "sequence": 0,
        "result_url": result_url(public_url, event.task_id),
    }
    if event.event_type is EventType.STEP_END:
        data |= {"agent_name": event.agent_name, "step": event.metadata.get("step")}
        if event.metadata.get("carried_over"):
            data["carried_over"] = True
    elif event.event_type is EventType.END and isinstance(event.metadata.get("gate"), dict):
        data["gate"] = event.metadata["gate"].get("status")
    elif event.event_type is EventType.CONFIRMATION_REQUIRED:
        data["confirm_url"] = f"{public_url.rstrip('/')}/api/task/{event.task_id}/confirm"
    elif event.event_type in (EventType.ERROR, EventType.CANCELLED):
        data["message"] = event.content
        if event.metadata.get("error_type"):
            data["error_type"] = event.metadata["error_type"]
    return split_at_sequence(orjson.dumps({"type": message_type, "timestamp": event.timestamp, "data": data}))


def split_at_sequence(payload: bytes) -> tuple[bytes, bytes]:
    """JSON whose first `"sequence":` is `"sequence":0`, in two parts: before and after that 0."""
    marker = b'"sequence":0'
    at = payload.index(marker) + len(marker) - 1
    return payload[:at], payload[at + 1 :]


@dataclass(frozen=True)
class OutboxMessage:
    """A new message, as stored with its event."""

    webhook_id: str
    task_id: str
    sequence: int
    type: str
    url: str
    body: str


def messages_for(record: TaskRecord, event: TaskEvent, public_url: str) -> list[OutboxMessage]:
    """The messages one stored event of `record`'s task causes: one per target that wants its type."""
    if not record.webhooks:
        return []
    parts = body_parts(event, public_url)
    if parts is None:
        return []
    message_type = MESSAGE_TYPES[event.event_type][0]
    body = (parts[0] + str(event.sequence).encode() + parts[1]).decode()
    return [
        OutboxMessage(
            webhook_id(event.task_id, event.sequence, index),
            event.task_id,
            event.sequence,
            message_type,
            target.url,
            body,
        )
        for index, target in enumerate(record.webhooks, start=1)
        if message_type in target.events
    ]


def waiver_messages(record: TaskRecord, waiver: dict[str, str], public_url: str) -> list[OutboxMessage]:
    """The `task.waived` messages of a completed task: one per target that wants them. The task's stream has
    ended, so `sequence` is one past its last event: ordered by sequence, the waiver comes last."""
    sequence = record.last_sequence + 1
    data = {
        "task_id": record.task_id,
        "status": record.status.value,
        "sequence": sequence,
        "result_url": result_url(public_url, record.task_id),
        "gate": "waived",
        "waiver": waiver,
    }
    body = orjson.dumps({"type": WAIVED, "timestamp": waiver["at"], "data": data}).decode()
    return [
        OutboxMessage(webhook_id(record.task_id, sequence, index), record.task_id, sequence, WAIVED, target.url, body)
        for index, target in enumerate(record.webhooks, start=1)
        if WAIVED in target.events
    ]


@dataclass(frozen=True)
class Delivery:
    """One message's line in a task's delivery log. Times are unix seconds."""

    webhook_id: str
    type: str
    url: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: float | None
    created_at: float


@dataclass(frozen=True)
class ClaimedMessage(OutboxMessage):
    """A stored message a sender holds until its claim's lease ends (no other sender takes it meanwhile)."""

    created_at: float
    attempts: int  # made before this one
    attempts_base: int  # attempts made before the last redelivery: the retry budget counts from here
    claim: str  # the claim's token: an outcome reported by a sender whose lease ran out is ignored


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt led to: delivered, failed for good, or pending until `next_attempt_at`."""

    status: DeliveryStatus
    status_code: int | None
    error: str | None
    next_attempt_at: float | None = None
    stop_url: bool = False  # the receiver answered 410: no more messages of this task to this URL
    attempted: bool = True  # False: given up without a request (its URL was stopped meanwhile)


# A URL's authority: the same pattern in Python's `re` and in Lua, where the cluster's claim script matches it.
RECEIVER_PATTERN = "[^:/?#]+://([^/?#]*)"
_AUTHORITY = re.compile(RECEIVER_PATTERN)


def receiver(url: str) -> str:
    """Who receives a message to `url`, for the sender's cap per receiver: the URL's host and port as
    written, in lower case (ASCII only, as the cluster's claim script lowers it)."""
    found = _AUTHORITY.match(url)
    return found[1].encode().lower().decode() if found else ""


@dataclass
class ReceiverRoom:
    """How many messages a claim may take: `limit` in all, and no receiver past `per_receiver` attempts
    in flight, counting those already in `busy` (receiver: attempts)."""

    limit: int
    per_receiver: int
    busy: dict[str, int] = field(default_factory=dict)

    def take(self, url: str) -> bool:
        """Whether a message to `url` fits; if it does, it is counted."""
        key = receiver(url)
        if self.limit <= 0 or self.busy.get(key, 0) >= self.per_receiver:
            return False
        self.limit -= 1
        self.busy[key] = self.busy.get(key, 0) + 1
        return True


class Redelivery(enum.Enum):
    QUEUED = "queued"
    UNKNOWN = "unknown"
    PENDING = "pending"  # still being delivered: nothing to redeliver yet


class Outbox(Protocol):
    """The outbox of a store in this process, blocking (call it off the event loop): what `TaskStore.outbox`
    is, so a new store brings its own. `SqliteOutbox` (sqlite_outbox.py) is SQLite's and memory's."""

    def claim_due(self, now: float, lease_seconds: float, room: ReceiverRoom) -> list[ClaimedMessage]: ...

    def record_attempt(self, message: ClaimedMessage, outcome: AttemptOutcome, now: float) -> None: ...

    def deliveries(self, task_id: str) -> list[Delivery]: ...

    def redeliver(self, task_id: str, webhook_id: str, now: float) -> Redelivery: ...

    def pending(self) -> int: ...


STOPPED_URL_ERROR = (
    "Not sent: this URL answered 410 Gone to an earlier message of this task, so nothing more of the task goes "
    "there. Redeliver a message to try it again."
)
