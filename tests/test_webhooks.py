"""Webhooks over real HTTP to a real receiver (tests/webhook_receiver.py), which verifies signatures with
`standardwebhooks`; retries start 50 ms after a failure. Most tests run in both modes (`mode`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from conftest import AGENT_NAMES, Mode, ServerProcess, free_port, read_stream, start_task, wait_for_status, wait_until
from delivery_service.webhooks.sender import MAX_PER_RECEIVER
from webhook_receiver import DripReceiver, WebhookReceiver, new_secret, webhook_settings

STEP_AND_END = ["task.step_completed"] * 4 + ["task.completed"]


def deliveries(base: str, task_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/task/{task_id}/webhooks")
    assert response.status_code == 200, response.text
    return list(response.json()["deliveries"])


def settled(base: str, task_id: str, count: int) -> list[dict[str, Any]]:
    """The task's `count` deliveries, once none of them is pending."""

    def done() -> list[dict[str, Any]] | None:
        found = deliveries(base, task_id)
        return found if len(found) == count and all(d["status"] != "pending" for d in found) else None

    return list(wait_until(done, 60, f"{count} settled webhook deliveries of {task_id}"))


def test_each_step_and_the_end_are_signed_messages_that_the_standard_verifier_accepts(
    mode: Mode, receiver: WebhookReceiver
) -> None:
    everything = receiver.url("/everything")
    server = mode.start(
        **webhook_settings(receiver.secret, WEBHOOK_URLS=everything, PUBLIC_URL="https://delivery.example")
    )
    task_id = start_task(
        server.base_url, webhook_url=receiver.url("/hooks"), webhook_events=["task.completed", "task.step_completed"]
    )
    events = read_stream(server.base_url, task_id)
    got = receiver.wait_for("/hooks", 5)
    assert all(request.verified for request in got), "every signature verifies with standardwebhooks"
    assert sorted(request.payload["data"]["sequence"] for request in got) == [
        event["sequence"] for event in events if event["event_type"] in ("step_end", "end")
    ]
    by_sequence = sorted((request.payload for request in got), key=lambda payload: payload["data"]["sequence"])
    assert [payload["type"] for payload in by_sequence] == STEP_AND_END
    assert [payload["data"]["agent_name"] for payload in by_sequence[:4]] == AGENT_NAMES
    completed = by_sequence[-1]
    assert completed["data"]["status"] == "completed" and completed["data"]["task_id"] == task_id
    assert completed["data"]["gate"] == events[-1]["metadata"]["gate"]["status"]
    assert completed["data"]["result_url"] == f"https://delivery.example/api/task/{task_id}/result"
    assert completed["timestamp"] == events[-1]["timestamp"]
    assert len({request.webhook_id for request in got}) == 5
    assert all(request.headers["content-type"] == "application/json" for request in got)

    log = settled(server.base_url, task_id, 10)  # five to /hooks, five to WEBHOOK_URLS
    operator_url = f"http://127.0.0.1:{receiver.port}/... (WEBHOOK_URLS)"  # its path may hold a secret
    assert {d["url"] for d in log} == {receiver.url("/hooks"), operator_url}
    assert all(d["status"] == "delivered" and d["attempts"] == 1 and d["last_status_code"] == 200 for d in log)
    assert {d["webhook_id"] for d in log} >= {request.webhook_id for request in got}
    assert len(receiver.wait_for("/everything", 5)) == 5

    if mode.name == "cluster":
        return  # each replica and worker counts what it sent itself: no one /metrics has all ten
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'delivery_webhook_messages_total{outcome="delivered",type="task.completed"} 2.0' in metrics
    assert 'delivery_webhook_attempts_total{result="2xx"} 10.0' in metrics
    assert "delivery_webhook_delivery_seconds_count 10.0" in metrics
    assert "delivery_webhook_outbox_messages" in metrics


def test_a_failing_receiver_gets_retries_with_the_same_webhook_id_until_it_answers(
    mode: Mode, receiver: WebhookReceiver
) -> None:
    server = mode.start(**webhook_settings(receiver.secret, WEBHOOK_MAX_ATTEMPTS="3", WEBHOOK_TIMEOUT_SECONDS="1"))
    receiver.script("/flaky", 500, 503, 200)
    receiver.script("/down", 500)
    receiver.hold("/stuck")
    receiver.script("/moved", (302, {"Location": receiver.url("/elsewhere")}))
    receiver.script("/refuses", 400)
    completed_only = ["task.completed"]
    task_id = start_task(server.base_url, webhook_url=receiver.url("/flaky"), webhook_events=completed_only)
    down = start_task(server.base_url, webhook_url=receiver.url("/down"), webhook_events=completed_only)
    stuck = start_task(server.base_url, webhook_url=receiver.url("/stuck"), webhook_events=completed_only)
    other = start_task(server.base_url, webhook_url=receiver.url("/moved"), webhook_events=completed_only)
    third = start_task(server.base_url, webhook_url=receiver.url("/refuses"), webhook_events=completed_only)

    attempts = receiver.wait_for("/flaky", 3)
    assert len({request.webhook_id for request in attempts}) == 1, "a retry is the same message"
    assert all(request.verified for request in attempts), "each attempt is signed again"
    (flaky,) = settled(server.base_url, task_id, 1)
    assert (flaky["status"], flaky["attempts"], flaky["last_status_code"]) == ("delivered", 3, 200)
    assert len(receiver.at("/flaky")) == 3

    (gave_up,) = settled(server.base_url, down, 1)
    assert (gave_up["status"], gave_up["attempts"], gave_up["last_status_code"]) == ("failed", 3, 500)
    assert "Gave up after 3 attempts" in gave_up["last_error"] and len(receiver.at("/down")) == 3
    (timed_out,) = settled(server.base_url, stuck, 1)
    assert (timed_out["status"], timed_out["attempts"], timed_out["last_status_code"]) == ("failed", 3, None)
    assert "did not answer within 1 s" in timed_out["last_error"]

    (moved,) = settled(server.base_url, other, 1)
    assert (moved["status"], moved["attempts"], moved["last_status_code"]) == ("failed", 1, 302)
    assert "redirect" in moved["last_error"] and receiver.at("/elsewhere") == []
    (refused,) = settled(server.base_url, third, 1)
    assert (refused["status"], refused["attempts"], refused["last_status_code"]) == ("failed", 1, 400)
    assert "not retried" in refused["last_error"]

    # Redelivery: the same message again, with a fresh retry budget. The receiver is told its new answer
    # first: the sender may post the message before the 202 reaches this test.
    receiver.script("/refuses", 204)
    response = httpx.post(f"{server.base_url}/api/task/{third}/webhooks/{refused['webhook_id']}/redeliver")
    assert response.status_code == 202, response.text
    assert receiver.wait_for("/refuses", 2)[1].webhook_id == refused["webhook_id"]
    (again,) = settled(server.base_url, third, 1)
    assert (again["status"], again["attempts"], again["last_status_code"]) == ("delivered", 2, 204)
    missing = httpx.post(f"{server.base_url}/api/task/{third}/webhooks/msg_unknown/redeliver")
    assert missing.status_code == 404 and "has no webhook message" in missing.json()["detail"]


def test_retry_after_is_honoured(mode: Mode, receiver: WebhookReceiver) -> None:
    server = mode.start(**webhook_settings(receiver.secret))
    receiver.script("/busy", (429, {"Retry-After": "2"}), 200)
    task_id = start_task(server.base_url, webhook_url=receiver.url("/busy"), webhook_events=["task.completed"])
    first, second = receiver.wait_for("/busy", 2)
    assert first.webhook_id == second.webhook_id
    waited = int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"])
    assert waited >= 1, "the retry waited for Retry-After (2 s), not the 50 ms backoff"
    (delivery,) = settled(server.base_url, task_id, 1)
    assert delivery["attempts"] == 2


def test_a_410_stops_the_tasks_later_messages_to_that_url(mode: Mode, receiver: WebhookReceiver) -> None:
    server = mode.start(**webhook_settings(receiver.secret))
    receiver.script("/gone", 410)
    task_id = start_task(server.base_url, webhook_url=receiver.url("/gone"), skip_confirmation=False)
    wait_for_status(server.base_url, task_id, "awaiting_confirmation")
    first = settled(server.base_url, task_id, 2)  # the analysis's step and awaiting_confirmation
    assert any(d["last_status_code"] == 410 for d in first)
    sent_before = len(receiver.at("/gone"))

    assert httpx.post(f"{server.base_url}/api/task/{task_id}/confirm", json={"approved": True}).status_code == 202
    assert read_stream(server.base_url, task_id)[-1]["event_type"] == "end"
    later = settled(server.base_url, task_id, 6)[2:]
    assert [d["type"] for d in later] == STEP_AND_END[1:]
    assert all(d["status"] == "failed" and d["attempts"] == 0 and "410" in d["last_error"] for d in later)
    assert len(receiver.at("/gone")) == sent_before, "nothing more was sent to the URL that answered 410"


def test_a_slow_receiver_does_not_delay_the_task(mode: Mode, receiver: WebhookReceiver) -> None:
    server = mode.start(**webhook_settings(receiver.secret, WEBHOOK_TIMEOUT_SECONDS="120"))
    receiver.hold("/slow")
    task_id = start_task(server.base_url, webhook_url=receiver.url("/slow"))
    receiver.wait_for("/slow", 1)  # the first message is being answered ... slowly
    assert read_stream(server.base_url, task_id)[-1]["event_type"] == "end", "the task ran on while it waited"
    pending = next(d for d in deliveries(server.base_url, task_id) if d["status"] == "pending")
    early = httpx.post(f"{server.base_url}/api/task/{task_id}/webhooks/{pending['webhook_id']}/redeliver")
    assert early.status_code == 409 and "still being delivered" in early.json()["detail"]
    receiver.release("/slow")
    assert all(d["status"] == "delivered" for d in settled(server.base_url, task_id, 5))


def test_a_receiver_that_drips_its_answer_holds_neither_every_slot_nor_a_message_twice(
    start_service: Callable[..., ServerProcess], receiver: WebhookReceiver
) -> None:
    """WEBHOOK_TIMEOUT_SECONDS bounds a whole attempt, the lease outlives it, one receiver gets a share of the
    sender's slots: a receiver that would hold each attempt a minute delays no one else."""
    drip = DripReceiver(interval=0.5, lines=120)  # a header line every 0.5 s: an answer takes 60 s
    try:
        settings = {"WEBHOOK_TIMEOUT_SECONDS": "2", "WEBHOOK_RETRY_BASE_SECONDS": "1", "WEBHOOK_MAX_ATTEMPTS": "50"}
        server = start_service(**webhook_settings(receiver.secret, **settings))
        dripped = [start_task(server.base_url, webhook_url=drip.url("/slow")) for _ in range(7)]  # 35 messages
        for task_id in dripped:
            assert read_stream(server.base_url, task_id)[-1]["event_type"] == "end"
        wait_until(lambda: drip.open_now() >= MAX_PER_RECEIVER, 20, "the dripping receiver's share of the slots")

        fast = start_task(server.base_url, webhook_url=receiver.url("/fast"))
        assert len(receiver.wait_for("/fast", 5, timeout=20)) == 5, "no dripping answer could have ended by now"
        assert all(d["status"] == "delivered" for d in settled(server.base_url, fast, 5))

        cut = wait_until(
            lambda: [d for d in deliveries(server.base_url, dripped[0]) if d["attempts"] >= 1],
            20,
            "a dripping attempt cut",
        )
        assert "did not answer within 2 s" in cut[0]["last_error"]
        assert drip.twice == [], "no message was sent again while an attempt of it was open"
        assert drip.most_open <= MAX_PER_RECEIVER
    finally:
        drip.close()


@pytest.mark.slow  # a process killed, or a client that goes away: not the image's packages
def test_undelivered_messages_go_out_after_a_kill_and_restart(start_service: Callable[..., ServerProcess]) -> None:
    port = free_port()  # nothing listens there until the service has been killed
    secret = new_secret()
    settings = webhook_settings(secret, WEBHOOK_MAX_ATTEMPTS="30", WEBHOOK_TIMEOUT_SECONDS="2")
    server = start_service(**settings)
    task_id = start_task(server.base_url, webhook_url=f"http://127.0.0.1:{port}/late")
    assert read_stream(server.base_url, task_id)[-1]["event_type"] == "end"
    wait_until(
        lambda: len([d for d in deliveries(server.base_url, task_id) if d["attempts"] >= 1]) == 5,
        60,
        "every message to have failed at least once",
    )
    log = deliveries(server.base_url, task_id)
    assert all(d["status"] == "pending" and "Could not reach" in d["last_error"] for d in log)
    server.kill()

    late = WebhookReceiver(secret, port=port)
    try:
        restarted = start_service(port=server.port, **settings)
        got = late.wait_for("/late", 5)
        assert {request.webhook_id for request in got} == {d["webhook_id"] for d in log}
        assert all(request.verified for request in got)
        assert all(d["status"] == "delivered" for d in settled(restarted.base_url, task_id, 5))
    finally:
        late.close()


def test_webhook_urls_that_may_not_receive_messages_are_refused(
    start_service: Callable[..., ServerProcess], fake_service: ServerProcess
) -> None:
    server = start_service(WEBHOOK_SECRET=new_secret())
    tasks_before = httpx.get(f"{server.base_url}/api/tasks").json()["total"]
    cases = {
        "http://127.0.0.1:9/hook": "loopback",
        "http://localhost/hook": "loopback",
        "http://169.254.169.254/latest/meta-data": "link-local",
        "http://10.1.2.3/hook": "private",
        "http://[::1]/hook": "loopback",
        "ftp://example.com/hook": "http or https",
        "http://user:pw@93.184.216.34/hook": "credentials",
        "http://:@93.184.216.34/hook": "credentials",
    }
    for url, reason in cases.items():
        response = httpx.post(f"{server.base_url}/api/run_task", json={"user_requirement": "x", "webhook_url": url})
        assert response.status_code == 422, (url, response.text)
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "webhook_url"] and reason in error["msg"], (url, error)
    events_only = httpx.post(
        f"{server.base_url}/api/run_task", json={"user_requirement": "x", "webhook_events": ["task.completed"]}
    )
    assert events_only.status_code == 422 and "needs a webhook_url" in events_only.text

    off = httpx.post(
        f"{fake_service.base_url}/api/run_task",
        json={"user_requirement": "x", "webhook_url": "https://example.com/hook"},
    )
    assert off.status_code == 422 and "WEBHOOK_SECRET is not set" in off.json()["detail"][0]["msg"]
    assert httpx.get(f"{server.base_url}/api/tasks").json()["total"] == tasks_before, "no refused request made a task"
