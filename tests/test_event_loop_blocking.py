"""Nothing blocks the event loop (ARCHITECTURE.md): the routes that stream nothing, in process, under
`blockbuster`, which fails any blocking call (file, socket, sleep, lock...) made on the loop's thread.

The app runs with its lifespan on this thread's loop, over httpx's ASGITransport, on a temporary DATA_DIR
with the scripted model.
Blockbuster is switched on once the service has started (its startup may open files) and off before it
stops, so what it judges is the requests alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from blockbuster import BlockBuster, BlockingError
from fastapi import FastAPI

from conftest import TEST_DEFAULTS
from delivery_service.settings import Settings, get_settings

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FastAPI]:
    """The service's app on its own data, with the same test defaults as the real servers."""
    monkeypatch.chdir(tmp_path)  # no developer's .env
    for name, value in {**TEST_DEFAULTS, "DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    import main

    yield main.create_app(Settings())
    get_settings.cache_clear()


@pytest.fixture
def blockbuster() -> Iterator[BlockBuster]:
    """Blockbuster as Starlette's own suite uses it, switched on by the test
    (`activate()`) once what it should not judge is done, and off after it whatever happens."""
    busted = BlockBuster()
    yield busted
    busted.deactivate()


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """`wait_until` for a coroutine: poll `condition` until it holds, or fail after 60 s."""
    async with asyncio.timeout(60):
        while not await condition():
            await asyncio.sleep(0.05)
    assert await condition(), what


def test_routes_that_stream_nothing_never_block_the_loop(app: FastAPI, blockbuster: BlockBuster) -> None:
    """The app's lifespan runs on this thread's loop (its signal handlers need the main thread)."""

    async def run() -> tuple[dict[str, int], dict[str, int]]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                return await answers(client, blockbuster)

    answered, expected = asyncio.run(run())
    assert answered == expected


async def answers(client: httpx.AsyncClient, blockbuster: BlockBuster) -> tuple[dict[str, int], dict[str, int]]:
    """Each request's status code under blockbuster, and the one it should have."""
    # A finished task and one waiting for a decision, made before the check: the crews run on threads.
    done = await client.post("/api/run_task", json={"user_requirement": "Build a todo app", "skip_confirmation": True})
    waiting = await client.post("/api/run_task", json={"user_requirement": "Build a wiki", "skip_confirmation": False})
    done_id, waiting_id = done.json()["task_id"], waiting.json()["task_id"]

    def has_status(task_id: str, wanted: str) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return bool((await client.get(f"/api/task/{task_id}/status")).json()["status"] == wanted)

        return check

    await until(has_status(done_id, "completed"), "the first task to finish")
    await until(has_status(waiting_id, "awaiting_confirmation"), "the second task's analysis")

    # Each request is a coroutine, sent when awaited below, in this order.
    requests = {
        "healthz": (200, client.get("/healthz")),
        "readyz": (200, client.get("/readyz")),
        "status": (200, client.get(f"/api/task/{done_id}/status")),
        "result": (200, client.get(f"/api/task/{done_id}/result")),
        "markdown": (200, client.get(f"/api/task/{done_id}/result", params={"format": "markdown"})),
        "list": (200, client.get("/api/tasks")),
        "thread": (200, client.get(f"/api/threads/{done_id}")),
        "webhooks": (200, client.get(f"/api/task/{done_id}/webhooks")),
        "streams": (200, client.get("/api/streams")),
        "unfinished result": (409, client.get(f"/api/task/{waiting_id}/result")),
        "unknown task": (404, client.get(f"/api/task/{UNKNOWN_ID}/status")),
        "unknown thread": (404, client.get(f"/api/threads/{UNKNOWN_ID}")),
        "bad body": (422, client.post("/api/run_task", json={"user_requirement": ""})),
        "confirm when not asked": (409, client.post(f"/api/task/{done_id}/confirm", json={"approved": True})),
        "cancel": (202, client.post(f"/api/task/{waiting_id}/cancel")),
    }
    blockbuster.activate()
    try:
        answered = {name: (await request).status_code for name, (_, request) in requests.items()}
    finally:
        blockbuster.deactivate()
    return answered, {name: expected for name, (expected, _) in requests.items()}


def test_blockbuster_catches_a_blocking_call_on_the_loop(blockbuster: BlockBuster) -> None:
    """The check can fail: a `time.sleep` inside a coroutine is refused."""

    async def blocks() -> None:
        time.sleep(0.001)

    blockbuster.activate()
    with pytest.raises(BlockingError):
        asyncio.run(blocks())
