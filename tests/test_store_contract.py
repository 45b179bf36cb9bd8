"""One contract over every task store: what the service reads from a store, whichever one it is.

Each store comes with the way its mode writes a task: the embedded stores take records and events
through `save` (as the event writer does); Redis takes the task's hash and indexes (as a replica's
`start` does) and each event through the append script (as a worker does), and projects the record
when it is read. A new store (Postgres) passes the same cases by adding one `StoreUnderTest`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from delivery_service.cluster.redis_event_log import (
    APPEND_SCRIPT,
    TASKS,
    AppendRequest,
    TaskKeys,
    owner_tasks,
    thread_tasks,
    unsequenced_event,
)
from delivery_service.cluster.redis_outbox import RedisOutbox
from delivery_service.cluster.store import RedisTaskStore
from delivery_service.settings import Settings
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.memory import MemoryTaskStore
from delivery_service.store.outbox import Delivery, waiver_messages
from delivery_service.store.records import FollowUp, TaskRecord, TaskStatus, WebhookTarget
from delivery_service.store.sqlite import SqliteTaskStore
from delivery_service.store.task_event import EncodedEvent, EventType, TaskEvent

USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
EventSpec = tuple[str, EventType, str, dict[str, Any]]  # agent, type, content, metadata

A_RUN: list[EventSpec] = [
    ("System", EventType.START, "started", {}),
    ("ProductManager", EventType.AGENT_START, "analysing", {}),
    ("ProductManager", EventType.OUTPUT, "# Requirements analysis", {"title": "Requirements analysis"}),
    ("ProductManager", EventType.STEP_END, "step 1 done", {"step": 1, "total_steps": 4, "usage": USAGE}),
    ("System", EventType.END, "Delivered.", {"usage": USAGE, "gate": {"status": "concerns", "min_coverage": 0.8}}),
]


@dataclass
class StoreUnderTest:
    store: Any
    write: Callable[[TaskRecord, list[EventSpec]], None]  # store a new task, then its events in order
    retention_elapsed: Callable[[str], None]  # what the store's retention does to a finished task's data
    unreachable: Callable[[], Any] | None  # the same store, unable to answer (None: it cannot fail)
    deliveries: Callable[[str], list[Delivery]]  # the task's webhook messages, as its mode's outbox reads them


def embedded(store: SqliteTaskStore | MemoryTaskStore) -> StoreUnderTest:
    def write(record: TaskRecord, specs: list[EventSpec]) -> None:
        store.save([record], [])
        for sequence, (agent, kind, content, metadata) in enumerate(specs, start=1):
            event = TaskEvent(
                task_id=record.task_id,
                sequence=sequence,
                agent_name=agent,
                event_type=kind,
                content=content,
                timestamp=f"2026-11-25T10:00:{sequence:02d}.000Z",
                metadata=metadata,
            )
            record.apply(event)
            store.save([record], [EncodedEvent.of(event)])

    return StoreUnderTest(store, write, lambda task_id: None, None, store.outbox.deliveries)


def in_redis(url: str) -> StoreUnderTest:
    client = redis.Redis.from_url(url)
    append = client.register_script(APPEND_SCRIPT)
    settings = Settings(redis_url=url)  # type: ignore[call-arg]

    def write(record: TaskRecord, specs: list[EventSpec]) -> None:
        keys, created_ms = TaskKeys(record.task_id), int(datetime.fromisoformat(record.created_at).timestamp() * 1000)
        meta = {"request": record.to_json(), "record": record.to_json(), "applied_id": "0-0", "seq": 0, "bytes": 0}
        client.hset(keys.meta, mapping=meta)
        client.zadd(TASKS, {record.task_id: created_ms})
        if record.owner:
            client.zadd(owner_tasks(record.owner), {record.task_id: created_ms})
        if record.follow_up:
            client.zadd(thread_tasks(record.thread_id), {record.task_id: created_ms})
        for agent, kind, content, metadata in specs:
            request = AppendRequest.of(
                unsequenced_event(record.task_id, agent, kind, content, metadata, settings), settings
            )
            assert int(append(keys=request.keys, args=request.args)) > 0

    def retention_elapsed(task_id: str) -> None:
        keys = TaskKeys(task_id)
        assert client.pttl(keys.meta) > 0, "a finished task's keys expire by themselves"
        client.delete(keys.meta, keys.events)  # what the expiry does, now rather than in days

    def deliveries(task_id: str) -> list[Delivery]:
        async def read() -> list[Delivery]:
            async with redis.asyncio.Redis.from_url(url) as reader:
                return await RedisOutbox(reader, settings).deliveries(task_id)

        return asyncio.run(read())

    dead = redis.Redis(port=1, socket_connect_timeout=1)
    return StoreUnderTest(RedisTaskStore(client), write, retention_elapsed, lambda: RedisTaskStore(dead), deliveries)


def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    if request.param == "sqlite":
        chosen = embedded(SqliteTaskStore(tmp_path))
        chosen.unreachable = lambda: _sqlite_without_its_file(tmp_path)
    elif request.param == "memory":
        chosen = embedded(MemoryTaskStore())
    else:
        chosen = in_redis(request.getfixturevalue("redis_server").new_database_url())
    yield chosen
    chosen.store.close()


@pytest.fixture(params=["sqlite", "memory", pytest.param("redis", marks=pytest.mark.slow)])
def under_test(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    yield from stores(request, tmp_path)


def _sqlite_without_its_file(data_dir: Path) -> SqliteTaskStore:
    broken = SqliteTaskStore(data_dir / "gone")
    (data_dir / "gone" / "tasks.db").unlink()
    return broken


def new_record(task_id: str, created_at: str, **fields: Any) -> TaskRecord:
    """A task as the service starts one; `fields`: its owner or follow_up."""
    return TaskRecord(
        task_id, f"Build app {task_id}", True, False, 0, {"provider": "fake"}, created_at=created_at, **fields
    )


def ids(records: list[TaskRecord]) -> list[str]:
    return [record.task_id for record in records]


# Task ids are UUIDs in the service (Redis's event JSON relies on it).
ROOT, SECOND, THIRD, CHILD = (f"00000000-0000-4000-8000-00000000000{n}" for n in range(1, 5))


def test_an_unknown_task_reads_as_none(under_test: StoreUnderTest) -> None:
    assert under_test.store.task(ROOT) is None
    assert under_test.store.tasks(10, 0, None) == ([], 0)
    assert under_test.store.thread(ROOT) == []


def test_a_new_task_reads_back_as_it_was_asked(under_test: StoreUnderTest) -> None:
    under_test.write(new_record(ROOT, "2026-11-25T10:00:00.000Z", owner="alice"), [])
    record = under_test.store.task(ROOT)
    assert record is not None
    asked = (ROOT, f"Build app {ROOT}", "alice", TaskStatus.QUEUED)
    assert (record.task_id, record.requirement, record.owner, record.status) == asked
    assert record.last_sequence == 0 and record.deliverables == [] and record.model == {"provider": "fake"}


def test_a_task_reads_as_its_events_made_it(under_test: StoreUnderTest) -> None:
    under_test.write(new_record(ROOT, "2026-11-25T10:00:00.000Z"), A_RUN)
    record = under_test.store.task(ROOT)
    assert record.status is TaskStatus.COMPLETED and record.finished_at is not None
    assert record.last_sequence == len(A_RUN) and record.completed_steps == 1
    assert record.summary == "Delivered." and record.usage == USAGE
    deliverables = [(d.agent_name, d.title, d.content) for d in record.deliverables]
    assert deliverables == [("ProductManager", "Requirements analysis", "# Requirements analysis")]


def test_a_waiver_is_recorded_once_with_its_webhook_messages(under_test: StoreUnderTest) -> None:
    target = WebhookTarget("https://hooks.example/in", ("task.waived",))
    under_test.write(new_record(ROOT, "2026-11-25T10:00:00.000Z", webhooks=(target,)), A_RUN)
    record = under_test.store.task(ROOT)
    assert record.gate == {"status": "concerns", "min_coverage": 0.8} and record.waiver is None
    waiver = {"reason": "agreed", "at": "2026-11-25T11:00:00.000Z", "by": "alice"}
    messages = waiver_messages(record, waiver, "")
    assert under_test.store.waive(ROOT, waiver, messages) is True
    assert under_test.store.waive(ROOT, {**waiver, "by": "bob"}, messages) is False, "the first waiver stands"
    assert under_test.store.task(ROOT).waiver == waiver
    assert [task.waiver for task in under_test.store.tasks(10, 0, None)[0]] == [waiver]
    stored = under_test.deliveries(ROOT)
    assert [(d.type, d.status, d.url) for d in stored] == [("task.waived", "pending", target.url)]


def test_tasks_are_listed_newest_first_by_page_and_by_owner(under_test: StoreUnderTest) -> None:
    under_test.write(new_record(ROOT, "2026-11-25T10:00:00.000Z", owner="alice"), [])
    under_test.write(new_record(SECOND, "2026-11-25T10:01:00.000Z", owner="bob"), [])
    under_test.write(new_record(THIRD, "2026-11-25T10:02:00.000Z", owner="alice"), A_RUN)
    everything, total = under_test.store.tasks(10, 0, None)
    assert ids(everything) == [THIRD, SECOND, ROOT] and total == 3
    page, total = under_test.store.tasks(1, 1, None)
    assert ids(page) == [SECOND] and total == 3
    alices, total = under_test.store.tasks(10, 0, "alice")
    assert ids(alices) == [THIRD, ROOT] and total == 2
    assert alices[0].status is TaskStatus.COMPLETED, "a listed task is as current as a read one"
    assert under_test.store.tasks(10, 0, "carol") == ([], 0)


def test_a_thread_is_its_first_task_and_follow_ups_oldest_first(under_test: StoreUnderTest) -> None:
    under_test.write(new_record(ROOT, "2026-11-25T10:00:00.000Z"), A_RUN)
    under_test.write(new_record(SECOND, "2026-11-25T10:01:00.000Z"), [])  # another thread
    for task_id, revision, minute in ((THIRD, 2, 2), (CHILD, 3, 3)):
        follow_up = FollowUp(ROOT, ROOT, revision, f"revision {revision}")
        under_test.write(new_record(task_id, f"2026-11-25T10:0{minute}:00.000Z", follow_up=follow_up), [])
    thread = under_test.store.thread(ROOT)
    assert ids(thread) == [ROOT, THIRD, CHILD]
    follow_ups = [(t.revision, t.request, t.thread_id) for t in thread[1:]]
    assert follow_ups == [(2, "revision 2", ROOT), (3, "revision 3", ROOT)]
    assert ids(under_test.store.thread(SECOND)) == [SECOND], "a task without follow-ups is a thread of one"


def test_a_purge_drops_finished_tasks_past_retention_and_keeps_the_rest(under_test: StoreUnderTest) -> None:
    under_test.write(new_record(ROOT, "2020-01-01T10:00:00.000Z"), A_RUN)
    under_test.write(new_record(SECOND, "2020-01-01T10:01:00.000Z"), [])  # never finished
    under_test.retention_elapsed(ROOT)
    assert under_test.store.purge_finished_before("2030-01-01T00:00:00.000+00:00") == 1
    assert under_test.store.task(ROOT) is None and under_test.store.task(SECOND) is not None
    assert under_test.store.tasks(10, 0, None) == ([under_test.store.task(SECOND)], 1)
    assert under_test.store.purge_finished_before("2030-01-01T00:00:00.000+00:00") == 0


def test_readiness_check_answers_or_raises_store_unavailable(under_test: StoreUnderTest) -> None:
    under_test.store.check()  # a live store answers
    if under_test.unreachable is None:
        return  # the memory store has nothing that can go away
    broken = under_test.unreachable()
    with pytest.raises(StoreUnavailable):
        broken.check()
    broken.close()


REDIS_LACKS = "RedisTaskStore has no {} (base.TaskStore declares it): the cluster reads events from its stream"


@pytest.fixture(
    params=[
        "sqlite",
        "memory",
        pytest.param(
            "redis",
            marks=[
                pytest.mark.slow,
                pytest.mark.xfail(strict=True, raises=AttributeError, reason=REDIS_LACKS.format("event_payloads")),
            ],
        ),
    ]
)
def with_events(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    yield from stores(request, tmp_path)


def test_event_payloads_page_through_a_tasks_events(with_events: StoreUnderTest) -> None:
    with_events.write(new_record(ROOT, "2026-11-25T10:00:00.000Z"), A_RUN)
    payloads = with_events.store.event_payloads(ROOT, 2, 2)
    assert [sequence for sequence, _ in payloads] == [3, 4]
    kinds = [TaskEvent.model_validate_json(payload).event_type for _, payload in payloads]
    assert kinds == [EventType.OUTPUT, EventType.STEP_END]
    assert with_events.store.event_payloads(ROOT, len(A_RUN), 10) == []
