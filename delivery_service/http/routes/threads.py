"""Threads: a task and its follow-ups, every revision in the order they were made."""

from __future__ import annotations

from fastapi import APIRouter

from delivery_service.http.api_models import ThreadResponse, ThreadTask
from delivery_service.http.dependencies import API_ERRORS, NOT_FOUND, State, Who

router = APIRouter(tags=["threads"], responses=API_ERRORS)


@router.get(
    "/api/threads/{thread_id}",
    response_model=ThreadResponse,
    responses=NOT_FOUND,
    summary="Every revision of a thread (its first task and the follow-ups), oldest first",
)
async def thread(thread_id: str, state: State, who: Who) -> ThreadResponse:
    members = await state.delivery.thread(who, thread_id)
    return ThreadResponse(thread_id=thread_id, tasks=[ThreadTask.of(record) for record in members])
