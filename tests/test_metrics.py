"""GET /metrics: Prometheus text with tasks, events, workers, subscribers, model calls and HTTP latency."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import ServerProcess, read_stream, start_task


def samples(service: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{service.base_url}/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_metrics_follow_tasks_events_and_calls(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(MAX_CONCURRENT_TASKS="3")
    task_id = start_task(service.base_url, "measured task")
    events = read_stream(service.base_url, task_id)
    httpx.post(f"{service.base_url}/api/task/{task_id}/cancel")
    metrics = samples(service)

    assert metrics[("delivery_tasks_started_total", ())] == 1
    assert metrics[("delivery_tasks_finished_total", (("outcome", "completed"),))] == 1
    for kind in {event["event_type"] for event in events}:
        count = sum(1 for event in events if event["event_type"] == kind)
        assert metrics[("delivery_events_total", (("event_type", kind),))] == count
    assert metrics[("delivery_event_visible_seconds_count", ())] == len(events)
    calls = (("model", "scripted"), ("outcome", "ok"), ("provider", "fake"))
    assert metrics[("delivery_llm_calls_total", calls)] == 4, "one model call per agent"
    tokens = (("kind", "completion"), ("model", "scripted"), ("provider", "fake"))
    assert metrics[("delivery_llm_tokens_total", tokens)] > 0
    assert metrics[("delivery_workers", ())] == 3 and metrics[("delivery_workers_busy", ())] == 0
    assert metrics[("delivery_queue_depth", ())] == 0 and metrics[("delivery_subscribers", ())] == 0
    started = (("method", "POST"), ("route", "/api/run_task"), ("status", "202"))
    assert metrics[("delivery_http_response_start_seconds_count", started)] == 1
    status_route = (("method", "POST"), ("route", "/api/task/{task_id}/cancel"), ("status", "202"))
    assert metrics[("delivery_http_response_start_seconds_count", status_route)] == 1
    text = httpx.get(f"{service.base_url}/metrics").text
    assert task_id not in text, "labels name routes, never task ids"
    assert not re.search(r"route=\"/api/stream/[0-9a-f-]{36}\"", text)


def test_json_logs_are_one_object_per_line_with_the_task_id(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(LOG_FORMAT="json", LOG_LEVEL="info", API_KEYS="logged-key")
    headers = {"Authorization": "Bearer logged-key"}
    created = httpx.post(f"{service.base_url}/api/run_task", json={"user_requirement": "log me"}, headers=headers)
    task_id = created.json()["task_id"]
    assert read_stream(service.base_url, task_id, headers=headers)[-1]["event_type"] == "end"

    records = [json.loads(line) for line in service.log().splitlines() if line.strip()]
    assert records, "the service logged"
    assert all({"time", "level", "logger", "message", "task_id"} <= record.keys() for record in records)
    assert any(record["logger"].startswith("uvicorn") for record in records), "uvicorn's own lines are JSON too"
    mine = {record["message"] for record in records if record["task_id"] == task_id}
    assert {"task started on fake/scripted", "task completed"} <= mine, "worker-thread lines carry the task id"
    audit_lines = [json.loads(record["message"]) for record in records if record["logger"] == "audit"]
    assert [(line["action"], line["task_id"]) for line in audit_lines] == [("task.created", task_id)]
    assert all(record["task_id"] == task_id for record in records if record["logger"] == "audit")
    assert next(r for r in records if "LLM provider" in r["message"])["task_id"] is None, "no task, no id"
    assert "logged-key" not in service.log()
