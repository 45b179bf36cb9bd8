"""Tasks: start one, follow its status, cancel it, confirm its analysis, fetch its deliverables, waive its
release gate, list them; threads: a task and its follow-ups, every revision in the order they were made."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from delivery_service.agents import AGENTS
from delivery_service.deliverables.render import quality_section, traceability_matrix
from delivery_service.deliverables.traceability import Traceability
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
    ThreadResponse,
    ThreadTask,
    WaiveRequest,
)
from delivery_service.http.dependencies import (
    API_ERRORS,
    LAST_POSSIBLE_SEQUENCE,
    NOT_FOUND,
    TOO_MANY,
    CallerOf,
    State,
    Who,
    error_response,
)
from delivery_service.prompts import is_chinese
from delivery_service.store.records import TaskRecord

router = APIRouter(tags=["tasks"], responses=API_ERRORS)
threads_router = APIRouter(tags=["threads"], responses=API_ERRORS)


@router.post(
    "/api/run_task",
    status_code=202,
    response_model=RunTaskResponse,
    responses={**TOO_MANY, 413: error_response("The body is larger than MAX_BODY_BYTES")},
    summary="Start a task; answers at once, the agents run in the background",
)
async def run_task(
    body: RunTaskRequest, response: Response, state: State, caller: CallerOf, who: Who
) -> RunTaskResponse:
    record, waits = await state.delivery.start(who, body.user_requirement, body)
    return RunTaskResponse(**started_fields(record, waits, caller.token_for(record.task_id), response))


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
    task_id: str, body: FollowUpRequest, response: Response, state: State, caller: CallerOf, who: Who
) -> FollowUpResponse:
    record, waits = await state.delivery.follow_up(who, task_id, body.request, body)
    return FollowUpResponse(
        **started_fields(record, waits, caller.token_for(record.task_id), response),
        parent_task_id=task_id,
        thread_id=record.thread_id,
        revision=record.revision,
    )


def started_fields(
    record: TaskRecord, waits: bool, stream_token: str | None, response: Response | None = None
) -> dict[str, Any]:
    """What every answer that started a task says (and, over HTTP, its Location header)."""
    status_url = f"/api/task/{record.task_id}/status"
    if response is not None:
        response.headers["Location"] = status_url
    return {
        "task_id": record.task_id,
        "status": "queued" if waits else "started",
        "message": "Task queued: every worker is busy" if waits else "Task started",
        "stream_url": f"/api/stream/{record.task_id}",
        "status_url": status_url,
        "stream_token": stream_token,
    }


@router.get("/api/task/{task_id}/status", response_model=TaskStatusResponse, responses=NOT_FOUND)
async def task_status(task_id: str, state: State, who: Who) -> TaskStatusResponse:
    return TaskStatusResponse.of(await state.delivery.status(who, task_id))


@router.post(
    "/api/task/{task_id}/cancel",
    status_code=202,
    response_model=TaskStatusResponse,
    responses=NOT_FOUND,
    summary="Cancel a task; idempotent (a task that has ended is left as it is)",
)
async def cancel_task(task_id: str, state: State, who: Who) -> TaskStatusResponse:
    return TaskStatusResponse.of(await state.delivery.cancel(who, task_id))


@router.post(
    "/api/task/{task_id}/confirm",
    status_code=202,
    response_model=TaskStatusResponse,
    responses={**NOT_FOUND, 409: error_response("The task is not waiting for a confirmation")},
    summary="Approve the requirements analysis, or reject it with feedback to have it revised",
)
async def confirm_task(task_id: str, body: ConfirmRequest, state: State, who: Who) -> TaskStatusResponse:
    return TaskStatusResponse.of(await state.delivery.confirm(who, task_id, body.approved, body.feedback))


@router.post(
    "/api/task/{task_id}/waive",
    response_model=TaskResultResponse,
    responses={**NOT_FOUND, 409: error_response("The task is not completed, or its gate is pass or waived already")},
    summary="Waive a completed task's release gate (fail or concerns) on the record, with a reason",
)
async def waive_gate(task_id: str, body: WaiveRequest, state: State, who: Who) -> TaskResultResponse:
    record = await state.delivery.waive(who, task_id, body.reason)
    if state.webhook_sender is not None:  # webhooks are on: send its task.waived messages now
        state.webhook_sender.wake()
    return TaskResultResponse.of(record)


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
    who: Who,
    format: Annotated[
        Literal["json", "markdown", "html"],
        Query(description="json (default); markdown: one .md document; html: json with each deliverable as safe HTML"),
    ] = "json",
) -> Response | TaskResultResponse:
    record = await state.delivery.result(who, task_id)
    result = TaskResultResponse.of(record, with_html=format == "html")
    if format == "markdown":
        return Response(
            content=result_document(result, record.requirement),
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="task-{record.task_id}.md"'},
        )
    return result


def result_document(result: TaskResultResponse, requirement: str) -> str:
    """All deliverables of a task as one markdown document, with the traceability matrix when there is one and
    the quality section (gate and findings) of a completed task.

    The delivery summary is not repeated: it is the review's own summary section, already in the document.
    """
    parts = [f"# Delivery for task {result.task_id}", f"Status: {result.status.value}", "## Requirement", requirement]
    for deliverable in result.deliverables:
        parts += [f"---\n\n<!-- {deliverable.agent_name}: {deliverable.title} -->", deliverable.content]
    found = AGENTS.documents({d.agent_name: d.data for d in result.deliverables})
    chinese = is_chinese(requirement)
    if result.traceability and found.analysis is not None:
        traceability = Traceability(**result.traceability.model_dump())
        parts += ["---", traceability_matrix(found.analysis, found.test_plan, traceability, chinese=chinese).strip()]
        parts.append(f"Decision: {result.decision}")
    if result.quality is not None:
        parts += ["---", quality_section(result.quality, chinese=chinese).strip()]
    return "\n\n".join(parts) + "\n"


@router.get("/api/tasks", response_model=TasksResponse)
async def list_tasks(
    state: State,
    caller: CallerOf,
    who: Who,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=LAST_POSSIBLE_SEQUENCE)] = 0,
) -> TasksResponse:
    records, total = await state.delivery.tasks(who, limit, offset)
    return TasksResponse(
        tasks=[TaskSummary.of(record, caller.token_for(record.task_id)) for record in records],
        total=total,
        limit=limit,
        offset=offset,
    )


@threads_router.get(
    "/api/threads/{thread_id}",
    response_model=ThreadResponse,
    responses=NOT_FOUND,
    summary="Every revision of a thread (its first task and the follow-ups), oldest first",
)
async def thread(thread_id: str, state: State, who: Who) -> ThreadResponse:
    members = await state.delivery.thread(who, thread_id)
    return ThreadResponse(thread_id=thread_id, tasks=[ThreadTask.of(record) for record in members])
