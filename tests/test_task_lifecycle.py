"""Retention (finished tasks leave memory, then the store), custom events handlers, the memory bound."""

from __future__ import annotations

import httpx
import pytest

from conftest import AGENT_NAMES, StartService, read_stream, start_task, wait_until


def test_finished_tasks_leave_memory_but_replay_from_the_store(start_service: StartService) -> None:
    service = start_service(STREAM_RETENTION_SECONDS="0", STREAM_CLEANUP_INTERVAL_SECONDS="0.2")
    base = service.base_url
    task_id = start_task(base)
    live = read_stream(base, task_id)
    assert live[-1]["event_type"] == "end"
    wait_until(
        lambda: all(s["task_id"] != task_id for s in httpx.get(f"{base}/api/streams").json()["streams"]),
        30,
        "the finished stream to leave memory",
    )
    assert read_stream(base, task_id) == live, "replayed from the store with the same framing"
    assert read_stream(base, task_id, headers={"Last-Event-ID": "10"}) == live[10:]
    past_the_end = httpx.get(f"{base}/api/stream/{task_id}", params={"last_event_id": len(live)})
    assert past_the_end.status_code == 204, "nothing can follow a finished task's last event"
    status = httpx.get(f"{base}/api/task/{task_id}/status").json()
    assert status["status"] == "completed" and status["last_sequence"] == len(live)
    result = httpx.get(f"{base}/api/task/{task_id}/result").json()
    assert [d["content"] for d in result["deliverables"]] == [e["content"] for e in live if e["event_type"] == "output"]
    assert httpx.get(f"{base}/api/tasks").json()["tasks"][0]["task_id"] == task_id


def test_finished_tasks_are_purged_after_task_retention(start_service: StartService) -> None:
    service = start_service(
        TASK_RETENTION_DAYS="0.00001", STREAM_RETENTION_SECONDS="0", STREAM_CLEANUP_INTERVAL_SECONDS="0.2"
    )
    base = service.base_url
    task_id = start_task(base)
    assert read_stream(base, task_id)[-1]["event_type"] == "end"
    wait_until(lambda: httpx.get(f"{base}/api/task/{task_id}/status").status_code == 404, 30, "the task to be purged")
    assert httpx.get(f"{base}/api/stream/{task_id}").status_code == 404
    assert httpx.get(f"{base}/api/task/{task_id}/result").status_code == 404
    assert httpx.get(f"{base}/api/tasks").json()["total"] == 0


@pytest.mark.parametrize("execution", ["thread", "process"])
def test_a_custom_events_handler_adds_its_events(start_service: StartService, execution: str) -> None:
    service = start_service(CREW_EVENTS_HANDLER="custom_handler:WordCountingHandler", CREW_EXECUTION=execution)
    events = read_stream(service.base_url, start_task(service.base_url))
    counts = [e for e in events if e["metadata"].get("kind") == "word_count"]
    assert [e["agent_name"] for e in counts] == AGENT_NAMES
    for count in counts:
        output = events[count["sequence"] - 2]
        assert output["event_type"] == "output" and count["content"] == f"{len(output['content'].split())} words"
    assert events[-1]["event_type"] == "end"


@pytest.mark.parametrize("execution", ["thread", "process"])
def test_a_task_over_its_memory_bound_ends_with_an_error(start_service: StartService, execution: str) -> None:
    service = start_service(MAX_STREAM_BYTES_PER_TASK="65536", MAX_REQUIREMENT_CHARS="100000", CREW_EXECUTION=execution)
    task_id = start_task(service.base_url, "long requirement " * 5000, stream_tokens=True)
    events = read_stream(service.base_url, task_id)
    assert events[-1]["event_type"] == "error"
    assert "MAX_STREAM_BYTES_PER_TASK" in events[-1]["content"]
    assert events[-1]["metadata"]["error_type"] == "stream_limit"
    assert sum(len(e["content"]) for e in events[:-1]) < 65536
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
