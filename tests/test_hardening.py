"""Abuse limits, headers, audit lines, hostile input, and faults: disconnects and a dying model server."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess, read_stream, start_task, wait_until

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


def open_subscribers(service: ServerProcess) -> int:
    return sum(stream["subscribers"] for stream in httpx.get(f"{service.base_url}/api/streams").json()["streams"])


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_task_creation_is_rate_limited_per_key(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(RATE_LIMIT="2/minute", API_KEYS="first-key,second-key")
    first, second = {"Authorization": "Bearer first-key"}, {"Authorization": "Bearer second-key"}
    body = {"user_requirement": "rate limited"}
    for _ in range(2):
        assert httpx.post(f"{service.base_url}/api/run_task", json=body, headers=first).status_code == 202
    limited = httpx.post(f"{service.base_url}/api/run_task", json=body, headers=first)
    assert limited.status_code == 429 and 0 < int(limited.headers["retry-after"]) <= 60
    assert "RATE_LIMIT" in limited.json()["detail"]
    assert httpx.post(f"{service.base_url}/api/run_task", json=body, headers=second).status_code == 202


def test_open_streams_are_capped_per_client(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(MAX_STREAMS_PER_CLIENT="2", FAKE_LLM_DELAY_MS="50")
    task_id = start_task(service.base_url)
    with httpx.Client(timeout=30) as client:
        with (
            client.stream("GET", f"{service.base_url}/api/stream/{task_id}"),
            client.stream("GET", f"{service.base_url}/api/stream/{task_id}"),
        ):
            refused = httpx.get(f"{service.base_url}/api/stream/{task_id}")
            assert refused.status_code == 429 and "MAX_STREAMS_PER_CLIENT" in refused.json()["detail"]
    wait_until(lambda: open_subscribers(service) == 0, 30, "the closed streams to be released")
    assert read_stream(service.base_url, task_id)[-1]["event_type"] == "end"


def test_headers_cors_body_cap_and_audit(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(CORS_ORIGINS="https://app.example", API_KEYS="audited-key", LOG_LEVEL="info")
    base = service.base_url
    ui = httpx.get(f"{base}/test-ui")
    policy = ui.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    for response in (ui, httpx.get(f"{base}/healthz")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"

    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    allowed = httpx.options(f"{base}/api/run_task", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-credentials" not in allowed.headers
    foreign = httpx.options(f"{base}/api/run_task", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers

    huge = httpx.post(
        f"{base}/api/run_task",
        content=b'{"user_requirement": "' + b"x" * 1_000_000 + b'"}',
        headers={"Content-Type": "application/json", "Authorization": "Bearer audited-key"},
    )
    assert huge.status_code == 413

    headers = {"Authorization": "Bearer audited-key"}
    created = httpx.post(f"{base}/api/run_task", json={"user_requirement": "audit me"}, headers=headers)
    task_id = created.json()["task_id"]
    httpx.post(f"{base}/api/task/{task_id}/cancel", headers=headers)
    lines = [json.loads(line.split("audit: ", 1)[1]) for line in service.log().splitlines() if " audit: " in line]
    actions = [(line["action"], line["task_id"]) for line in lines]
    assert ("task.created", task_id) in actions and ("task.cancelled", task_id) in actions
    assert all(line["key_id"] and line["address"] == "127.0.0.1" for line in lines)
    assert "audited-key" not in service.log()


@pytest.mark.parametrize(
    "content",
    [
        b'{"user_requirement": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"user_requirement": "\\u0000"}',
        b'{"user_requirement": "ok", "priority": 1e400}',
        b'{"user_requirement": "ok", "skip_confirmation": null}',
    ],
)
def test_hostile_bodies_get_clear_errors(slow_service: ServerProcess, content: bytes) -> None:
    response = httpx.post(
        f"{slow_service.base_url}/api/run_task", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


# Past Python's int() limit of 4,300 digits, and far past any sequence.
HUGE_POSITION = "9" * 5000


@pytest.mark.parametrize("digits", ["9" * 40, "9" * 4301, HUGE_POSITION])
@pytest.mark.parametrize("where", ["header", "query"])
def test_resume_positions_of_any_length_mean_after_everything(
    fake_service: ServerProcess, where: str, digits: str
) -> None:
    base = fake_service.base_url
    task_id = start_task(base)
    events = read_stream(base, task_id)
    position = {"headers": {"Last-Event-ID": digits}} if where == "header" else {"params": {"last_event_id": digits}}
    assert httpx.get(f"{base}/api/stream/{task_id}", **position).status_code == 204
    padded = {"Last-Event-ID": "0" * 5000 + str(len(events) - 1)}
    assert read_stream(base, task_id, headers=padded) == events[-1:], "leading zeros are only zeros"


def test_a_huge_last_event_id_without_a_key_gets_401(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(API_KEYS="the-key")
    response = httpx.get(f"{service.base_url}/api/stream/{UNKNOWN_ID}", headers={"Last-Event-ID": HUGE_POSITION})
    assert response.status_code == 401


@pytest.mark.parametrize("name", ["limit", "offset"])
def test_list_positions_of_any_length_get_422(slow_service: ServerProcess, name: str) -> None:
    response = httpx.get(f"{slow_service.base_url}/api/tasks", params={name: HUGE_POSITION})
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"].startswith(f"The field {name} must be a whole number")


def test_resuming_after_a_finished_tasks_last_event_answers_204(fake_service: ServerProcess) -> None:
    """EventSource stops reconnecting on a 204, which is right once nothing can follow."""
    base = fake_service.base_url
    task_id = start_task(base)
    last = read_stream(base, task_id)[-1]
    for position in (
        {"headers": {"Last-Event-ID": str(last["sequence"])}},
        {"params": {"last_event_id": last["sequence"] + 3}},
    ):
        response = httpx.get(f"{base}/api/stream/{task_id}", **position)
        assert (response.status_code, response.content) == (204, b"")
    assert read_stream(base, task_id, headers={"Last-Event-ID": str(last["sequence"] - 1)}) == [last]
    responses = httpx.get(f"{base}/openapi.json").json()["paths"]["/api/stream/{task_id}"]["get"]["responses"]
    assert "Last-Event-ID" in responses["204"]["description"]


def test_disconnected_subscribers_leave_nothing_behind(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="200")
    task_id = start_task(service.base_url)

    def round_of_disconnects() -> None:
        sockets = []
        for _ in range(50):
            connection = socket.create_connection(("127.0.0.1", service.port))
            connection.sendall(f"GET /api/stream/{task_id} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            connection.recv(256)
            sockets.append(connection)
        wait_until(lambda: open_subscribers(service) == 50, 30, "50 subscribers")
        for connection in sockets:
            connection.close()
        wait_until(lambda: open_subscribers(service) == 0, 30, "every subscriber to be released")

    round_of_disconnects()
    baseline = rss_kb(service.process.pid)
    for _ in range(4):
        round_of_disconnects()
    assert rss_kb(service.process.pid) - baseline < 10_000, "memory stays flat over rounds of disconnects"
    assert httpx.get(f"{service.base_url}/api/task/{task_id}/status").json()["status"] == "running"


def test_a_model_server_dying_mid_answer_ends_the_task_clearly(
    start_service: Callable[..., ServerProcess], openai_stub: ServerProcess
) -> None:
    service = start_service(LLM_PROVIDER="openai", LLM_BASE_URL=f"{openai_stub.base_url}/dies/v1")
    events = read_stream(service.base_url, start_task(service.base_url, "the model dies"))
    assert events[-1]["event_type"] == "error"
    assert events[-1]["metadata"]["error_type"] == "llm_connection_lost"
    assert "broke while it was answering" in events[-1]["content"]
