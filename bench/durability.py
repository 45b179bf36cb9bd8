"""What durability costs: events/s and delivery latency with the SQLite store and with the memory store.

Both runs go through the service's own stream path in one process, alternately, in the same run:
worker threads publish sequenced events the way crews do (`TaskStream.publish`), the EventWriter
stores them (SQLite in WAL mode with group commit, or memory), hands them to the event loop, and
subscribers read the frames their SSE responses would send. HTTP is left out on purpose: it costs the
same in both modes (see docs/load-test.md for the full path).

    .venv/bin/python bench/durability.py [--tasks 50] [--events 200] [--subscribers 2] [--rounds 3] [--interval-ms 0]

With --interval-ms 0 the publishers go as fast as they can (throughput; latency is then mostly the
backlog); with a pace both modes sustain, e.g. --tasks 25 --interval-ms 10, latency is the push path.

Prints a JSON report: per mode, the median over rounds of events/s delivered and of p50/p99 latency
from an event's creation (its timestamp) to a subscriber receiving it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from delivery_service.store.base import TaskStore  # noqa: E402
from delivery_service.store.memory import MemoryTaskStore  # noqa: E402
from delivery_service.store.records import TaskRecord  # noqa: E402
from delivery_service.store.sqlite import SqliteTaskStore  # noqa: E402
from delivery_service.store.task_event import EventType  # noqa: E402
from delivery_service.task_streams import StreamLimits, StreamManager, TaskStream  # noqa: E402

LIMITS = StreamLimits(max_stream_bytes=1 << 30, max_event_content_chars=100_000)
CONTENT = "a token-sized piece of model output, as a delta event carries it"


def _timestamps(chunk: bytes) -> list[float]:
    return [
        datetime.fromisoformat(
            json.loads(block.split(b"\ndata: ", 1)[1])["timestamp"].replace("Z", "+00:00")
        ).timestamp()
        for block in chunk.split(b"\n\n")
        if block
    ]


def _publish(stream: TaskStream, events: int, interval_seconds: float) -> None:
    stream.publish_system(EventType.START, "start")
    for _ in range(events - 2):
        if interval_seconds:
            time.sleep(interval_seconds)
        stream.publish("ProductManager", EventType.DELTA, CONTENT)
    stream.publish_system(EventType.END, "end")


async def one_round(
    store: TaskStore, tasks: int, events: int, subscribers: int, interval_seconds: float
) -> dict[str, float]:
    streams = StreamManager(store, LIMITS, retention_seconds=60)
    opened = [
        await streams.create_stream(TaskRecord(f"bench-{n}", "benchmark", True, False, 0, {})) for n in range(tasks)
    ]
    latencies: list[float] = []

    async def subscribe(stream: TaskStream) -> None:
        async for chunk in stream.frames_after(0):
            received = time.time()
            latencies.extend(received - created for created in _timestamps(chunk))

    readers = [asyncio.create_task(subscribe(stream)) for stream in opened for _ in range(subscribers)]
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(max_workers=tasks, thread_name_prefix="publisher") as publishers:
        await asyncio.gather(
            *(loop.run_in_executor(publishers, _publish, stream, events, interval_seconds) for stream in opened)
        )
    await asyncio.gather(*readers)
    elapsed = time.perf_counter() - started
    await streams.close()
    latencies.sort()
    return {
        "events_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "delivered": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--interval-ms", type=float, default=0.0, help="pause between a task's events (0: publish as fast as possible)"
    )
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {"sqlite": [], "memory": []}
    with tempfile.TemporaryDirectory() as data_dir:
        for round_number in range(args.rounds):
            for mode in ("sqlite", "memory"):
                store: TaskStore = (
                    SqliteTaskStore(Path(data_dir) / f"round-{round_number}") if mode == "sqlite" else MemoryTaskStore()
                )
                run = one_round(store, args.tasks, args.events, args.subscribers, args.interval_ms / 1000)
                results[mode].append(asyncio.run(run))
                store.close()
    report = {
        "config": vars(args),
        **{
            mode: {key: round(statistics.median(run[key] for run in runs), 2) for key in runs[0]}
            for mode, runs in results.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
