"""Streams: a task's events as Server-Sent Events (replay, then live), and the streams held in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from delivery_service.http.api_models import StreamsResponse, StreamSummary
from delivery_service.http.dependencies import (
    API_ERRORS,
    NOT_FOUND,
    TOO_MANY,
    State,
    Who,
    requester_of,
    resume_after,
)
from delivery_service.http.openapi import EVENT_STREAM_RESPONSE

router = APIRouter(responses=API_ERRORS)

NOTHING_FOLLOWS = {
    204: {
        "description": "The task has finished and its last event is at or before the resume position "
        "(`Last-Event-ID` or `last_event_id`): nothing can follow, and EventSource stops reconnecting"
    }
}


@router.get(
    "/api/stream/{task_id}",
    response_class=EventSourceResponse,
    tags=["tasks"],
    summary="The task's events as Server-Sent Events (replay, then live, closed after the terminal event)",
    responses={200: EVENT_STREAM_RESPONSE, **NOTHING_FOLLOWS, **NOT_FOUND, **TOO_MANY},
)
async def stream_task(
    task_id: str,
    request: Request,
    cursor: Annotated[int, Depends(resume_after)],
    state: State,
    token: Annotated[str, Query(description="the task's stream_token, when authentication is on")] = "",
) -> Response:
    who = requester_of(request, state.keys.stream_caller(request, task_id, token or None))
    record = await state.delivery.task(who, task_id)
    if record.finished and cursor >= record.last_sequence:
        return Response(status_code=204)
    frames = state.engine.frames_after(task_id, cursor)
    client = who.client
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


@router.get("/api/streams", response_model=StreamsResponse, tags=["streams"])
async def list_streams(state: State, who: Who) -> StreamsResponse:
    return StreamsResponse(
        streams=[
            StreamSummary(
                task_id=stream.task_id,
                status=stream.record.status,
                subscribers=stream.subscribers,
                last_sequence=stream.last_sequence,
                created_at=stream.created_at,
            )
            for stream in state.engine.streams()
            if who.may_see(stream.record.owner)
        ]
    )
