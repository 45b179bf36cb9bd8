"""What only the cluster mode has, with real servers: redis-server, API replicas, Celery workers, Nginx.

What both modes do alike is tested in both by the `mode` fixture (tests/conftest.py).
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from cluster_processes import Cluster, Nginx, RedisServer
from conftest import AGENT_NAMES, StreamReader, read_stream, sequences, start_task, status, wait_for_status, wait_until
from delivery_service.cluster.celery_app import create_celery_app, send_phase
from delivery_service.cluster.redis_event_log import (
    APPEND_SCRIPT,
    AppendRequest,
    TaskKeys,
    unsequenced_event,
)
from delivery_service.runs.task_control import AppendRefused
from delivery_service.settings import Settings
from delivery_service.store.task_event import EventType
from test_agent_plugins import PLUGIN, assert_five_agents_delivered
from test_metrics import samples
from webhook_receiver import WebhookReceiver, new_secret, webhook_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def start_cluster(redis_server: RedisServer, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """`start_cluster(replicas, workers, SETTING="value")`: a cluster on a fresh Redis database."""
    clusters: list[Cluster] = []

    def start(replicas: int, workers: int, **settings: str) -> Cluster:
        clusters.append(Cluster(redis_server, tmp_path, replicas, workers, **settings))
        return clusters[-1]

    yield start
    for cluster in clusters:
        cluster.stop()


def test_replicas_and_nginx_stream_the_same_gap_free_events_live(
    start_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    cluster = start_cluster(replicas=2, workers=1, FAKE_LLM_DELAY_MS="5")
    a, b = cluster.replicas
    nginx = Nginx([a.port, b.port], tmp_path)
    try:
        task_id = start_task(nginx.base_url, "Build a todo app across replicas", skip_confirmation=False)
        readers = [
            StreamReader(url, task_id, {"Accept-Encoding": "gzip"}) for url in (a.base_url, b.base_url, nginx.base_url)
        ]
        # The task pauses for a decision: what the readers have by then cannot have waited for its end.
        wait_until(lambda: all(reader.has("confirmation_required") for reader in readers), 60, "the analysis")
        assert status(nginx.base_url, task_id)["status"] == "awaiting_confirmation"
        response = httpx.post(f"{b.base_url}/api/task/{task_id}/confirm", json={"approved": True})
        assert response.status_code == 202, response.text
        streams = [reader.wait() for reader in readers]
    finally:
        nginx.stop()
    assert streams[0][-1]["event_type"] == "end"
    assert sequences(streams[0]) == list(range(1, len(streams[0]) + 1)), "gap-free, from 1"
    assert streams[1] == streams[0] and streams[2] == streams[0], "every replica and nginx send the same events"
    assert streams[0] == read_stream(a.base_url, task_id), "a replay equals the live stream"
    final = status(a.base_url, task_id)
    assert final["status"] == "completed" and final["last_sequence"] == len(streams[0])
    listed = httpx.get(f"{b.base_url}/api/tasks").json()
    assert [(t["task_id"], t["status"]) for t in listed["tasks"]] == [(task_id, "completed")] and listed["total"] == 1
    result = httpx.get(f"{b.base_url}/api/task/{task_id}/result").json()
    assert [d["agent_name"] for d in result["deliverables"]] == AGENT_NAMES
    assert all(d["data"] is not None for d in result["deliverables"]), "structured deliverables, as embedded"
    assert result["traceability"]["complete"] is True and result["decision"] == "go"
    assert len([e for e in streams[0] if e["metadata"].get("kind") == "traceability"]) == 1
    assert len(nginx.upstreams_used()) == 2, "nginx spread the requests over both replicas"


def test_each_replica_counts_the_events_it_delivers_in_its_metrics(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(replicas=2, workers=1)
    a, b = cluster.replicas
    task_id = start_task(a.base_url, "Build a todo app, counted")
    events = read_stream(a.base_url, task_id)
    assert events[-1]["event_type"] == "end"
    metrics = samples(a)
    for kind in {event["event_type"] for event in events}:
        count = sum(event["event_type"] == kind for event in events)
        assert metrics[("delivery_events_total", (("event_type", kind),))] == count, kind
    assert metrics[("delivery_event_visible_seconds_count", ())] == len(events)
    assert metrics[("delivery_tasks_started_total", ())] == 1
    assert metrics[("delivery_tasks_finished_total", (("outcome", "completed"),))] == 1
    unwatched = samples(b)
    assert unwatched[("delivery_event_visible_seconds_count", ())] == 0, "nobody streamed the task from replica B"


def test_resume_on_another_replica_after_the_first_is_killed(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(replicas=2, workers=1, FAKE_LLM_DELAY_MS="20")
    a, b = cluster.replicas
    task_id = start_task(a.base_url, "Build a todo app, resumed elsewhere")
    reader = StreamReader(a.base_url, task_id)
    wait_until(lambda: len(reader.events) >= 5, 60, "five events from replica A")
    a.kill()
    received = reader.events[:5]
    resumed = read_stream(b.base_url, task_id, headers={"Last-Event-ID": "5"})
    assert sequences(resumed)[0] == 6 and resumed[-1]["event_type"] == "end"
    whole = read_stream(b.base_url, task_id)
    assert received + resumed == whole, "nothing lost or repeated across replicas"
    assert sequences(whole) == list(range(1, len(whole) + 1))
    past_the_end = httpx.get(f"{b.base_url}/api/stream/{task_id}", headers={"Last-Event-ID": str(len(whole))})
    assert past_the_end.status_code == 204, "nothing follows the terminal event, on any replica"


def test_a_killed_worker_ends_its_task_with_an_error(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(replicas=1, workers=1, FAKE_LLM_DELAY_MS="50")
    (api,) = cluster.replicas
    task_id = start_task(api.base_url, "Build a todo app on a worker that dies")
    reader = StreamReader(api.base_url, task_id)
    wait_until(lambda: reader.has("agent_start"), 60, "the crew to start")
    cluster.workers[0].kill()
    events = reader.wait()
    assert events[-1]["event_type"] == "error"
    assert events[-1]["metadata"] == {"error_type": "worker_died"}
    assert "WORKER_LEASE_SECONDS" in events[-1]["content"]
    assert sequences(events) == list(range(1, len(events) + 1))
    assert status(api.base_url, task_id)["status"] == "failed"
    cluster.add_worker()
    after = start_task(api.base_url, "Build a todo app on the new worker")
    assert read_stream(api.base_url, after)[-1]["event_type"] == "end"


def test_two_workers_share_the_tasks(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(replicas=1, workers=2, FAKE_LLM_DELAY_MS="20")
    (api,) = cluster.replicas
    task_ids = [start_task(api.base_url, f"Build todo app number {n}") for n in range(4)]
    readers = [StreamReader(api.base_url, task_id) for task_id in task_ids]  # one replica reads all
    streams = [reader.wait() for reader in readers]
    assert all(events[-1]["event_type"] == "end" for events in streams)
    assert all(sequences(events) == list(range(1, len(events) + 1)) for events in streams)
    starts = [next(event for event in events if event["event_type"] == "start") for events in streams]
    workers = {start["metadata"]["worker"].split("@")[0] for start in starts}
    assert workers == {"w1", "w2"}, "a busy worker takes no second task, so the other one runs it"


def test_a_fifth_agent_registered_by_a_plugin_runs_on_the_workers(start_cluster: Callable[..., Cluster]) -> None:
    """AGENT_PLUGINS reaches the workers: tests/security_reviewer.py runs there as in the embedded mode."""
    cluster = start_cluster(replicas=1, workers=1, AGENT_PLUGINS=PLUGIN)
    assert_five_agents_delivered(cluster.replicas[0].base_url)


def test_the_rate_limit_is_shared_by_the_replicas(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(replicas=2, workers=0, RATE_LIMIT="3/minute")
    a, b = cluster.replicas
    codes = [
        httpx.post(f"{replica.base_url}/api/run_task", json={"user_requirement": "Build a todo app"}).status_code
        for replica in (a, b, a, b)
    ]
    assert codes == [202, 202, 202, 429]
    a.process.terminate()
    # uvicorn re-raises the signal it handled once it has shut down; a replica that hung would time out.
    assert a.process.wait(timeout=30) == -signal.SIGTERM, "a replica stops on SIGTERM (nothing of its own to drain)"


def test_a_crew_that_does_not_stop_is_killed_after_the_grace(start_cluster: Callable[..., Cluster]) -> None:
    # A model chunk every 60 s: the crew cannot see the cancel at its next step in time.
    cluster = start_cluster(replicas=1, workers=1, FAKE_LLM_DELAY_MS="60000", CREW_STOP_GRACE_SECONDS="1")
    (api,) = cluster.replicas
    task_id = start_task(api.base_url, "Build a todo app with a stuck model")
    reader = StreamReader(api.base_url, task_id)
    wait_until(lambda: reader.has("agent_start"), 60, "the crew to start")
    worker = cluster.workers[0]
    (crew_process,) = worker.pool_processes()
    assert httpx.post(f"{api.base_url}/api/task/{task_id}/cancel").status_code == 202
    assert reader.wait()[-1]["event_type"] == "cancelled"
    wait_until(lambda: crew_process not in worker.pool_processes(), 60, "the crew's process to be revoked")
    assert worker.process.poll() is None, "the worker itself lives on"
    wait_until(lambda: len(worker.pool_processes()) == 1, 60, "Celery to replace the killed process")
    assert read_stream(api.base_url, task_id)[-1]["event_type"] == "cancelled", "still cancelled, nothing after"


def test_a_redelivered_phase_does_not_run_twice(start_cluster: Callable[..., Cluster]) -> None:
    cluster = start_cluster(replicas=1, workers=1)
    (api,) = cluster.replicas
    task_id = start_task(api.base_url, "Build a todo app delivered twice", skip_confirmation=False)
    review = StreamReader(api.base_url, task_id)
    wait_until(lambda: review.has("confirmation_required"), 60, "the analysis")
    # What the broker does when it delivers a message again (visibility timeout, a lost ack).
    settings = Settings(redis_url=cluster.redis_url)  # type: ignore[call-arg]
    dispatch_id = cluster.redis.hget(f"mad:task:{task_id}", "dispatch").decode()
    app = create_celery_app(settings)
    send_phase(app, settings, task_id, "analysis", dispatch_id, 0)
    app.close()
    # The queue is one Redis list per priority (`celery`, `celery\x06\x169`...), then `unacked` until acked.
    pending = lambda: any(cluster.redis.scan_iter("celery*")) or cluster.redis.exists("unacked")  # noqa: E731
    wait_until(lambda: not pending(), 60, "the worker to take the message")
    assert status(api.base_url, task_id)["status"] == "awaiting_confirmation"
    assert httpx.post(f"{api.base_url}/api/task/{task_id}/confirm", json={"approved": True}).status_code == 202
    events = review.wait()
    assert [e["event_type"] for e in events].count("agent_start") == 4, "the analysis ran once, then the delivery"
    assert [e["event_type"] for e in events].count("start") == 1 and events[-1]["event_type"] == "end"


def test_concurrent_writers_get_each_sequence_exactly_once(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.new_database_url())
    append = client.register_script(APPEND_SCRIPT)
    settings = Settings(redis_url="redis://unused", task_retention_days=1)  # type: ignore[call-arg]
    task_id = str(uuid.uuid4())
    client.hset(TaskKeys(task_id).meta, mapping={"seq": 0, "bytes": 0})

    def write(writer: int) -> list[int]:
        results = []
        for n in range(50):
            event = unsequenced_event(task_id, "QAEngineer", EventType.DELTA, f"{writer}:{n}", None, settings)
            request = AppendRequest.of(event, settings)
            results.append(int(append(keys=request.keys, args=request.args)))
        return results

    with ThreadPoolExecutor(8) as pool:
        accepted = [seq for results in pool.map(write, range(8)) for seq in results]
    end = AppendRequest.of(unsequenced_event(task_id, "System", EventType.END, "done", None, settings), settings)
    assert int(append(keys=end.keys, args=end.args)) == 401
    late = AppendRequest.of(unsequenced_event(task_id, "System", EventType.ERROR, "late", None, settings), settings)
    assert int(append(keys=late.keys, args=late.args)) == AppendRefused.ENDED, "nothing after the terminal event"

    assert sorted(accepted) == list(range(1, 401)), "every sequence assigned once"
    entries = client.xrange(TaskKeys(task_id).events)
    assert [int(fields[b"seq"]) for _, fields in entries] == list(range(1, 402)), "stream order is sequence order"
    events = [json.loads(fields[b"event"]) for _, fields in entries]
    assert [event["sequence"] for event in events] == list(range(1, 402))
    assert {event["content"] for event in events[:-1]} == {f"{w}:{n}" for w in range(8) for n in range(50)}
    assert 0 < client.pttl(TaskKeys(task_id).events) <= 86_400_000, "a finished stream expires with the retention"
    client.close()


def test_follow_ups_in_the_cluster_number_their_revisions_across_replicas(
    start_cluster: Callable[..., Cluster],
) -> None:
    cluster = start_cluster(replicas=2, workers=1)
    a, b = cluster.replicas
    root = start_task(a.base_url, "Build a todo app, then revise it")
    assert read_stream(a.base_url, root)[-1]["event_type"] == "end"

    def follow_up(base: str, request: str) -> dict[str, Any]:
        response = httpx.post(f"{base}/api/task/{root}/follow_up", json={"request": request})
        assert response.status_code == 202, response.text
        return dict(response.json())

    with ThreadPoolExecutor(max_workers=2) as pool:
        started = list(pool.map(follow_up, [a.base_url, b.base_url], ["Add a test for empty titles", "Add sign-in"]))
    assert sorted(s["revision"] for s in started) == [2, 3], "each replica's follow-up gets its own number"
    events = {child["task_id"]: read_stream(b.base_url, child["task_id"]) for child in started}
    assert all(stream[-1]["event_type"] == "end" for stream in events.values())

    thread = httpx.get(f"{a.base_url}/api/threads/{root}").json()
    assert [(t["task_id"], t["revision"]) for t in thread["tasks"]][0] == (root, 1)
    assert sorted(t["revision"] for t in thread["tasks"]) == [1, 2, 3]
    qa_rerun = next(t["task_id"] for t in thread["tasks"] if t["request"] == "Add a test for empty titles")
    carried = [
        e["agent_name"] for e in events[qa_rerun] if e["metadata"].get("carried_over") and e["event_type"] == "output"
    ]
    assert carried == ["ProductManager"], "the worker carried the analysis over from the parent's copy"
    listed = httpx.get(f"{b.base_url}/api/tasks").json()["tasks"]
    by_revision = {t["revision"]: t["request"] for t in thread["tasks"]}
    assert sorted((t["thread_id"], t["revision"], t["request"]) for t in listed) == [
        (root, revision, by_revision[revision]) for revision in (1, 2, 3)
    ], "the cluster's list tells follow-ups apart too"


def test_webhooks_from_two_replicas_and_two_workers_go_out_once_per_attempt(
    start_cluster: Callable[..., Cluster],
) -> None:
    receiver = WebhookReceiver(new_secret())
    receiver.script("/hooks", 500, 503, 200)  # the first two requests fail, whichever messages they carry
    try:
        cluster = start_cluster(replicas=2, workers=2, FAKE_LLM_DELAY_MS="5", **webhook_settings(receiver.secret))
        a, b = cluster.replicas
        hook = {"webhook_url": receiver.url("/hooks")}
        task_ids = [
            start_task(a.base_url, "Build a todo app", **hook),
            start_task(b.base_url, "Build a chat app", **hook),
        ]
        confirmed = start_task(a.base_url, "Build a wiki", skip_confirmation=False, **hook)
        wait_for_status(b.base_url, confirmed, "awaiting_confirmation")
        assert httpx.post(f"{b.base_url}/api/task/{confirmed}/confirm", json={"approved": True}).status_code == 202
        for task_id in [*task_ids, confirmed]:
            assert read_stream(b.base_url, task_id)[-1]["event_type"] == "end"

        def settled(task_id: str, count: int) -> list[dict[str, Any]] | None:
            log = httpx.get(f"{a.base_url}/api/task/{task_id}/webhooks").json()["deliveries"]
            return log if len(log) == count and all(d["status"] == "delivered" for d in log) else None

        logs = [wait_until(lambda t=t: settled(t, 5), 60, "every message delivered") for t in task_ids]
        logs.append(wait_until(lambda: settled(confirmed, 6), 60, "every message delivered"))
        delivered = [d for log in logs for d in log]
        requests = receiver.received
        assert all(request.verified for request in requests)
        for delivery in delivered:
            sent = [request for request in requests if request.webhook_id == delivery["webhook_id"]]
            assert len(sent) == delivery["attempts"], f"{delivery['webhook_id']}: one request per attempt"
        assert sum(d["attempts"] for d in delivered) == len(requests) == len(delivered) + 2
        assert "task.awaiting_confirmation" in {d["type"] for d in logs[-1]}
        assert httpx.get(f"{b.base_url}/api/task/{task_ids[0]}/webhooks").json()["deliveries"] == logs[0]
    finally:
        receiver.close()
