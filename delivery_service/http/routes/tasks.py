"""Tasks: start one, follow its status, cancel it, confirm its analysis, fetch its deliverables, list them.

The routes only create and look things up; crews run on the runner's workers (threads, processes or
Celery workers) and report through the task's stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from delivery_service.agents import AGENTS
from delivery_service.deliverables.render import traceability_matrix
from delivery_service.deliverables.traceability import Traceability
from delivery_service.http.access_control import audit, client_of
from delivery_service.http.api_models import (
    ConfirmRequest,
    FollowUpRequest,
    FollowUpResponse,
    RunTaskRequest,
    RunTaskResponse,
    TaskResultResponse,
    TasksResponse,
    TaskStatusResponse,
    TaskSummary,
)
from delivery_service.http.auth import Caller
from delivery_service.http.dependencies import (
    API_ERRORS,
    LAST_POSSIBLE_SEQUENCE,
    NOT_FOUND,
    TOO_MANY,
    CallerOf,
    State,
    error_response,
    get_record,
    stored_task,
)
from delivery_service.http.lifespan import ServiceState
from delivery_service.http.webhook_targets import webhook_targets
from delivery_service.observability.logs import current_task_id
from delivery_service.prompts import requirement_language
from delivery_service.runs.control_messages import NotAwaitingConfirmation, QueueFull, ServiceStopping, ThreadFull
from delivery_service.runs.task_runner import TaskRequest
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.records import TaskRecord, TaskStatus

CONTROL_WAIT_SECONDS = 5.0

router = APIRouter(tags=["tasks"], responses=API_ERRORS)


@router.post(
    "/api/run_task",
    status_code=202,
    response_model=RunTaskResponse,
    responses={**TOO_MANY, 413: error_response("The body is larger than MAX_BODY_BYTES")},
    summary="Start a task; answers at once, the agents run in the background",
)
async def run_task(
    body: RunTaskRequest, request: Request, response: Response, state: State, caller: CallerOf
) -> RunTaskResponse:
    await state.rate_limit.check(client_of(request, caller))
    webhooks = await webhook_targets(body, state.settings)
    task_request = TaskRequest(
        body.user_requirement, body.skip_confirmation, body.stream_tokens, body.priority, caller.owner, webhooks
    )
    record, waits = await _started(state.engine.start(task_request))
    audit("task.created", request, caller, record.task_id, priority=body.priority, queued=waits)
    return RunTaskResponse(**_started_fields(record, waits, response, caller))


@router.post(
    "/api/task/{task_id}/follow_up",
    status_code=202,
    response_model=FollowUpResponse,
    responses={
        **NOT_FOUND,
        **TOO_MANY,
        409: error_response("The task is not completed, or its thread has MAX_THREAD_REVISIONS revisions"),
        413: error_response("The body is larger than MAX_BODY_BYTES"),
    },
    summary="Revise a completed task: a new task in its thread, re-running only the agents the request concerns",
)
async def follow_up(
    task_id: str, body: FollowUpRequest, request: Request, response: Response, state: State, caller: CallerOf
) -> FollowUpResponse:
    parent = await stored_task(state, task_id, caller)
    if parent.status is not TaskStatus.COMPLETED:
        raise HTTPException(
            status_code=409,
            detail=f"Task {task_id} is {parent.status.value}: only a completed task can be followed up. Wait for it "
            "to complete (follow its stream), or follow up on the thread's last completed task.",
        )
    await state.rate_limit.check(client_of(request, caller))
    webhooks = await webhook_targets(body, state.settings)
    task_request = TaskRequest(
        parent.requirement, body.skip_confirmation, body.stream_tokens, body.priority, caller.owner, webhooks
    )
    try:
        record, waits = await _started(state.engine.follow_up(parent, body.request, task_request))
    except ThreadFull as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    audit("task.followed_up", request, caller, record.task_id, parent=task_id, revision=record.revision)
    return FollowUpResponse(
        **_started_fields(record, waits, response, caller),
        parent_task_id=task_id,
        thread_id=record.thread_id,
        revision=record.revision,
    )


async def _started(start: Awaitable[tuple[TaskRecord, bool]]) -> tuple[TaskRecord, bool]:
    """The runner's new task, or the HTTP error that says why it could not start."""
    try:
        record, waits = await start
    except ServiceStopping as exc:
        raise HTTPException(status_code=503, detail=str(exc), headers={"Retry-After": "5"}) from exc
    except QueueFull as exc:
        raise HTTPException(
            status_code=429, detail=str(exc), headers={"Retry-After": str(exc.retry_after_seconds)}
        ) from exc
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc), headers={"Retry-After": "30"}) from exc
    current_task_id.set(record.task_id)
    return record, waits


def _started_fields(record: TaskRecord, waits: bool, response: Response, caller: Caller) -> dict[str, Any]:
    """What every answer that started a task says (and its Location header)."""
    status_url = f"/api/task/{record.task_id}/status"
    response.headers["Location"] = status_url
    return {
        "task_id": record.task_id,
        "status": "queued" if waits else "started",
        "message": "Task queued: every worker is busy" if waits else "Task started",
        "stream_url": f"/api/stream/{record.task_id}",
        "status_url": status_url,
        "stream_token": caller.token_for(record.task_id),
    }


@router.get("/api/task/{task_id}/status", response_model=TaskStatusResponse, responses=NOT_FOUND)
async def task_status(record: Annotated[TaskRecord, Depends(get_record)], state: State) -> TaskStatusResponse:
    return TaskStatusResponse.of(record, await state.engine.queue_position(record.task_id))


@router.post(
    "/api/task/{task_id}/cancel",
    status_code=202,
    response_model=TaskStatusResponse,
    responses=NOT_FOUND,
    summary="Cancel a task; idempotent (a task that has ended is left as it is)",
)
async def cancel_task(task_id: str, request: Request, state: State, caller: CallerOf) -> TaskStatusResponse:
    await get_record(task_id, state, caller)
    if await state.engine.cancel(task_id):
        audit("task.cancelled", request, caller, task_id)
    return await _status_once_stored(task_id, state, caller)


@router.post(
    "/api/task/{task_id}/confirm",
    status_code=202,
    response_model=TaskStatusResponse,
    responses={**NOT_FOUND, 409: error_response("The task is not waiting for a confirmation")},
    summary="Approve the requirements analysis, or reject it with feedback to have it revised",
)
async def confirm_task(
    task_id: str, body: ConfirmRequest, request: Request, state: State, caller: CallerOf
) -> TaskStatusResponse:
    record = await get_record(task_id, state, caller)
    try:
        await state.engine.confirm(task_id, body.approved, body.feedback)
    except NotAwaitingConfirmation as exc:
        raise HTTPException(status_code=409, detail=f"{exc} Its status is {record.status.value}.") from exc
    audit("task.approved" if body.approved else "task.rejected", request, caller, task_id)
    return await _status_once_stored(task_id, state, caller)


async def _status_once_stored(task_id: str, state: ServiceState, caller: Caller) -> TaskStatusResponse:
    """The task's status after what a control request published is stored (bounded wait)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(state.engine.settled(task_id), timeout=CONTROL_WAIT_SECONDS)
    return TaskStatusResponse.of(await get_record(task_id, state, caller), await state.engine.queue_position(task_id))


@router.get(
    "/api/task/{task_id}/result",
    response_model=TaskResultResponse,
    responses={
        **NOT_FOUND,
        409: error_response("The task has not finished yet"),
        200: {"content": {"text/markdown": {}}, "description": "JSON, or one markdown document with ?format=markdown"},
    },
)
async def task_result(
    task_id: str,
    state: State,
    caller: CallerOf,
    format: Annotated[
        Literal["json", "markdown", "html"],
        Query(description="json (default); markdown: one .md document; html: json with each deliverable as safe HTML"),
    ] = "json",
) -> Response | TaskResultResponse:
    record = await stored_task(state, task_id, caller)
    if not record.finished:
        raise HTTPException(
            status_code=409,
            detail=f"Task {record.task_id} is {record.status.value}; its result is ready when it has finished. "
            "Follow its stream or poll its status.",
        )
    result = TaskResultResponse.of(record, with_html=format == "html")
    if format == "markdown":
        return Response(
            content=result_document(result, record.requirement),
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="task-{record.task_id}.md"'},
        )
    return result


def result_document(result: TaskResultResponse, requirement: str) -> str:
    """All deliverables of a task as one markdown document, with the traceability matrix when there is one.

    The delivery summary is not repeated: it is the review's own summary section, already in the document.
    """
    parts = [f"# Delivery for task {result.task_id}", f"Status: {result.status.value}", "## Requirement", requirement]
    for deliverable in result.deliverables:
        parts += [f"---\n\n<!-- {deliverable.agent_name}: {deliverable.title} -->", deliverable.content]
    found = AGENTS.documents({d.agent_name: d.data for d in result.deliverables})
    if result.traceability and found.analysis is not None:
        traceability = Traceability(**result.traceability.model_dump())
        chinese = requirement_language(requirement).startswith("Simplified Chinese")
        parts += ["---", traceability_matrix(found.analysis, found.test_plan, traceability, chinese=chinese).strip()]
        parts.append(f"Decision: {result.decision}")
    return "\n\n".join(parts) + "\n"


@router.get("/api/tasks", response_model=TasksResponse)
async def list_tasks(
    state: State,
    caller: CallerOf,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=LAST_POSSIBLE_SEQUENCE)] = 0,
) -> TasksResponse:
    try:
        records, total = await state.engine.tasks(limit, offset, caller.owner)
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return TasksResponse(
        tasks=[TaskSummary.of(record, caller.token_for(record.task_id)) for record in records],
        total=total,
        limit=limit,
        offset=offset,
    )
