"""API keys: no key or a wrong one gets 401, another owner's task is not found anywhere, stream tokens
open one task's stream only."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from conftest import ServerProcess, read_stream, wait_until

ALICE = {"Authorization": "Bearer alice-key-0123"}
BOB = {"Authorization": "Bearer bob-key-4567"}


def test_keys_owners_and_stream_tokens(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service(
        API_KEYS="alice-key-0123, bob-key-4567",
        TASK_RETENTION_DAYS="0.00002",
        STREAM_CLEANUP_INTERVAL_SECONDS="0.2",
        STREAM_RETENTION_SECONDS="0",
    )
    base = service.base_url
    body = {"user_requirement": "Alice's private project"}
    assert httpx.post(f"{base}/api/run_task", json=body).status_code == 401
    wrong = httpx.post(f"{base}/api/run_task", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
    assert "API_KEYS" in wrong.json()["detail"]

    started = httpx.post(f"{base}/api/run_task", json=body, headers=ALICE)
    assert started.status_code == 202
    task_id, token = started.json()["task_id"], started.json()["stream_token"]
    other = httpx.post(f"{base}/api/run_task", json={"user_requirement": "Bob's"}, headers=BOB).json()

    events = read_stream(base, task_id, params={"token": token})
    assert events[-1]["event_type"] == "end", "the stream token opens the stream without a header"
    assert read_stream(base, task_id, headers=ALICE) == events

    for method, path in [
        ("GET", f"/api/task/{task_id}/status"),
        ("GET", f"/api/task/{task_id}/result"),
        ("GET", f"/api/stream/{task_id}"),
        ("POST", f"/api/task/{task_id}/cancel"),
    ]:
        assert httpx.request(method, f"{base}{path}", headers=BOB).status_code == 404, path
        assert httpx.request(method, f"{base}{path}").status_code == 401, path
    assert httpx.post(f"{base}/api/task/{task_id}/confirm", json={"approved": True}, headers=BOB).status_code == 404
    assert {t["task_id"] for t in httpx.get(f"{base}/api/tasks", headers=BOB).json()["tasks"]} == {other["task_id"]}
    assert task_id not in {s["task_id"] for s in httpx.get(f"{base}/api/streams", headers=BOB).json()["streams"]}
    mine = httpx.get(f"{base}/api/tasks", headers=ALICE).json()["tasks"]
    assert [(t["task_id"], t["stream_token"]) for t in mine] == [(task_id, token)]

    bob_stream = httpx.get(f"{base}/api/stream/{other['task_id']}", params={"token": token})
    assert bob_stream.status_code == 401, "a stream token opens its own task only"
    assert "not valid for this task" in bob_stream.json()["detail"]
    assert "alice-key-0123" not in service.log() and "bob-key-4567" not in service.log()

    wait_until(lambda: httpx.get(f"{base}/api/task/{task_id}/status", headers=ALICE).status_code == 404, 30, "purge")
    assert httpx.get(f"{base}/api/stream/{task_id}", params={"token": token}).status_code == 404


def test_authentication_is_off_without_api_keys(fake_service: ServerProcess) -> None:
    started = httpx.post(f"{fake_service.base_url}/api/run_task", json={"user_requirement": "open"}).json()
    assert started["stream_token"] is None
