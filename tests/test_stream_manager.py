"""The per-task event log on its own: ordering under concurrent publishers, limits, replay, retention."""

from __future__ import annotations

import asyncio
import json

import pytest

from stream_manager import StreamLimitExceeded, StreamLimits, StreamManager, TaskStream
from task_events import EventType, TaskEvent

LIMITS = StreamLimits(max_stream_bytes=1_000_000, max_event_content_chars=1000)


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
    async def scenario() -> tuple[list[dict], list[TaskEvent]]:
        applied: list[TaskEvent] = []
        stream = StreamManager(LIMITS, 60).create_stream("t1", listener=applied.append)
        subscriber = asyncio.create_task(collect(stream))

        def publisher(worker: int) -> None:
            for n in range(200):
                stream.publish("ProductManager", EventType.DELTA, f"{worker}:{n}")

        await asyncio.gather(*(asyncio.to_thread(publisher, worker) for worker in range(8)))
        stream.publish_system(EventType.END, "done")
        return await subscriber, applied

    events, applied = asyncio.run(scenario())
    assert [e["sequence"] for e in events] == list(range(1, 1602))
    assert [e.sequence for e in applied] == list(range(1, 1602)), "the listener sees every event once, in order"
    for worker in range(8):
        own = [int(e["content"].split(":")[1]) for e in events[:-1] if e["content"].startswith(f"{worker}:")]
        assert own == list(range(200)), "each publisher's events keep their order"


def test_terminal_event_is_last_and_only_once() -> None:
    async def scenario() -> tuple[list[dict], object]:
        stream = StreamManager(LIMITS, 60).create_stream("t2")
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
        stream = StreamManager(LIMITS, 60).create_stream("t3")
        early = asyncio.create_task(collect(stream))
        for n in range(10):
            stream.publish("QAEngineer", EventType.THOUGHT, str(n))
        await asyncio.sleep(0)
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
        stream = StreamManager(limits, 60).create_stream("t4")
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
        stream = StreamManager(LIMITS, 60).create_stream("t5")
        stream.publish("ProductManager", EventType.OUTPUT, "y" * 1500)
        stream.publish_system(EventType.END, "done")
        return await collect(stream)

    output = asyncio.run(scenario())[0]["content"]
    assert output.startswith("y" * 1000) and "500 characters omitted" in output and "y" * 1001 not in output


def test_retention_keeps_live_and_read_streams() -> None:
    async def scenario() -> tuple[list[str], list[str], list[str]]:
        manager = StreamManager(LIMITS, retention_seconds=0)
        live = manager.create_stream("live")
        live.publish_system(EventType.START, "go")
        done = manager.create_stream("done")
        done.publish_system(EventType.END, "done")
        read = manager.create_stream("read")
        read.publish_system(EventType.END, "done")
        await asyncio.sleep(0)
        reader = read.frames_after(0)
        await reader.__anext__()
        first = manager.remove_expired()
        await reader.aclose()
        second = manager.remove_expired()
        return first, second, [info.task_id for info in manager.list_streams()]

    first, second, left = asyncio.run(scenario())
    assert first == ["done"], "finished and unread streams past retention go"
    assert second == ["read"], "a stream goes once its last reader has left"
    assert left == ["live"], "a running task's stream stays"
