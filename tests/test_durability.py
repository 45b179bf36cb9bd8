"""Durable history: kill -9 and restart, resume across a restart, many writers, graceful stop."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ServerProcess, follow_in_background, read_first, read_stream, sequences, start_task, wait_until

pytestmark = pytest.mark.slow

RESTART_ERROR = "The server restarted while this task was queued or running"
SHUTDOWN_ERROR = "The server was stopped while this task was running"


def stored_events(workdir: Path, task_id: str) -> list[tuple[int, dict[str, Any]]]:
    """A task's events straight from the service's SQLite file, read-only."""
    with sqlite3.connect(f"file:{workdir / 'data' / 'tasks.db'}?mode=ro", uri=True) as database:
        rows = database.execute(
            "SELECT sequence, payload FROM events WHERE task_id = ? ORDER BY sequence", (task_id,)
        ).fetchall()
    return [(sequence, json.loads(payload)) for sequence, payload in rows]


def test_kill_9_then_restart_replays_everything_and_ends_interrupted_tasks(
    start_service: Callable[..., ServerProcess],
) -> None:
    first = start_service(FAKE_LLM_DELAY_MS="30", MAX_CONCURRENT_TASKS="1")
    done = start_task(first.base_url, "finished before the crash")
    done_events = read_stream(first.base_url, done)
    running = start_task(first.base_url, "running at the crash")
    queued = start_task(first.base_url, "queued at the crash")
    seen_before_crash = read_first(first.base_url, running, 8)
    assert httpx.get(f"{first.base_url}/api/task/{queued}/status").json()["status"] == "queued"
    first.kill()

    second = start_service(FAKE_LLM_DELAY_MS="30", MAX_CONCURRENT_TASKS="1")
    assert read_stream(second.base_url, done) == done_events, "a finished task replays identically"

    replay = read_stream(second.base_url, running)
    assert sequences(replay) == list(range(1, len(replay) + 1)), "no gap"
    assert replay[:8] == seen_before_crash, "what a client saw is what was stored"
    assert [e["event_type"] for e in replay].count("error") == 1
    assert replay[-1]["event_type"] == "error" and RESTART_ERROR in replay[-1]["content"]
    assert replay[-1]["metadata"]["error_type"] == "server_restarted"

    resumed = read_stream(second.base_url, running, headers={"Last-Event-ID": "8"})
    assert resumed == replay[8:], "a client that saw 8 events before the crash gets exactly the rest"

    queued_replay = read_stream(second.base_url, queued)
    assert [(e["sequence"], e["event_type"]) for e in queued_replay] == [(1, "action"), (2, "error")]
    assert queued_replay[0]["metadata"] == {"kind": "queued", "queue_position": 1}
    for task_id, last in ((running, replay[-1]), (queued, queued_replay[-1])):
        status = httpx.get(f"{second.base_url}/api/task/{task_id}/status").json()
        assert status["status"] == "failed" and status["error"] == last["content"]
        assert status["last_sequence"] == last["sequence"]
    assert httpx.get(f"{second.base_url}/api/task/{running}/result").json()["status"] == "failed"
    second.stop()

    third = start_service()
    assert read_stream(third.base_url, running) == replay, "a second restart adds nothing"


def test_many_tasks_writing_at_once_store_every_event_once_in_order(
    start_service: Callable[..., ServerProcess],
) -> None:
    service = start_service(MAX_CONCURRENT_TASKS="16")

    async def run_all() -> list[tuple[str, list[dict[str, Any]]]]:
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=100)) as client:
            posts = await asyncio.gather(
                *(
                    client.post(
                        f"{service.base_url}/api/run_task",
                        json={"user_requirement": f"task {n}", "stream_tokens": True},
                    )
                    for n in range(50)
                )
            )
        task_ids = [post.json()["task_id"] for post in posts]
        streams = await asyncio.gather(*(asyncio.to_thread(read_stream, service.base_url, t) for t in task_ids))
        return list(zip(task_ids, streams, strict=True))

    results = asyncio.run(run_all())
    assert len({task_id for task_id, _ in results}) == 50
    for task_id, events in results:
        assert events[-1]["event_type"] == "end"
        stored = stored_events(service.workdir, task_id)
        assert [sequence for sequence, _ in stored] == list(range(1, len(events) + 1)), "each event once, in order"
        assert [payload for _, payload in stored] == events, "stored exactly as delivered"


def sigterm_while_streaming(service: ServerProcess) -> tuple[str, Callable[[], list[dict[str, Any]]]]:
    """Start a task, follow its stream, and send SIGTERM once it has begun; returns its id and events."""
    task_id = start_task(service.base_url)
    streamed = follow_in_background(service.base_url, task_id)
    read_first(service.base_url, task_id, 2)
    service.process.send_signal(signal.SIGTERM)
    return task_id, streamed


def test_sigterm_lets_running_tasks_finish_within_the_grace_period(
    start_service: Callable[..., ServerProcess],
) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="10", SHUTDOWN_GRACE_SECONDS="60")
    task_id, streamed = sigterm_while_streaming(service)
    wait_until(
        lambda: httpx.get(f"{service.base_url}/readyz").json()["checks"].get("tasks") == "shutting down",
        10,
        "the service to start draining",
    )
    refused = httpx.post(f"{service.base_url}/api/run_task", json={"user_requirement": "too late"})
    assert refused.status_code == 503 and "shutting down" in refused.json()["detail"]
    assert refused.headers["retry-after"] == "5"
    service.process.wait(timeout=120)
    assert streamed()[-1]["event_type"] == "end", "the running task finished within the grace period"

    restarted = start_service()
    assert read_stream(restarted.base_url, task_id) == streamed()
    status = httpx.get(f"{restarted.base_url}/api/task/{task_id}/status").json()
    assert status["status"] == "completed"
    assert status["usage"] == streamed()[-1]["metadata"]["usage"], "token usage is stored with the task"
    assert status["usage"]["total_tokens"] > 0


def test_sigterm_past_the_grace_period_ends_tasks_and_closes_streams(
    start_service: Callable[..., ServerProcess],
) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="200", SHUTDOWN_GRACE_SECONDS="0.5")
    task_id, streamed = sigterm_while_streaming(service)
    service.process.wait(timeout=60)
    events = streamed()
    assert events[-1]["event_type"] == "error" and SHUTDOWN_ERROR in events[-1]["content"]
    assert events[-1]["metadata"]["error_type"] == "server_stopped"
    assert sequences(events) == list(range(1, len(events) + 1))

    restarted = start_service()
    assert read_stream(restarted.base_url, task_id) == events, "the stop's error is stored; a restart adds none"
    assert httpx.get(f"{restarted.base_url}/api/task/{task_id}/status").json()["status"] == "failed"
