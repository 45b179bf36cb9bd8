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
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sse_starlette import EventSourceResponse, ServerSentEvent

from local_model import local_model_server
from schemas import (
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
from settings import Settings, get_settings
from stream_manager import StreamLimits, StreamManager, TaskStream
from task_registry import TaskRecord, TaskRegistry
from task_runner import TaskRequest, TaskRunner
from openapi_events import EVENT_STREAM_RESPONSE, install_event_schema
from validation_errors import request_validation_handler

VERSION = "0.1.0"
STATIC_DIR = Path(__file__).parent / "static"

logger = logging.getLogger("multi_agent_service")
logging.basicConfig(level=get_settings().log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class ServiceState:
    """The long-lived objects of one running service, created in the lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.streams = StreamManager(
            StreamLimits(settings.max_stream_bytes_per_task, settings.max_event_content_chars),
            settings.stream_retention_seconds,
        )
        self.registry = TaskRegistry()
        self.runner = TaskRunner(settings, self.streams, self.registry)
        self.model_error: str | None = None


async def _warm_local_model(state: ServiceState) -> None:
    """Load the embedded model off the event loop, so the first task does not pay for it."""
    try:
        await asyncio.to_thread(local_model_server.endpoint, state.settings)
    except Exception as exc:
        state.model_error = str(exc)
        logger.error("the embedded model could not be started: %s", exc)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = ServiceState(get_settings())
    app.state.service = state
    model = state.runner.model
    logger.info("LLM provider %s, model %s", model.provider, model.model)
    if model.note:
        logger.warning(model.note)
    background = [
        asyncio.create_task(
            state.streams.run_cleanup(state.settings.stream_cleanup_interval_seconds, state.registry.forget)
        )
    ]
    if model.provider == "local":
        background.append(asyncio.create_task(_warm_local_model(state)))
    try:
        yield
    finally:
        for job in background:
            job.cancel()
        state.runner.shutdown()


app = FastAPI(
    title="Multi-agent software delivery",
    version=VERSION,
    summary="Four LLM agents turn a requirement into an analysis, a test plan, a design and a review, streamed live.",
    lifespan=lifespan,
)
app.add_exception_handler(RequestValidationError, request_validation_handler)
install_event_schema(app)
app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


# --- dependencies -------------------------------------------------------------------------------
async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


State = Annotated[ServiceState, Depends(get_state)]
NOT_FOUND = {404: {"model": ErrorResponse, "description": "No task with this id (never existed or expired)"}}


def _task_not_found(task_id: str) -> HTTPException:
    return HTTPException(
        status_code=404,
        detail=f"Task {task_id} not found. Check the id; finished tasks are kept for STREAM_RETENTION_SECONDS.",
    )


async def get_record(task_id: str, state: State) -> TaskRecord:
    record = state.registry.get(task_id)
    if record is None:
        raise _task_not_found(task_id)
    return record


async def get_stream(task_id: str, state: State) -> TaskStream:
    stream = state.streams.get_stream(task_id)
    if stream is None:
        raise _task_not_found(task_id)
    return stream


async def resume_after(
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", description="resume after this sequence")
    ] = None,
    last_event_id: Annotated[int | None, Query(ge=0, description="resume after this sequence")] = None,
) -> int:
    """The sequence to resume after: the later of the Last-Event-ID header and `?last_event_id=`."""
    candidates = [last_event_id or 0]
    if last_event_id_header is not None and last_event_id_header.strip():
        value = last_event_id_header.strip()
        if not value.isdigit():
            raise HTTPException(
                status_code=422,
                detail=f"Last-Event-ID must be a non-negative event sequence number, got {value[:40]!r}.",
            )
        candidates.append(int(value))
    return max(candidates)


# --- tasks --------------------------------------------------------------------------------------
@app.post(
    "/api/run_task",
    status_code=202,
    response_model=RunTaskResponse,
    tags=["tasks"],
    summary="Start a task; answers at once, the agents run in the background",
)
async def run_task(body: RunTaskRequest, response: Response, state: State) -> RunTaskResponse:
    record, waits = state.runner.start(
        TaskRequest(body.user_requirement, body.skip_confirmation, body.stream_tokens, body.priority)
    )
    status_url = f"/api/task/{record.task_id}/status"
    response.headers["Location"] = status_url
    return RunTaskResponse(
        task_id=record.task_id,
        status="queued" if waits else "started",
        message="Task queued: every worker is busy" if waits else "Task started",
        stream_url=f"/api/stream/{record.task_id}",
        status_url=status_url,
    )


@app.get(
    "/api/stream/{task_id}",
    response_class=EventSourceResponse,
    tags=["tasks"],
    summary="The task's events as Server-Sent Events (replay, then live, closed after the terminal event)",
    responses={200: EVENT_STREAM_RESPONSE, **NOT_FOUND},
)
async def stream_task(
    stream: Annotated[TaskStream, Depends(get_stream)],
    cursor: Annotated[int, Depends(resume_after)],
    state: State,
) -> EventSourceResponse:
    return EventSourceResponse(
        stream.frames_after(cursor),
        ping=state.settings.heartbeat_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="ping"),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@app.get("/api/task/{task_id}/status", response_model=TaskStatusResponse, tags=["tasks"], responses=NOT_FOUND)
async def task_status(record: Annotated[TaskRecord, Depends(get_record)]) -> TaskStatusResponse:
    return TaskStatusResponse.of(record)


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
    record: Annotated[TaskRecord, Depends(get_record)],
    format: Annotated[Literal["json", "markdown"], Query(description="json (default) or markdown")] = "json",
) -> Response | TaskResultResponse:
    if not record.finished:
        raise HTTPException(
            status_code=409,
            detail=f"Task {record.task_id} is {record.status.value}; its result is ready when it has finished. "
            "Follow its stream or poll its status.",
        )
    result = TaskResultResponse.of(record)
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
async def list_streams(state: State) -> StreamsResponse:
    summaries = []
    for info in state.streams.list_streams():
        record = state.registry.get(info.task_id)
        if record is not None:
            summaries.append(
                StreamSummary(
                    task_id=info.task_id,
                    status=record.status,
                    subscribers=info.subscribers,
                    last_sequence=info.last_sequence,
                    created_at=info.created_at,
                )
            )
    return StreamsResponse(streams=summaries)


@app.get("/api/tasks", response_model=TasksResponse, tags=["tasks"])
async def list_tasks(
    state: State,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> TasksResponse:
    records = state.registry.newest_first(limit, offset)
    return TasksResponse(
        tasks=[
            TaskSummary(
                task_id=r.task_id,
                status=r.status,
                requirement=r.requirement[:200],
                created_at=r.created_at,
                finished_at=r.finished_at,
            )
            for r in records
        ],
        total=len(state.registry),
        limit=limit,
        offset=offset,
    )


# --- service ------------------------------------------------------------------------------------
@app.get("/healthz", response_model=HealthResponse, tags=["service"])
async def healthz(state: State) -> HealthResponse:
    return HealthResponse(status="ok", model=state.runner.model.public(), tasks=len(state.registry), version=VERSION)


@app.get("/readyz", response_model=ReadinessResponse, tags=["service"], responses={503: {"model": ReadinessResponse}})
async def readyz(state: State) -> JSONResponse:
    checks = {"worker_pool": "ok"}
    if state.runner.model.provider == "local":
        if state.model_error:
            checks["local_model"] = state.model_error
        else:
            checks["local_model"] = "ok" if local_model_server.started else "loading"
    ready = all(value == "ok" for value in checks.values())
    body = ReadinessResponse(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@app.get("/test-ui", include_in_schema=False)
async def test_ui() -> FileResponse:
    return FileResponse(STATIC_DIR / "test_ui.html", media_type="text/html; charset=utf-8")


@app.get("/", include_in_schema=False)
async def index() -> dict[str, str]:
    return {"service": app.title, "docs": "/docs", "test_ui": "/test-ui", "health": "/healthz"}


if __name__ == "__main__":
    import uvicorn

    settings = get_settings()
    uvicorn.run("main:app", host=settings.host, port=settings.port, log_level=settings.log_level)
