"""The whole service with an event pump in place of the crews, for `bench/delivery.py`.

Everything a crew's events go through is the real thing: admission and the worker thread pool
(MAX_CONCURRENT_TASKS), `TaskStream.publish` from that worker thread, the event writer and its store,
delivery on the event loop, and the SSE route. Only the crew is replaced: each task's worker thread
publishes BENCH_EVENTS events (`start`, then `delta`s, then `end`) whose content has the size of the
reference app's (`../shared/bench/limit_app.py`), at full speed or, with BENCH_INTERVAL_MS=X, a random
0.5X..1.5X ms apart, as the reference paces its producers. With BENCH_HOLD=1 a task publishes `start`
and then holds its stream open until the service stops (tasks waiting for a worker hold theirs open
after their `queued` event), for idle-stream measurements.

Run: `BENCH_EVENTS=200 python -m uvicorn bench.event_pump_app:app --loop uvloop --http httptools`.
"""

from __future__ import annotations

import os
import random
import time

from delivery_service.runs.phases import Phase, PhaseOutcome
from delivery_service.runs.task_runner import LiveTask, TaskRunner
from delivery_service.store.task_event import EventType
from main import app

EVENTS = max(2, int(os.environ.get("BENCH_EVENTS", "200")))
INTERVAL_SECONDS = float(os.environ.get("BENCH_INTERVAL_MS", "0")) / 1000
HOLD = os.environ.get("BENCH_HOLD", "0") == "1"


def _pause() -> None:
    if INTERVAL_SECONDS:
        time.sleep(INTERVAL_SECONDS * random.uniform(0.5, 1.5))


class EventPumpRunner(TaskRunner):
    """A TaskRunner whose phases publish a fixed run of events instead of running a crew."""

    def _run_phase(self, task: LiveTask, phase: Phase) -> PhaseOutcome:
        stream = task.stream
        requirement = stream.record.requirement[:60]
        stream.publish_system(EventType.START, f"started: {requirement}")
        if HOLD:
            stream.ended.wait()
            return PhaseOutcome.ENDED
        for sequence in range(2, EVENTS):
            _pause()
            stream.publish("SoftwareDeveloper", EventType.DELTA, f"progress {sequence}/{EVENTS}: {requirement}")
        _pause()
        stream.publish_system(EventType.END, "done")
        return PhaseOutcome.ENDED


app.state.runner_class = EventPumpRunner
