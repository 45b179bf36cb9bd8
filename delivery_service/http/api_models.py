"""Pydantic models of every request and response body of the HTTP API (see docs/api.md)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from markdown_it import MarkdownIt
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from delivery_service.agents import AGENTS
from delivery_service.deliverables.gate import GatePolicy, GateStatus, Quality, Waiver, assess
from delivery_service.deliverables.schemas import Decision
from delivery_service.http.visible_text import require_visible, visible_text_pattern
from delivery_service.prompts import is_chinese
from delivery_service.service_layer.delivery import TaskState
from delivery_service.settings import get_settings
from delivery_service.store.outbox import Delivery
from delivery_service.store.records import TaskRecord, TaskStatus
from delivery_service.store.task_event import iso_utc

# A deliverable's safe HTML, for any model output or requirement: raw HTML off, so tags come out escaped,
# and markdown-it's link validation refuses targets such as `javascript:`.
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def _trimmed(value: object) -> object:
    """Strings lose their surrounding whitespace before any rule counts them (non-strings fail later)."""
    return value.strip() if isinstance(value, str) else value


def _visible(value: str, info: ValidationInfo) -> str:
    return require_visible(value, info.field_name or "text")


RequestText = Annotated[StrictStr, BeforeValidator(_trimmed), AfterValidator(_visible)]


def request_text(description: str) -> Any:
    """A RequestText field: after trimming, at least one visible character (`require_visible`), no NUL,
    and at most MAX_REQUIREMENT_CHARS characters; the schema says so with `visible_text_pattern()`."""
    return Field(
        description=description,
        max_length=get_settings().max_requirement_chars,
        json_schema_extra=lambda schema: schema.update(pattern=visible_text_pattern()),
    )


WebhookEventType = Literal[
    "task.completed",
    "task.failed",
    "task.cancelled",
    "task.awaiting_confirmation",
    "task.step_completed",
    "task.waived",
]


class TaskOptions(BaseModel):
    """How a task runs, whether it starts a thread (`run_task`) or follows one up."""

    skip_confirmation: StrictBool = Field(
        default=True, description="false = pause for a human after the requirements analysis"
    )
    stream_tokens: StrictBool = Field(default=False, description="true = the stream also carries `delta` events")
    priority: Annotated[int, Field(ge=0, le=9)] = Field(
        default=0, description="0-9; higher starts first when tasks wait for a worker slot"
    )

    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="an http(s) URL that receives this task's webhook messages (Standard Webhooks, signed); "
        "needs WEBHOOK_SECRET on the service; hosts resolving to private addresses are refused",
    )
    webhook_events: list[WebhookEventType] | None = Field(
        default=None, min_length=1, description="the message types webhook_url receives; default: all six"
    )

    @field_validator("priority", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        """JSON numbers only: 2 and 2.0 (the same number in JSON), not "2" or true."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("priority must be a whole number from 0 to 9")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


class RunTaskRequest(TaskOptions):
    """Start a task: a requirement for the four agents."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"user_requirement": "开发一个简单的待办事项应用", "skip_confirmation": True, "stream_tokens": False}
            ]
        },
    )

    user_requirement: RequestText = request_text(
        "The software requirement, in any language. Trimmed first; then at least one visible "
        "character, no NUL, and at most MAX_REQUIREMENT_CHARS characters."
    )


class FollowUpRequest(TaskOptions):
    """Revise a completed task's deliverables: what to change, add or fix."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"request": "Add sign-in with email", "skip_confirmation": True}]},
    )

    request: RequestText = request_text(
        "What the new revision should change, in any language; the same rules as user_requirement."
    )


def _confirm_schema(schema: dict[str, Any]) -> None:
    """ConfirmRequest's rule in its schema: a rejection carries feedback with a visible character."""
    schema["examples"] = [{"approved": False, "feedback": "Add offline use."}]
    schema["if"] = {"properties": {"approved": {"const": False}}}
    schema["then"] = {"required": ["feedback"], "properties": {"feedback": {"pattern": visible_text_pattern()}}}


class ConfirmRequest(BaseModel):
    """A decision on the requirements analysis of a task that waits for one."""

    approved: StrictBool = Field(description="true continues the task; false has the analysis revised")
    feedback: StrictStr = Field(
        default="", max_length=5000, description="what to change (required when approved is false)"
    )

    @model_validator(mode="after")
    def _feedback_for_rejection(self) -> ConfirmRequest:
        self.feedback = self.feedback.strip()
        if not self.approved and not self.feedback:
            raise ValueError("feedback must say what to change when approved is false")
        if not self.approved:
            require_visible(self.feedback, "feedback")
        return self

    model_config = ConfigDict(extra="forbid", json_schema_extra=_confirm_schema)


class WaiveRequest(BaseModel):
    """A person's waiver of a completed task's release gate (fail or concerns): the gate becomes waived."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "NFR-3 is agreed later."}]})

    reason: RequestText = Field(
        max_length=2000,
        description="why the gate is waived: 1 to 2000 characters after trimming, at least one visible",
        json_schema_extra=lambda schema: schema.update(pattern=visible_text_pattern()),
    )


class RunTaskResponse(BaseModel):
    task_id: str
    status: str = Field(description="`started`, or `queued` when every worker slot is busy")
    message: str
    stream_url: str
    status_url: str
    stream_token: str | None = Field(
        default=None, description="with authentication on: opens this task's stream as `?token=` (for EventSource)"
    )


class FollowUpResponse(RunTaskResponse):
    parent_task_id: str
    thread_id: str = Field(description="the id of the thread's first task")
    revision: int = Field(description="2, 3, ... in the order the thread's follow-ups were made")


class TokenUsage(BaseModel):
    """LLM tokens of a task so far: every model call of every agent (and revision), summed per call."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


def _fields(record: TaskRecord, **more: Any) -> dict[str, Any]:
    """The record's fields and its place in its thread, with `more`: a model takes those it names."""
    parent_task_id = record.follow_up.parent_task_id if record.follow_up else None
    thread = {"thread_id": record.thread_id, "revision": record.revision, "request": record.request}
    return {**vars(record), **thread, "parent_task_id": parent_task_id, **more}


class TaskStatusResponse(BaseModel):
    task_id: str
    status: TaskStatus
    queue_position: int | None = Field(description="1 = starts next; null unless the task waits for a worker")
    current_agent: str | None
    completed_steps: int
    total_steps: int
    last_sequence: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: str | None
    usage: TokenUsage = Field(
        description="LLM token usage so far, as the provider reported it (0 when it reports none)"
    )

    @classmethod
    def of(cls, task: TaskState) -> TaskStatusResponse:
        return cls(**_fields(task.record, queue_position=task.queue_position))


class DeliverableModel(BaseModel):
    agent_name: str
    title: str
    content: str = Field(description="markdown, rendered from `data` when there is data")
    data: dict[str, Any] | None = Field(
        default=None,
        description="the structured deliverable (see docs/api.md), or null when the model's output "
        "could not be brought into shape",
    )
    html: str | None = Field(default=None, description="the content as safe HTML, with ?format=html")


class TraceabilityModel(BaseModel):
    """Computed by the service from the deliverables' data, never by a model."""

    acceptance_criteria: int = Field(description="acceptance criteria in scope (stories not prioritised `wont`)")
    covered: int
    coverage: float = Field(description="covered / acceptance_criteria, 0 to 1, three decimals")
    uncovered: list[str]
    dangling: list[dict[str, str]] = Field(description='references to identifiers that do not exist: {"from", "to"}')
    stories_without_component: list[str]
    complete: bool


class ChangesModel(BaseModel):
    """Identifiers of stories, criteria, requirements, test cases, components and risks, computed by the
    service from the data of this revision and of its parent."""

    added: list[str]
    removed: list[str]
    modified: list[str]


class TaskResultResponse(BaseModel):
    task_id: str
    status: TaskStatus
    deliverables: list[DeliverableModel]
    summary: str | None
    traceability: TraceabilityModel | None = Field(description="for a completed task; null otherwise")
    decision: Decision | None = Field(
        description="the Coordinator's, but never go while the release gate fails; go once it is waived; "
        "null unless completed"
    )
    quality: Quality | None = Field(
        description="for a completed task: the findings of the service's rules and the release gate (docs/quality.md)"
    )
    parent_task_id: str | None = Field(description="the task this follow-up revises; null for a thread's first task")
    thread_id: str = Field(description="the id of the thread's first task")
    revision: int = Field(description="1 for a thread's first task, then 2, 3, ...")
    changes: ChangesModel | None = Field(
        description="for a completed follow-up: what changed since its parent; null otherwise"
    )

    @classmethod
    def of(cls, record: TaskRecord, with_html: bool = False) -> TaskResultResponse:
        traceability, decision, quality, changes = None, None, None, None
        current = {d.agent_name: d.data for d in record.deliverables}
        if record.status is TaskStatus.COMPLETED:
            waiver = Waiver(**record.waiver) if record.waiver else None
            documents = AGENTS.documents(current)
            found = assess(documents, gate_policy(record), chinese=is_chinese(record.requirement), waiver=waiver)
            traceability = TraceabilityModel(**found.traceability.model_dump())
            decision, quality = found.decision, found.quality
            if record.follow_up is not None:
                previous = {d.agent_name: d.data for d in record.follow_up.parent_deliverables}
                changes = ChangesModel(**AGENTS.changes(previous, current).model_dump())
        deliverables = [
            DeliverableModel(**vars(d), html=_markdown.render(d.content) if with_html else None)
            for d in record.deliverables
        ]
        return cls(
            **_fields(
                record,
                deliverables=deliverables,
                traceability=traceability,
                decision=decision,
                quality=quality,
                changes=changes,
            )
        )


def gate_policy(record: TaskRecord) -> GatePolicy:
    """The policy a task's gate was computed with when it completed (the settings' for an older record)."""
    stored = (record.gate or {}).get("min_coverage")
    return GatePolicy(min_coverage=stored if isinstance(stored, int | float) else get_settings().gate_min_coverage)


class StreamSummary(BaseModel):
    task_id: str
    status: TaskStatus
    subscribers: int
    last_sequence: int
    created_at: str


class StreamsResponse(BaseModel):
    streams: list[StreamSummary]


class TaskSummary(BaseModel):
    task_id: str
    status: TaskStatus
    requirement: str = Field(description="the first 200 characters of the requirement (a follow-up's: its thread's)")
    created_at: str
    finished_at: str | None
    thread_id: str = Field(description="the id of its thread's first task (its own id for a first task)")
    revision: int = Field(description="1 for a first task; 2, 3, ... for its follow-ups")
    parent_task_id: str | None = Field(description="the task a follow-up revises; null for a first task")
    request: str = Field(
        description="the first 200 characters of what this revision asked for: the requirement, "
        "or the follow-up's request"
    )
    stream_token: str | None = Field(default=None, description="with authentication on: `?token=` for its stream")
    gate: GateStatus | None = Field(description="a completed task's release gate; null otherwise")

    @classmethod
    def of(cls, record: TaskRecord, stream_token: str | None) -> TaskSummary:
        gate = (record.gate or {}).get("status") if record.status is TaskStatus.COMPLETED else None
        gate = "waived" if gate and record.waiver else gate
        short = {"requirement": record.requirement[:200], "request": record.request[:200]}
        return cls(**_fields(record, **short, stream_token=stream_token, gate=gate))


class TasksResponse(BaseModel):
    tasks: list[TaskSummary]
    total: int
    limit: int
    offset: int


class ThreadTask(BaseModel):
    task_id: str
    revision: int
    request: str = Field(description="the first task's requirement, or the follow-up's request")
    status: TaskStatus
    created_at: str
    parent_task_id: str | None = Field(
        description="the task it revises (two follow-ups of one parent are two branches)"
    )

    @classmethod
    def of(cls, record: TaskRecord) -> ThreadTask:
        return cls(**_fields(record))


class ThreadResponse(BaseModel):
    thread_id: str
    tasks: list[ThreadTask] = Field(description="every revision, oldest first")


class WebhookDelivery(BaseModel):
    webhook_id: str = Field(description="the message's `webhook-id`, the same on every attempt")
    type: WebhookEventType
    url: str = Field(description="where it goes; a WEBHOOK_URLS address shows its host only")
    status: Literal["pending", "delivered", "failed"]
    attempts: int = Field(description="requests made so far")
    last_status_code: int | None = Field(description="the receiver's last HTTP status; null when it did not answer")
    last_error: str | None = Field(description="why the last attempt did not deliver it, in words; null once delivered")
    next_attempt_at: str | None = Field(
        description="when a pending message is tried next (ISO 8601 UTC); null otherwise"
    )
    created_at: str

    @classmethod
    def of(cls, delivery: Delivery, url: str) -> WebhookDelivery:
        """`delivery` as the API shows it, its URL as `url`."""
        times = {"next_attempt_at": _iso(delivery.next_attempt_at), "created_at": _iso(delivery.created_at)}
        return cls(**{**asdict(delivery), **times, "url": url})


def _iso(unix_seconds: float | None) -> str | None:
    return None if unix_seconds is None else iso_utc(datetime.fromtimestamp(unix_seconds, tz=timezone.utc))


class WebhookDeliveriesResponse(BaseModel):
    deliveries: list[WebhookDelivery] = Field(description="the task's webhook messages in the order they were made")


class RedeliveryResponse(BaseModel):
    webhook_id: str
    status: Literal["pending"]


class HealthResponse(BaseModel):
    status: str
    model: dict[str, Any]
    max_requirement_chars: int
    store: str = Field(description="`ok`, or why the task store is unavailable")
    version: str


class ReadinessResponse(BaseModel):
    ready: bool
    checks: dict[str, str]


class ErrorResponse(BaseModel):
    detail: str
