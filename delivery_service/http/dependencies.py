"""FastAPI dependencies the routers share: the running service, the caller, the task a path names."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request

from delivery_service.http.api_models import ErrorResponse
from delivery_service.http.auth import Caller
from delivery_service.http.lifespan import ServiceState, running_service
from delivery_service.service_layer.delivery import Requester
from delivery_service.store.records import TaskRecord

LAST_POSSIBLE_SEQUENCE = 2**62


def error_response(description: str) -> dict[str, Any]:
    """An OpenAPI response entry with the API's error body, `{"detail": ...}`."""
    return {"model": ErrorResponse, "description": description}


NOT_FOUND = {404: error_response("No task with this id (never existed, purged, or another key's)")}
# What any route under /api may answer, declared once per router.
API_ERRORS = {
    401: error_response("API_KEYS is set and the request carries no valid key"),
    503: error_response("The service is stopping or its task store is unavailable; retry shortly"),
}
TOO_MANY = {429: error_response("A limit of this client was reached; retry after Retry-After seconds")}


async def get_state(request: Request) -> ServiceState:
    return running_service(request.app.state)


State = Annotated[ServiceState, Depends(get_state)]


async def get_caller(request: Request, state: State) -> Caller:
    """Who calls: 401 unless authentication is off or the request carries a valid API key."""
    return state.keys.caller(request)


CallerOf = Annotated[Caller, Depends(get_caller)]


def requester_of(request: Request, caller: Caller) -> Requester:
    """The service layer's name for who asks: the caller's key id and the client's address."""
    return Requester(caller.owner, request.client.host if request.client else None, caller.name)


async def get_requester(request: Request, caller: CallerOf) -> Requester:
    return requester_of(request, caller)


Who = Annotated[Requester, Depends(get_requester)]


async def get_record(task_id: str, state: State, who: Who) -> TaskRecord:
    """The caller's task as the engine knows it now (embedded: live from memory while its stream is held there)."""
    return await state.delivery.task(who, task_id)


SEQUENCE_DIGITS = r"^[0-9]*$"


def _position(digits: str) -> int:
    """A resume position from its digits, capped at LAST_POSSIBLE_SEQUENCE without converting more
    digits than that needs (int() refuses 4,301 digits or more, and a longer number takes longer)."""
    significant = digits.lstrip("0")
    if len(significant) > len(str(LAST_POSSIBLE_SEQUENCE)):
        return LAST_POSSIBLE_SEQUENCE
    return min(int(significant or 0), LAST_POSSIBLE_SEQUENCE)


async def resume_after(
    last_event_id_header: Annotated[
        str, Header(alias="Last-Event-ID", pattern=SEQUENCE_DIGITS, description="resume after this sequence (digits)")
    ] = "",
    last_event_id: Annotated[
        str, Query(pattern=SEQUENCE_DIGITS, description="resume after this sequence (digits), like Last-Event-ID")
    ] = "",
) -> int:
    """The sequence to resume after: the later of the Last-Event-ID header and `?last_event_id=`.

    Both are digits of any length: any position past SQLite's integer range means "after everything".
    """
    return max(_position(last_event_id), _position(last_event_id_header))
