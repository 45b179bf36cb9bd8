"""`POST /api/ag-ui`: a task run as an AG-UI agent run, for CopilotKit and other AG-UI front ends.

The body is AG-UI's `RunAgentInput`; its last user message is the requirement. The run is an ordinary
task started by the service layer, and its events are the task's own stream translated with the
`ag-ui-protocol` package's types and encoder (the mapping: docs/api.md, "MCP and AG-UI").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from ag_ui.core import (
    BaseEvent,
    Interrupt,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
)
from ag_ui.encoder import EventEncoder
from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from delivery_service.http.api_models import ConfirmRequest, RunTaskRequest, TaskResultResponse
from delivery_service.http.dependencies import API_ERRORS, TOO_MANY, State, Who
from delivery_service.http.error_responses import readable_error
from delivery_service.http.lifespan import ServiceState
from delivery_service.http.task_events import task_events
from delivery_service.http.visible_text import require_visible
from delivery_service.service_layer.delivery import Requester

router = APIRouter(tags=["ag-ui"], responses=API_ERRORS)

INTERRUPT_PREFIX = "confirm-"
CONFIRMATION_SCHEMA = ConfirmRequest.model_json_schema()  # an interrupt's responseSchema: what _decision accepts


class AgUiOptions(BaseModel):
    """What `forwardedProps` may set; anything else there is ignored (front ends add their own)."""

    model_config = ConfigDict(extra="ignore")

    skip_confirmation: StrictBool = True
    stream_tokens: StrictBool = False
    priority: int = Field(default=0, ge=0, le=9)
    on_disconnect: Literal["continue", "cancel"] = "continue"


@router.post(
    "/api/ag-ui",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "AG-UI events"}, **TOO_MANY},
    summary="Run a task as an AG-UI agent run (RunAgentInput in, AG-UI events out)",
)
async def ag_ui_run(
    run_input: Annotated[RunAgentInput, Body()], request: Request, state: State, who: Who
) -> EventSourceResponse:
    options = _options(run_input.forwarded_props)
    if run_input.resume:
        task_id, after = await _resume(run_input, state, who)
    else:
        body = _task_request(run_input, options)
        task_id, after = (await state.delivery.start(who, body.user_requirement, body))[0].task_id, 0
    events = _run_events(run_input, task_id, after, state, who)
    encoder = EventEncoder(accept=request.headers.get("accept"))
    return EventSourceResponse(  # with a `: ping` comment every HEARTBEAT_SECONDS, like the task's stream
        _encoded(events, encoder, options.on_disconnect == "cancel", task_id, state, who),
        media_type=encoder.get_content_type(),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        ping=state.settings.heartbeat_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping", sep="\n"),
    )


def _refused(loc: tuple[str | int, ...], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", *loc), "msg": message, "type": "value_error"}])


def _options(forwarded: object) -> AgUiOptions:
    try:
        return AgUiOptions.model_validate(forwarded if isinstance(forwarded, dict) else {})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", "forwardedProps", *error["loc"])} for error in exc.errors(include_input=False)]
        ) from exc


def _task_request(run_input: RunAgentInput, options: AgUiOptions) -> RunTaskRequest:
    """`run_task`'s body: the last user message's text as the requirement, with the forwarded options."""
    user_messages = [message for message in run_input.messages if message.role == "user"]
    if not user_messages:
        raise _refused(("messages",), "The run needs a user message: the last one's text is the requirement.")
    content = user_messages[-1].content
    text = content if isinstance(content, str) else "\n".join(getattr(part, "text", "") for part in content)
    try:  # run_task's own rule, with the words naming the message rather than user_requirement
        require_visible(text.strip(), "The last user message")
    except ValueError as exc:
        raise _refused(("messages",), str(exc)) from exc
    try:
        return RunTaskRequest(user_requirement=text, **options.model_dump(exclude={"on_disconnect"}))
    except ValidationError as exc:
        messages = " ".join(readable_error(error)["msg"] for error in exc.errors(include_input=False))
        raise _refused(("messages",), f"The last user message cannot be a requirement: {messages}") from exc


async def _resume(run_input: RunAgentInput, state: ServiceState, who: Requester) -> tuple[str, int]:
    """Answer the task's confirmation interrupt (approve, reject with feedback, or cancel); the task and the
    sequence its new events follow. A task that has finished meanwhile is left as it is, and the run
    replays its terminal event: a resumed run ends with RUN_FINISHED or RUN_ERROR like any other."""
    (entry, *_) = run_input.resume or []
    if not entry.interrupt_id.startswith(INTERRUPT_PREFIX):
        raise _refused(
            ("resume", 0, "interruptId"), f"Unknown interrupt {entry.interrupt_id!r}: resume the one a run ended with."
        )
    task_id = entry.interrupt_id.removeprefix(INTERRUPT_PREFIX)
    record = await state.delivery.task(who, task_id)
    if entry.status == "cancelled":
        await state.delivery.cancel(who, task_id)
    else:
        decision = _decision(entry.payload)
        if not record.finished:
            await state.delivery.confirm(who, task_id, decision.approved, decision.feedback)
    return task_id, record.last_sequence - 1 if record.finished else record.last_sequence


def _decision(payload: object) -> ConfirmRequest:
    """The resume payload as the decision it must be: valid against the interrupt's `responseSchema`, which
    is `ConfirmRequest`'s own JSON schema (a `false`, `null` or `{}` approves nothing)."""
    try:
        return ConfirmRequest.model_validate(payload)
    except ValidationError as exc:
        errors = [readable_error(error)["msg"] for error in exc.errors(include_input=False)]
        reasons = " ".join(errors) if isinstance(payload, dict) else "It is not a JSON object."
        raise _refused(
            ("resume", 0, "payload"),
            "The payload must fit the interrupt's responseSchema, "
            f'{{"approved": true}} or {{"approved": false, "feedback": "what to change"}}. {reasons}',
        ) from exc


async def _run_events(
    run_input: RunAgentInput, task_id: str, after: int, state: ServiceState, who: Requester
) -> AsyncIterator[BaseEvent]:
    """The task's events after `after` as AG-UI events (docs/api.md's mapping)."""
    run = {"thread_id": run_input.thread_id, "run_id": run_input.run_id}
    yield RunStartedEvent(**run, metadata={"task_id": task_id, "stream_url": f"/api/stream/{task_id}"})
    streaming: str | None = None  # the message the current agent's deltas go to
    async for event in task_events(state, task_id, after):
        kind, agent, content = event["event_type"], event["agent_name"], event["content"]
        message_id = f"{task_id}-{event['sequence']}"
        if kind == "agent_start":
            yield StepStartedEvent(step_name=agent)
        elif kind == "delta" and content:
            if streaming is None:
                streaming = message_id
                yield TextMessageStartEvent(message_id=streaming, role="assistant", name=agent)
            yield TextMessageContentEvent(message_id=streaming, delta=content)
        elif kind == "output":
            if streaming is None:
                yield TextMessageStartEvent(message_id=message_id, role="assistant", name=agent)
                if content:
                    yield TextMessageContentEvent(message_id=message_id, delta=content)
            yield TextMessageEndEvent(message_id=streaming or message_id)
            streaming = None
        elif kind == "step_end":
            yield StepFinishedEvent(step_name=agent)
        elif kind == "confirmation_required":
            interrupt = Interrupt(
                id=INTERRUPT_PREFIX + task_id,
                reason="confirmation_required",
                message=content,
                response_schema=CONFIRMATION_SCHEMA,
                metadata={"task_id": task_id, "confirm_url": f"/api/task/{task_id}/confirm"},
            )
            yield RunFinishedEvent(**run, outcome=RunFinishedInterruptOutcome(interrupts=[interrupt]))
            return
        elif kind == "end":
            result = TaskResultResponse.of(await state.delivery.result(who, task_id))
            snapshot = result.model_dump(
                mode="json",
                include={"task_id", "status", "deliverables", "traceability", "decision", "quality", "summary"},
            )
            yield StateSnapshotEvent(snapshot=snapshot)
            yield RunFinishedEvent(
                **run, result={"task_id": task_id, "summary": content}, outcome=RunFinishedSuccessOutcome()
            )
        elif kind == "error":
            yield RunErrorEvent(message=content, code=event["metadata"].get("error_type"))
        elif kind == "cancelled":
            yield RunFinishedEvent(**run, outcome=RunFinishedCancelledOutcome())


_cancels: set[asyncio.Task[Any]] = set()


async def _encoded(
    events: AsyncIterator[BaseEvent],
    encoder: EventEncoder,
    cancel_on_disconnect: bool,
    task_id: str,
    state: ServiceState,
    who: Requester,
) -> AsyncIterator[bytes]:
    """The encoded events; a client gone before the run's last event cancels the task if it asked to."""
    finished = False
    try:
        async for event in events:
            yield encoder.encode(event).encode()
        finished = True
    finally:
        if not finished and cancel_on_disconnect:
            # The response's task is being cancelled: the cancel runs as a task of its own.
            cancel = asyncio.get_running_loop().create_task(state.delivery.cancel(who, task_id))
            _cancels.add(cancel)
            cancel.add_done_callback(_cancels.discard)
