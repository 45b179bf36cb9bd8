"""The cluster's Lua scripts take one JSON argument, and Python hands them the rules' data.

Each script reads `cjson.decode(ARGV[1])`, fields named once at the call (`script_args`); whether an event is
terminal comes from `event_types.EVENT_FACTS`, the byte budget from the settings and the webhook id's
format from `store.outbox.webhook_id`, so the messages the append script stores are the ones the
embedded store makes (`messages_for`). The PhaseWork a phase hands on survives the task's hash.
"""

from __future__ import annotations

import re
import uuid

import orjson
import pytest
import redis

from cluster_processes import RedisServer
from delivery_service.cluster import redis_event_log, redis_outbox
from delivery_service.cluster.redis_event_log import (
    APPEND_SCRIPT,
    AppendRequest,
    TaskKeys,
    message_key,
    unsequenced_event,
)
from delivery_service.cluster.redis_outbox import webhook_targets_json
from delivery_service.cluster.store import WORK_FIELDS, work_fields, work_from_fields
from delivery_service.event_types import EVENT_FACTS
from delivery_service.runs.phases import PhaseWork
from delivery_service.settings import Settings
from delivery_service.store.outbox import messages_for
from delivery_service.store.records import TaskRecord, WebhookTarget
from delivery_service.store.task_event import EventType

SCRIPTS = [
    getattr(module, name)
    for module in (redis_event_log, redis_outbox)
    for name in dir(module)
    if name.endswith("SCRIPT")
]
SETTINGS = Settings(redis_url="redis://unused", max_stream_bytes_per_task=70_000)  # type: ignore[call-arg]


def test_every_script_reads_one_json_argument() -> None:
    assert len(SCRIPTS) == 6
    for script in SCRIPTS:
        assert re.findall(r"#?ARGV(?:\[\d+\])?", script) == ["ARGV[1]"] and "cjson.decode(ARGV[1])" in script


def test_the_append_script_is_told_the_rules_not_written_with_them() -> None:
    for kind in EventType:
        event = unsequenced_event(str(uuid.uuid4()), "System", kind, "text", {"step": 1}, SETTINGS)
        sent = orjson.loads(AppendRequest.of(event, SETTINGS).args[0])
        assert sent["terminal"] is EVENT_FACTS[kind].terminal
        assert sent["max_bytes"] == 70_000
        assert ("webhooks" in sent) is (EVENT_FACTS[kind].message_type is not None)
    for literal in ("'end'", "'error'", "'cancelled'", "msg_", "awaiting'", "expired'"):
        assert literal not in APPEND_SCRIPT


@pytest.mark.slow  # starts redis-server
def test_the_append_script_stores_the_messages_python_makes(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.new_database_url())
    append = client.register_script(APPEND_SCRIPT)
    task_id = str(uuid.uuid4())
    record = TaskRecord(task_id, "Build", True, False, 0, {"provider": "fake"})
    record.webhooks = (
        WebhookTarget("http://a.example/all", ("task.step_completed", "task.completed")),
        WebhookTarget("http://b.example/end", ("task.completed",)),
    )
    client.hset(TaskKeys(task_id).meta, mapping={"seq": 0, "bytes": 0, "webhooks": webhook_targets_json(record)})
    expected = []
    for kind, metadata in ((EventType.THOUGHT, {}), (EventType.STEP_END, {"step": 1}), (EventType.END, {})):
        event = unsequenced_event(task_id, "QAEngineer", kind, "done", metadata, SETTINGS)
        request = AppendRequest.of(event, SETTINGS)
        sequence = int(append(keys=request.keys, args=request.args))
        expected += messages_for(record, event.model_copy(update={"sequence": sequence}), SETTINGS.public_url)

    stored = [member.decode() for member in client.lrange(f"{TaskKeys(task_id).meta}:webhooks", 0, -1)]
    assert stored == [message.webhook_id for message in expected] and len(stored) == 3
    for message in expected:
        fields = {
            key.decode(): value.decode() for key, value in client.hgetall(message_key(message.webhook_id)).items()
        }
        assert (fields["url"], fields["type"], fields["body"]) == (message.url, message.type, message.body)
        assert int(fields["sequence"]) == message.sequence


def test_the_phase_work_handed_on_is_read_back_as_it_was() -> None:
    record = TaskRecord(str(uuid.uuid4()), "Build", False, True, 0, {"provider": "fake"})
    work = PhaseWork.of(record)
    work.revisions, work.analysis, work.analysis_data = 2, "# Analysis", {"user_stories": []}
    work.feedback, work.usage = "Shorter", {"total_tokens": 12}
    stored = {"request": record.to_json().decode(), **work_fields(work)}
    assert work_from_fields([stored[name].encode() if name in stored else None for name in WORK_FIELDS]) == work
    fresh = [record.to_json(), *[None] * (len(WORK_FIELDS) - 1)]  # HMGET's answer before any handover
    assert work_from_fields(fresh) == PhaseWork.of(record)
