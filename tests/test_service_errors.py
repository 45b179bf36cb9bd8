"""The service's refusals: each `ServiceError` through the app's one handler, and the same words on every door.

In-process, every subclass of `ServiceError` (the store's and the runners' too) is raised from a route of
the real app and must come back with its status, `{"detail": ...}` and Retry-After. Against a running
service (both modes), REST and MCP refuse the same request with the same message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi.testclient import TestClient
from mcp import ClientSession

import main
from conftest import Mode, start_task, wait_until
from delivery_service.runs.control_messages import NotAwaitingConfirmation, QueueFull, ThreadFull
from delivery_service.service_errors import (
    Conflict,
    InvalidRequest,
    LimitReached,
    NotFound,
    ServiceError,
    ServiceStopping,
    Unavailable,
)
from delivery_service.settings import Settings
from delivery_service.store.base import StoreUnavailable
from test_mcp_and_ag_ui import with_session

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"

# One instance of every ServiceError subclass, with the status and Retry-After it must answer.
EXPECTED: dict[type[ServiceError], tuple[ServiceError, int, str | None]] = {
    InvalidRequest: (InvalidRequest("webhook_url", "refused"), 422, None),
    NotFound: (NotFound("no such task"), 404, None),
    Conflict: (Conflict("not in that state"), 409, None),
    NotAwaitingConfirmation: (NotAwaitingConfirmation("not waiting"), 409, None),
    ThreadFull: (ThreadFull(Settings(_env_file=None), "thread-1"), 409, None),  # type: ignore[call-arg]
    LimitReached: (LimitReached("too many open streams"), 429, "5"),
    QueueFull: (QueueFull("the line is full"), 429, "30"),
    Unavailable: (Unavailable("the store is down"), 503, "30"),
    StoreUnavailable: (StoreUnavailable("database is locked"), 503, "30"),
    ServiceStopping: (ServiceStopping(), 503, "5"),
}


def _subclasses(cls: type[ServiceError]) -> set[type[ServiceError]]:
    found = set(cls.__subclasses__())
    return found.union(*(_subclasses(sub) for sub in found))


def test_every_service_error_maps_to_its_status_and_retry_after_through_the_one_handler() -> None:
    assert _subclasses(ServiceError) == set(EXPECTED), "a new ServiceError needs its line in EXPECTED"
    app = main.create_app(Settings(_env_file=None))  # type: ignore[call-arg]

    async def refuse(name: str) -> None:
        raise next(error for cls, (error, _, _) in EXPECTED.items() if cls.__name__ == name)

    app.add_api_route("/refuse/{name}", refuse)
    client = TestClient(app)  # no lifespan: the route needs no service
    for cls, (error, status, retry_after) in EXPECTED.items():
        response = client.get(f"/refuse/{cls.__name__}")
        assert response.status_code == status, cls
        assert response.headers.get("retry-after") == retry_after, cls
        assert response.json() == {"detail": error.detail}, cls
    assert client.get("/refuse/InvalidRequest").json()["detail"][0]["loc"] == ["body", "webhook_url"]
    assert client.get("/refuse/LimitReached").headers["retry-after"] == "5"
    assert LimitReached("rate limit", 17).retry_after == 17, "a limit's own wait overrides the class's"


def test_rest_and_mcp_refuse_the_same_request_in_the_same_words(mode: Mode) -> None:
    base = mode.fast().base_url
    finished = start_task(base)
    wait_until(lambda: httpx.get(f"{base}/api/task/{finished}/status").json()["status"] == "completed", 60, "end")
    rest = {
        "unknown status": httpx.get(f"{base}/api/task/{UNKNOWN_ID}/status"),
        "unknown cancel": httpx.post(f"{base}/api/task/{UNKNOWN_ID}/cancel"),
        "confirm of a finished task": httpx.post(f"{base}/api/task/{finished}/confirm", json={"approved": True}),
    }

    async def use(session: ClientSession) -> dict[str, Any]:
        calls = {
            "unknown status": ("get_delivery", {"task_id": UNKNOWN_ID}),
            "unknown cancel": ("cancel_delivery", {"task_id": UNKNOWN_ID}),
            "confirm of a finished task": ("confirm_delivery", {"task_id": finished, "approved": True}),
        }
        return {name: await session.call_tool(tool, arguments) for name, (tool, arguments) in calls.items()}

    tools = asyncio.run(with_session(base, None, use))
    for name, response in rest.items():
        assert response.status_code in (404, 409), (name, response.text)
        assert tools[name].isError, name
        said = tools[name].content[0].text  # type: ignore[union-attr]  # "Error executing tool <name>: <ours>"
        assert said.partition(": ")[2] == f"{response.status_code}: {response.json()['detail']}", (name, said)
