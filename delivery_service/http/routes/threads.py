"""Threads: a task and its follow-ups, every revision in the order they were made."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from delivery_service.http.api_models import ThreadResponse, ThreadTask
from delivery_service.http.dependencies import API_ERRORS, NOT_FOUND, CallerOf, State
from delivery_service.store.base import StoreUnavailable

router = APIRouter(tags=["threads"], responses=API_ERRORS)


@router.get(
    "/api/threads/{thread_id}",
    response_model=ThreadResponse,
    responses=NOT_FOUND,
    summary="Every revision of a thread (its first task and the follow-ups), oldest first",
)
async def thread(thread_id: str, state: State, caller: CallerOf) -> ThreadResponse:
    try:
        records = await state.engine.thread(thread_id)
    except StoreUnavailable as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    members = [record for record in records if record.thread_id == thread_id and caller.may_see(record.owner)]
    if not members or members[0].task_id != thread_id:
        raise HTTPException(
            status_code=404,
            detail=f"Thread {thread_id} not found: a thread's id is the id of its first task. Check the id; finished "
            "tasks are kept for TASK_RETENTION_DAYS.",
        )
    return ThreadResponse(thread_id=thread_id, tasks=[ThreadTask.of(record) for record in members])
