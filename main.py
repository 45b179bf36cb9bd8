"""The HTTP API: start tasks, stream their events over SSE, report status and deliverables.

Run it with `python main.py` or `uvicorn main:app`. The routes only create and look things up; crews
run on the TaskRunner's worker threads, and events reach clients through the StreamManager.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from fastapi.staticfiles import StaticFiles
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from delivery_service.http.access_control import SecurityHeaders, audit, client_of
from delivery_service.http.auth import Caller
from delivery_service.llm.providers import model_info
from delivery_service.observability.logs import configure_logging, current_task_id
from delivery_service.observability.metrics import HttpMetrics, exposition
from delivery_service.llm.local import local_model_server
from delivery_service.http.openapi import EVENT_STREAM_RESPONSE, install_event_schema
from delivery_service.http.schemas import (
    ConfirmRequest,
    ErrorResponse,
    HealthResponse,
    ReadinessResponse,
    RunTaskRequest,
    RunTaskResponse,
    StreamsResponse,
    StreamSummary,
    TaskResultResponse,
    TasksResponse,
    TaskStatusResponse,
    TaskSummary,
)
from delivery_service.http.lifespan import ServiceState, lifespan
from delivery_service.settings import get_settings
from delivery_service.store.records import TaskRecord
from delivery_service.runs.runner import NotAwaitingConfirmation, QueueFull, ServiceStopping, TaskRequest
from delivery_service.store.base import StoreUnavailable
from delivery_service.http.errors import http_error_handler, request_validation_handler, store_unavailable_handler

VERSION = "0.1.0"
CONTROL_WAIT_SECONDS = 5.0
LAST_POSSIBLE_SEQUENCE = 2**62
STATIC_DIR = Path(__file__).parent / "delivery_service" / "http" / "static"

logger = logging.getLogger("multi_agent_service")
configure_logging(get_settings().log_level, get_settings().log_format)


app = FastAPI(
    title="Multi-agent software delivery",
    version=VERSION,
    summary="Four LLM agents turn a requirement into an analysis, a test plan, a design and a review, streamed live.",
    lifespan=lifespan,
    max_body_size=get_settings().max_body_bytes,
)
app.add_middleware(SecurityHeaders)
app.add_middleware(HttpMetrics)
if get_settings().cors_origin_list():
    app.add_middleware(
        CORSMiddleware,
        allow_origins=get_settings().cors_origin_list(),
        allow_credentials=False,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
    )
app.add_exception_handler(RequestValidationError, request_validation_handler)
app.add_exception_handler(StarletteHTTPException, http_error_handler)
app.add_exception_handler(StoreUnavailable, store_unavailable_handler)
install_event_schema(app)
app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


# --- dependencies -------------------------------------------------------------------------------
async def get_state(request: Request) -> ServiceState:
    state: ServiceState | None = request.app.state.service
    if state is None:
        raise HTTPException(status_code=503, detail=f"The task store is unavailable: {request.app.state.unavailable}")
    return state


State = Annotated[ServiceState, Depends(get_state)]


async def get_caller(request: Request, state: State) -> Caller:
    """Who calls: 401 unless authentication is off or the request carries a valid API key."""
    return state.keys.caller(request)


CallerOf = Annotated[Caller, Depends(get_caller)]
NOT_FOUND = {404: {"model": ErrorResponse, "description": "No task with this id (never existed or purged)"}}


def _task_not_found(task_id: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail=f"Task {task_id} not found. Check the id; finished tasks are kept for TASK_RETENTION_DAYS.",
    )


async def _stored_task(state: ServiceState, task_id: str, caller: Caller) -> TaskRecord:
    try:
        record = await asyncio.to_thread(state.store.task, task_id)
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    if record is None or not caller.may_see(record.owner):
        raise _task_not_found(task_id)
    return record


async def get_record(task_id: str, state: State, caller: CallerOf) -> TaskRecord:
    """The caller's task: live from memory while its stream is held there, else from the store."""
    current_task_id.set(task_id)
    stream = state.streams.get_stream(task_id)
    if stream is None:
        return await _stored_task(state, task_id, caller)
    if not caller.may_see(stream.record.owner):
        raise _task_not_found(task_id)
    return stream.record


async def resume_after(
    last_event_id_header: Annotated[
        str, Header(alias="Last-Event-ID", pattern=r"^[0-9]*$", description="resume after this sequence (digits)")
    ] = "",
    last_event_id: Annotated[int, Query(ge=0, description="resume after this sequence")] = 0,
) -> int:
    """The sequence to resume after: the later of the Last-Event-ID header and `?last_event_id=`.

    Capped below SQLite's integer range: any larger position means "after everything" all the same.
    """
    return min(max(last_event_id, int(last_event_id_header or 0)), LAST_POSSIBLE_SEQUENCE)


# --- tasks --------------------------------------------------------------------------------------
@app.post(
    "/api/run_task",
    status_code=202,
    response_model=RunTaskResponse,
    tags=["tasks"],
    summary="Start a task; answers at once, the agents run in the background",
)
async def run_task(
    body: RunTaskRequest, request: Request, response: Response, state: State, caller: CallerOf
) -> RunTaskResponse:
    await state.rate_limit.check(client_of(request, caller))
    task_request = TaskRequest(
        body.user_requirement, body.skip_confirmation, body.stream_tokens, body.priority, caller.owner
    )
    try:
        record, waits = await state.runner.start(task_request)
    except ServiceStopping as exc:
        raise HTTPException(status_code=503, detail=str(exc), headers={"Retry-After": "5"}) from exc
    except QueueFull as exc:
        raise HTTPException(status_code=429, detail=str(exc), headers={"Retry-After": str(exc.retry_after_seconds)}) from exc
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc), headers={"Retry-After": "30"}) from exc
    current_task_id.set(record.task_id)
    audit("task.created", request, caller, record.task_id, priority=body.priority, queued=waits)
    status_url = f"/api/task/{record.task_id}/status"
    response.headers["Location"] = status_url
    return RunTaskResponse(
        task_id=record.task_id,
        status="queued" if waits else "started",
        message="Task queued: every worker is busy" if waits else "Task started",
        stream_url=f"/api/stream/{record.task_id}",
        status_url=status_url,
        stream_token=caller.token_for(record.task_id),
    )


@app.get(
    "/api/stream/{task_id}",
    response_class=EventSourceResponse,
    tags=["tasks"],
    summary="The task's events as Server-Sent Events (replay, then live, closed after the terminal event)",
    responses={200: EVENT_STREAM_RESPONSE, **NOT_FOUND},
)
async def stream_task(
    task_id: str,
    request: Request,
    cursor: Annotated[int, Depends(resume_after)],
    state: State,
    token: Annotated[str, Query(description="the task's stream_token, when authentication is on")] = "",
) -> EventSourceResponse:
    caller = state.keys.stream_caller(request, task_id, token or None)
    await get_record(task_id, state, caller)
    frames = state.streams.frames_after(task_id, cursor)
    client = client_of(request, caller)
    state.stream_slots.take(client)

    async def counted_frames() -> AsyncIterator[bytes]:
        with state.stream_slots.held(client):
            async for frame in frames:
                yield frame

    return EventSourceResponse(
        counted_frames(),
        ping=state.settings.heartbeat_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@app.get("/api/task/{task_id}/status", response_model=TaskStatusResponse, tags=["tasks"], responses=NOT_FOUND)
async def task_status(record: Annotated[TaskRecord, Depends(get_record)], state: State) -> TaskStatusResponse:
    return TaskStatusResponse.of(record, await state.runner.queue_position(record.task_id))


@app.post(
    "/api/task/{task_id}/cancel",
    status_code=202,
    response_model=TaskStatusResponse,
    tags=["tasks"],
    responses=NOT_FOUND,
    summary="Cancel a task; idempotent (a task that has ended is left as it is)",
)
async def cancel_task(task_id: str, request: Request, state: State, caller: CallerOf) -> TaskStatusResponse:
    await get_record(task_id, state, caller)
    if await state.runner.cancel(task_id):
        audit("task.cancelled", request, caller, task_id)
    return await _status_once_stored(task_id, state, caller)


@app.post(
    "/api/task/{task_id}/confirm",
    status_code=202,
    response_model=TaskStatusResponse,
    tags=["tasks"],
    responses={**NOT_FOUND, 409: {"model": ErrorResponse, "description": "The task is not waiting for a confirmation"}},
    summary="Approve the requirements analysis, or reject it with feedback to have it revised",
)
async def confirm_task(
    task_id: str, body: ConfirmRequest, request: Request, state: State, caller: CallerOf
) -> TaskStatusResponse:
    record = await get_record(task_id, state, caller)
    try:
        await state.runner.confirm(task_id, body.approved, body.feedback)
    except NotAwaitingConfirmation as exc:
        raise HTTPException(status_code=409, detail=f"{exc} Its status is {record.status.value}.") from exc
    audit("task.approved" if body.approved else "task.rejected", request, caller, task_id)
    return await _status_once_stored(task_id, state, caller)


async def _status_once_stored(task_id: str, state: ServiceState, caller: Caller) -> TaskStatusResponse:
    """The task's status after what a control request published is stored (bounded wait)."""
    stream = state.streams.get_stream(task_id)
    if stream is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stream.caught_up(), timeout=CONTROL_WAIT_SECONDS)
    return TaskStatusResponse.of(
        await get_record(task_id, state, caller), await state.runner.queue_position(task_id)
    )


@app.get(
    "/api/task/{task_id}/result",
    response_model=TaskResultResponse,
    tags=["tasks"],
    responses={
        **NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The task has not finished yet"},
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
    record = await _stored_task(state, task_id, caller)
    if not record.finished:
        raise HTTPException(
            status_code=409,
            detail=f"Task {record.task_id} is {record.status.value}; its result is ready when it has finished. "
            "Follow its stream or poll its status.",
        )
    result = TaskResultResponse.of(record, with_html=format == "html")
    if format == "markdown":
        return Response(
            content=render_markdown(result, record.requirement),
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="task-{record.task_id}.md"'},
        )
    return result


def render_markdown(result: TaskResultResponse, requirement: str) -> str:
    """All deliverables of a task as one markdown document."""
    parts = [f"# Delivery for task {result.task_id}", f"Status: {result.status.value}", "## Requirement", requirement]
    for deliverable in result.deliverables:
        parts += [f"---\n\n<!-- {deliverable.agent_name}: {deliverable.title} -->", deliverable.content]
    if result.summary:
        parts += ["---", "## Summary", result.summary]
    return "\n\n".join(parts) + "\n"


@app.get("/api/streams", response_model=StreamsResponse, tags=["streams"])
async def list_streams(state: State, caller: CallerOf) -> StreamsResponse:
    return StreamsResponse(
        streams=[
            StreamSummary(
                task_id=stream.task_id,
                status=stream.record.status,
                subscribers=stream.subscribers,
                last_sequence=stream.last_sequence,
                created_at=stream.created_at,
            )
            for stream in state.streams.streams()
            if caller.may_see(stream.record.owner)
        ]
    )


@app.get("/api/tasks", response_model=TasksResponse, tags=["tasks"])
async def list_tasks(
    state: State,
    caller: CallerOf,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=LAST_POSSIBLE_SEQUENCE)] = 0,
) -> TasksResponse:
    try:
        records, total = await asyncio.to_thread(state.store.tasks, limit, offset, caller.owner)
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return TasksResponse(
        tasks=[
            TaskSummary(
                task_id=r.task_id,
                status=r.status,
                requirement=r.requirement[:200],
                created_at=r.created_at,
                finished_at=r.finished_at,
                stream_token=caller.token_for(r.task_id),
            )
            for r in records
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


# --- service ------------------------------------------------------------------------------------
@app.get("/healthz", response_model=HealthResponse, tags=["service"])
async def healthz(request: Request) -> HealthResponse:
    """Liveness: the process answers. Says which model tasks run on."""
    state: ServiceState | None = request.app.state.service
    store = "ok" if state is not None else f"unavailable: {request.app.state.unavailable}"
    settings = get_settings()
    return HealthResponse(
        status="ok",
        model=model_info(settings).public(),
        max_requirement_chars=settings.max_requirement_chars,
        store=store,
        version=VERSION,
    )


@app.get("/readyz", response_model=ReadinessResponse, tags=["service"], responses={503: {"model": ReadinessResponse}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the store answers, events are being stored, the service takes tasks, the model is loaded."""
    state: ServiceState | None = request.app.state.service
    checks: dict[str, str] = {}
    if state is None:
        checks["store"] = f"unavailable: {request.app.state.unavailable}"
    else:
        try:
            await asyncio.to_thread(state.store.check)
            checks["store"] = state.streams.failure or "ok"
        except StoreUnavailable as exc:
            checks["store"] = str(exc)
        checks["tasks"] = "ok" if state.runner.accepting else "shutting down"
        if state.runner.model.provider == "local" and not state.settings.cluster():  # else workers run it
            checks["local_model"] = state.model_error or ("ok" if local_model_server.started else "loading")
    ready = all(value == "ok" for value in checks.values())
    body = ReadinessResponse(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@app.get(
    "/metrics",
    tags=["service"],
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics_text(state: State) -> PlainTextResponse:
    """Tasks, events, workers, subscribers, model calls and HTTP latency, for Prometheus."""
    statuses, queued, busy, workers = state.runner.load()
    subscribers = sum(stream.subscribers for stream in state.streams.streams())
    body = exposition(statuses, queued, busy, workers, subscribers)
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)


@app.get("/test-ui", include_in_schema=False)
async def test_ui() -> FileResponse:
    return FileResponse(STATIC_DIR / "test_ui.html", media_type="text/html; charset=utf-8")


@app.get("/", include_in_schema=False)
async def index() -> dict[str, str]:
    return {"service": app.title, "docs": "/docs", "test_ui": "/test-ui", "health": "/healthz"}


if __name__ == "__main__":
    import uvicorn

    settings = get_settings()
    uvicorn.run("main:app", host=settings.host, port=settings.port, log_level=settings.log_level, log_config=None)
