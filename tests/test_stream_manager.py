"""The per-task event log on its own: ordering under concurrent publishers, limits, replay, retention."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from delivery_service.store.memory import MemoryTaskStore
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import EncodedEvent, EventType, TaskEvent, utc_now_iso
from delivery_service.task_streams import StreamLimitExceeded, StreamLimits, StreamManager, TaskStream

LIMITS = StreamLimits(max_stream_bytes=1_000_000, max_event_content_chars=1000)


def manager(limits: StreamLimits = LIMITS, retention_seconds: float = 60) -> StreamManager:
    return StreamManager(MemoryTaskStore(), limits, retention_seconds)


async def new_stream(streams: StreamManager, task_id: str) -> TaskStream:
    record = TaskRecord(task_id, "requirement", True, False, 0, {"provider": "fake"})
    return await streams.create_stream(record)


def decode(frames: list[bytes]) -> list[dict]:
    """The events in a list of (possibly coalesced) SSE frames."""
    events = []
    for block in b"".join(frames).split(b"\n\n"):
        if block:
            id_line, data_line = block.split(b"\n")
            event = json.loads(data_line.removeprefix(b"data: "))
            assert id_line == b"id: %d" % event["sequence"]
            events.append(event)
    return events


async def collect(stream: TaskStream, after: int = 0) -> list[dict]:
    return decode([frame async for frame in stream.frames_after(after)])


def test_concurrent_publishers_get_gapless_ordered_sequences() -> None:
    async def scenario() -> tuple[list[dict], TaskStream]:
        streams = manager()
        stream = await new_stream(streams, "t1")
        subscriber = asyncio.create_task(collect(stream))

        def publisher(worker: int) -> None:
            for n in range(200):
                stream.publish("ProductManager", EventType.DELTA, f"{worker}:{n}")

        await asyncio.gather(*(asyncio.to_thread(publisher, worker) for worker in range(8)))
        stream.publish_system(EventType.END, "done")
        events = await subscriber
        stored = streams.store.event_payloads("t1", 0, 10_000)
        assert [json.loads(payload) for _, payload in stored] == events, "what was delivered is what was stored"
        return events, stream

    events, stream = asyncio.run(scenario())
    assert [e["sequence"] for e in events] == list(range(1, 1602))
    assert stream.record.last_sequence == 1601 and stream.record.status.value == "completed"
    for worker in range(8):
        own = [int(e["content"].split(":")[1]) for e in events[:-1] if e["content"].startswith(f"{worker}:")]
        assert own == list(range(200)), "each publisher's events keep their order"


def test_terminal_event_is_last_and_only_once() -> None:
    async def scenario() -> tuple[list[dict], object]:
        stream = await new_stream(manager(), "t2")
        stream.publish_system(EventType.START, "go")
        stream.publish_system(EventType.ERROR, "failed")
        late = stream.publish("Coordinator", EventType.OUTPUT, "too late")
        stream.publish_system(EventType.END, "also too late")
        return await collect(stream), late

    events, late = asyncio.run(scenario())
    assert late is None
    assert [e["event_type"] for e in events] == ["start", "error"]


def test_replay_from_any_sequence_and_multiple_subscribers() -> None:
    async def scenario() -> list[list[dict]]:
        stream = await new_stream(manager(), "t3")
        early = asyncio.create_task(collect(stream))
        for n in range(10):
            stream.publish("QAEngineer", EventType.THOUGHT, str(n))
        middle = asyncio.create_task(collect(stream, after=4))
        stream.publish_system(EventType.END, "done")
        return [await early, await middle, await collect(stream, after=11), await collect(stream, after=99)]

    early, middle, at_end, beyond = asyncio.run(scenario())
    assert [e["sequence"] for e in early] == list(range(1, 12))
    assert [e["sequence"] for e in middle] == list(range(5, 12))
    assert at_end == [] and beyond == []


def test_byte_budget_stops_the_stream_but_not_its_terminal_event() -> None:
    async def scenario() -> list[dict]:
        limits = StreamLimits(max_stream_bytes=4000, max_event_content_chars=1000)
        stream = await new_stream(manager(limits), "t4")
        with pytest.raises(StreamLimitExceeded):
            for _ in range(100):
                stream.publish("ProductManager", EventType.DELTA, "x" * 500)
        stream.publish_system(EventType.ERROR, "limit reached")
        return await collect(stream)

    events = asyncio.run(scenario())
    assert events[-1]["event_type"] == "error"
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    assert sum(len(json.dumps(e)) for e in events[:-1]) < 4000


def test_oversized_content_is_truncated_with_a_note() -> None:
    async def scenario() -> list[dict]:
        stream = await new_stream(manager(), "t5")
        stream.publish("ProductManager", EventType.OUTPUT, "y" * 1500)
        stream.publish_system(EventType.END, "done")
        return await collect(stream)

    output = asyncio.run(scenario())[0]["content"]
    assert output.startswith("y" * 1000) and "500 characters omitted" in output and "y" * 1001 not in output


def test_retention_keeps_live_and_read_streams() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        streams = manager(retention_seconds=0)
        live = await new_stream(streams, "live")
        live.publish_system(EventType.START, "go")
        done = await new_stream(streams, "done")
        done.publish_system(EventType.END, "done")
        read = await new_stream(streams, "read")
        read.publish_system(EventType.END, "done")
        reader = read.frames_after(0)
        await reader.__anext__()
        await collect(done)
        first = streams.remove_expired()
        await reader.aclose()
        second = streams.remove_expired()
        return first, second, [stream.task_id for stream in streams.streams()]

    first, second, left = asyncio.run(scenario())
    assert first == ["done"], "finished and unread streams past retention go"
    assert second == ["read"], "a stream goes once its last reader has left"
    assert left == ["live"], "a running task's stream stays"


@pytest.mark.parametrize(
    "metadata",
    [{}, {"usage": {"prompt_tokens": 3}, "title": "测试 \u2028 <b>"}, {"huge": 2**70, "items": [1.5, None, "x"]}],
)
def test_the_fast_encoding_is_the_models_own_json(metadata: dict) -> None:
    event = TaskEvent(
        task_id="t-1",
        sequence=7,
        agent_name="QAEngineer",
        event_type=EventType.OUTPUT,
        content='say "hi"\n',
        timestamp=utc_now_iso(),
        metadata=metadata,
    )
    encoded = EncodedEvent.of(event)
    assert json.loads(encoded.payload) == json.loads(event.model_dump_json())
    assert encoded.frame == f"id: 7\ndata: {encoded.payload}\n\n".encode()


def test_timestamps_are_iso_utc_with_microseconds() -> None:
    before = datetime.now(timezone.utc)
    stamp = utc_now_iso()
    after = datetime.now(timezone.utc)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert before - timedelta(microseconds=1) <= moment <= after, "microseconds are truncated, not rounded"
