"""CREW_EXECUTION=process: each crew in a child process, with the same events, control and failures."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ServerProcess, follow_in_background, read_stream, sequences, start_task, status, wait_until

pytestmark = pytest.mark.slow


def parent_and_start(pid: int) -> tuple[int, int] | None:
    """A running process's parent and start time (clock ticks since boot); None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else (int(fields[1]), int(fields[19]))


def crew_processes(service: ServerProcess) -> list[int]:
    """The service's running grandchildren (crews run in children of its forkserver), oldest first."""
    processes = {int(entry): parent_and_start(int(entry)) for entry in os.listdir("/proc") if entry.isdigit()}
    alive = {pid: found for pid, found in processes.items() if found is not None}
    children = {pid for pid, (parent, _) in alive.items() if parent == service.process.pid}
    grandchildren = [pid for pid, (parent, _) in alive.items() if parent in children]
    return sorted(grandchildren, key=lambda pid: alive[pid][1])


def kill_a_crew_process(service: ServerProcess) -> bool:
    """SIGKILL the newest running crew process; False if none was running at that moment."""
    for pid in reversed(crew_processes(service)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue  # it ended between the listing and the kill
        return True
    return False


def llm_calls(service: ServerProcess) -> float:
    text = httpx.get(f"{service.base_url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "delivery_llm_calls_total"
    )


def test_a_task_with_a_revision_runs_in_crew_processes(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(CREW_EXECUTION="process")
    task_id = start_task(service.base_url, "Build a recipe app", skip_confirmation=False, stream_tokens=True)
    events = follow_in_background(service.base_url, task_id)
    status_url = f"{service.base_url}/api/task/{task_id}/status"
    wait_until(lambda: httpx.get(status_url).json()["status"] == "awaiting_confirmation", 120, "the analysis")
    decision = {"approved": False, "feedback": "Add a shopping list."}
    assert httpx.post(f"{service.base_url}/api/task/{task_id}/confirm", json=decision).status_code == 202
    wait_until(lambda: httpx.get(status_url).json()["status"] == "awaiting_confirmation", 120, "the revised analysis")
    assert httpx.post(f"{service.base_url}/api/task/{task_id}/confirm", json={"approved": True}).status_code == 202

    received = events()
    assert received[-1]["event_type"] == "end" and sequences(received) == list(range(1, len(received) + 1))
    outputs = [e for e in received if e["event_type"] == "output"]
    agents = [e["agent_name"] for e in outputs]
    assert agents == ["ProductManager", "ProductManager", "QAEngineer", "SoftwareDeveloper", "Coordinator"]
    assert "Feedback taken into account: Add a shopping list." in outputs[1]["content"]
    assert any(e["event_type"] == "delta" for e in received), "token deltas cross the process boundary"
    usage = status(service.base_url, task_id)["usage"]
    assert usage["total_tokens"] > 0 and usage == received[-1]["metadata"]["usage"]
    assert llm_calls(service) == 5, "model calls made in the crews' processes are counted by the service"
    wait_until(lambda: not crew_processes(service), 30, "the crews' processes to exit")


def test_cancel_stops_the_crew_process(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(CREW_EXECUTION="process", FAKE_LLM_DELAY_MS="50")
    task_id = start_task(service.base_url, stream_tokens=True)
    wait_until(lambda: crew_processes(service), 60, "the crew's process to start")
    wait_until(lambda: status(service.base_url, task_id)["current_agent"], 60, "work")
    assert httpx.post(f"{service.base_url}/api/task/{task_id}/cancel").json()["status"] == "cancelled"
    wait_until(lambda: not crew_processes(service), 30, "the crew's process to stop")
    events = read_stream(service.base_url, task_id)
    assert events[-1]["event_type"] == "cancelled" and sequences(events) == list(range(1, len(events) + 1))


def test_a_crew_process_that_dies_ends_its_task_with_an_error(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(CREW_EXECUTION="process", FAKE_LLM_DELAY_MS="50")
    task_id = start_task(service.base_url, stream_tokens=True)
    events = follow_in_background(service.base_url, task_id)
    wait_until(lambda: status(service.base_url, task_id)["current_agent"], 60, "work")
    wait_until(lambda: kill_a_crew_process(service), 30, "a crew process to kill")

    received = events()
    assert received[-1]["event_type"] == "error" and received[-1]["metadata"]["error_type"] == "worker_died"
    assert "killed by signal 9" in received[-1]["content"]
    assert sequences(received) == list(range(1, len(received) + 1))
    assert read_stream(service.base_url, start_task(service.base_url))[-1]["event_type"] == "end", "the next one runs"


def test_crew_processes_do_not_outlive_a_killed_service(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(CREW_EXECUTION="process", FAKE_LLM_DELAY_MS="500", MAX_CONCURRENT_TASKS="2")
    tasks = [start_task(service.base_url, stream_tokens=True) for _ in range(2)]
    for task_id in tasks:
        wait_until(lambda task=task_id: status(service.base_url, task)["current_agent"], 60, "both crews at work")
    crews = wait_until(lambda: found if len(found := crew_processes(service)) == 2 else None, 30, "two crews")
    service.kill()
    # a crew at 500 ms a chunk takes far longer than this to end by itself
    wait_until(lambda: all(parent_and_start(pid) is None for pid in crews), 10, "the orphaned crews to stop")
