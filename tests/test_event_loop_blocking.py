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

    async def run() -> dict[str, int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
                return await answers(client, blockbuster)

    assert asyncio.run(run()) == {
        "healthz": 200,
        "readyz": 200,
        "status": 200,
        "result": 200,
        "markdown": 200,
        "list": 200,
        "thread": 200,
        "webhooks": 200,
        "streams": 200,
        "unfinished result": 409,
        "unknown task": 404,
        "unknown thread": 404,
        "bad body": 422,
        "confirm when not asked": 409,
        "cancel": 202,
    }


async def answers(client: httpx.AsyncClient, blockbuster: BlockBuster) -> dict[str, int]:
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

    blockbuster.activate()
    try:
        return {
            "healthz": (await client.get("/healthz")).status_code,
            "readyz": (await client.get("/readyz")).status_code,
            "status": (await client.get(f"/api/task/{done_id}/status")).status_code,
            "result": (await client.get(f"/api/task/{done_id}/result")).status_code,
            "markdown": (await client.get(f"/api/task/{done_id}/result", params={"format": "markdown"})).status_code,
            "list": (await client.get("/api/tasks")).status_code,
            "thread": (await client.get(f"/api/threads/{done_id}")).status_code,
            "webhooks": (await client.get(f"/api/task/{done_id}/webhooks")).status_code,
            "streams": (await client.get("/api/streams")).status_code,
            "unfinished result": (await client.get(f"/api/task/{waiting_id}/result")).status_code,
            "unknown task": (await client.get(f"/api/task/{UNKNOWN_ID}/status")).status_code,
            "unknown thread": (await client.get(f"/api/threads/{UNKNOWN_ID}")).status_code,
            "bad body": (await client.post("/api/run_task", json={"user_requirement": ""})).status_code,
            "confirm when not asked": (
                await client.post(f"/api/task/{done_id}/confirm", json={"approved": True})
            ).status_code,
            "cancel": (await client.post(f"/api/task/{waiting_id}/cancel")).status_code,
        }
    finally:
        blockbuster.deactivate()


def test_blockbuster_catches_a_blocking_call_on_the_loop(blockbuster: BlockBuster) -> None:
    """The check can fail: a `time.sleep` inside a coroutine is refused."""

    async def blocks() -> None:
        time.sleep(0.001)

    blockbuster.activate()
    with pytest.raises(BlockingError):
        asyncio.run(blocks())
