"""The Celery worker of the cluster mode: runs one phase of a task per message, one crew per process
(`celery -A delivery_service.cluster.worker worker --concurrency N`).

A phase is claimed first (CLAIM_SCRIPT); while it runs, the worker renews a lease on the task, and a watcher
blocks on the task's stream to see it ended by any replica, so the crew stops at its next step.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery.signals import worker_process_init
from redis.commands.core import Script

from delivery_service.agents import AGENTS
from delivery_service.cluster.celery_app import RUN_PHASE, create_celery_app
from delivery_service.cluster.redis_event_log import (
    APPEND_SCRIPT,
    CLAIM_SCRIPT,
    QUEUED,
    RUNNING,
    WORKERS,
    AppendRequest,
    ClaimRefused,
    TaskKeys,
    connect,
    now_ms,
    script_args,
    unsequenced_event,
)
from delivery_service.cluster.store import WORK_FIELDS, work_fields, work_from_fields
from delivery_service.observability.logs import configure_logging, current_task_id
from delivery_service.runs.control_messages import timed_out
from delivery_service.runs.phases import Phase, PhaseRunner, PhaseWork
from delivery_service.runs.task_control import AppendRefused
from delivery_service.settings import Settings, get_settings
from delivery_service.store.task_event import EventType, TaskEvent
from delivery_service.task_streams import EventSink, StreamLimitExceeded

logger = logging.getLogger("multi_agent_service.worker")

WATCH_BLOCK_MS = 1000

app = create_celery_app(get_settings())


class RedisTaskSink(EventSink):
    """A crew's EventSink in a worker: appends to the task's Redis Stream, learns when the task ended."""

    def __init__(
        self,
        client: redis.Redis,
        append: Script,
        work: PhaseWork,
        settings: Settings,
        handover: Callable[[], dict[str, str]],
    ) -> None:
        super().__init__()
        self._redis = client
        self._append = append
        self._work = work
        self._settings = settings
        self._handover = handover
        self._keys = TaskKeys(work.task_id)
        self._done = threading.Event()

    def publish(
        self, agent_name: str, event_type: EventType, content: str = "", metadata: dict[str, Any] | None = None
    ) -> TaskEvent | None:
        """Append one event; None once the task has ended. Raises StreamLimitExceeded past the budget."""
        if self.ended.is_set():
            return None
        event = unsequenced_event(self._work.task_id, agent_name, event_type, content, metadata, self._settings)
        awaiting = None
        fields = None
        if event_type is EventType.CONFIRMATION_REQUIRED:
            awaiting = now_ms() + int(self._settings.confirmation_timeout_seconds * 1000)
            fields = self._handover()
        request = AppendRequest.of(event, self._settings, awaiting_deadline_ms=awaiting, fields=fields)
        result = int(self._append(keys=request.keys, args=request.args))
        if result == AppendRefused.TOO_LARGE:
            raise StreamLimitExceeded(
                f"task {self._work.task_id} produced more than {self._settings.max_stream_bytes_per_task} bytes of events"
            )
        if result <= 0 or event.is_terminal:
            self.ended.set()
        return event.model_copy(update={"sequence": result}) if result > 0 else None

    def watch(self) -> None:
        """Block on the task's stream until someone else ends it (or the phase is over)."""
        last_id = b"0-0"
        while not self._done.is_set() and not self.ended.is_set():
            try:
                if last_id == b"0-0":
                    latest = self._redis.xrevrange(self._keys.events, count=1)
                    last_id = latest[0][0] if latest else last_id
                ended, sequence = self._redis.hmget(self._keys.meta, "ended", "seq")
                if ended is not None or sequence is None:  # ended, or expired and gone
                    self.ended.set()
                    return
                reply = self._redis.xread({self._keys.events: last_id}, count=100, block=WATCH_BLOCK_MS)
            except redis.RedisError as exc:
                logger.warning("watching task %s for its end failed, retrying: %s", self._work.task_id, exc)
                self._done.wait(WATCH_BLOCK_MS / 1000)
                continue
            if reply:
                last_id = reply[0][1][-1][0]

    def stop_watching(self) -> None:
        self._done.set()


def keep_alive(client: redis.Redis, index: str, member: str, seconds: float, *, xx: bool) -> threading.Event:
    """Renew `member`'s deadline (now + `seconds`) in the sorted set `index` every third of `seconds` until
    the returned event is set; `xx`: never re-add a member removed meanwhile (a task whose end removed it)."""
    stopped = threading.Event()

    def renew() -> None:
        while not stopped.is_set():
            try:
                client.zadd(index, {member: now_ms() + int(seconds * 1000)}, xx=xx)
            except redis.RedisError as exc:
                logger.warning("renewing %s in %s failed: %s", member, index, exc)
            stopped.wait(seconds / 3)

    threading.Thread(target=renew, name=f"keep-alive {index}", daemon=True).start()
    return stopped


class WorkerProcess:
    """What one worker process keeps across messages: Redis, the phase runner, its heartbeat."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._redis = connect(settings)
        self._append = self._redis.register_script(APPEND_SCRIPT)
        self._claim = self._redis.register_script(CLAIM_SCRIPT)
        self._phases = PhaseRunner(settings)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        # In WORKERS, so the API knows how many crews can run at once.
        keep_alive(self._redis, WORKERS, self.name, settings.worker_lease_seconds, xx=False)

    def run(self, task_id: str, phase: Phase, dispatch_id: str, message_id: str, hostname: str) -> None:
        """Claim and run one phase of a task; a phase that is not ours to run is dropped."""
        keys = TaskKeys(task_id)
        claim = script_args(
            task_id=task_id,
            dispatch_id=dispatch_id,
            lease_deadline_ms=now_ms() + int(self._settings.worker_lease_seconds * 1000),
            worker_task=message_id,  # the Celery task's id, to revoke it
            worker=hostname,
        )
        claimed = int(self._claim(keys=[keys.meta, RUNNING, QUEUED], args=claim))
        if claimed != 1:
            logger.info("phase %s not run: %s", phase.value, ClaimRefused(claimed).name.lower())
            return
        *stored, running_seconds = self._redis.hmget(keys.meta, [*WORK_FIELDS, "running_seconds"])
        work = work_from_fields(stored)
        work.worker = hostname
        ran_before = float(running_seconds or 0)
        started = time.monotonic()

        def handover() -> dict[str, str]:
            """What the next phase needs, saved with `confirmation_required`."""
            return work_fields(work) | {"running_seconds": str(ran_before + time.monotonic() - started)}

        sink = RedisTaskSink(self._redis, self._append, work, self._settings, handover)
        lease = keep_alive(self._redis, RUNNING, task_id, self._settings.worker_lease_seconds, xx=True)
        threading.Thread(target=sink.watch, name="end-watch", daemon=True).start()
        timeout = threading.Timer(
            max(self._settings.task_timeout_seconds - ran_before, 0),
            lambda: sink.publish_system(EventType.ERROR, *timed_out(self._settings)),
        )
        timeout.start()
        try:
            outcome = self._phases.run(work, phase, sink)
        finally:
            timeout.cancel()
            sink.stop_watching()
            lease.set()
            self._redis.hdel(keys.meta, "worker_task")
        logger.info("phase %s ended: %s", phase.value, outcome.value)


_process: WorkerProcess | None = None


@worker_process_init.connect
def _start_process(**_: Any) -> None:
    """Each worker process (Celery forks them) sets up its logging, agents, Redis client and heartbeat."""
    global _process
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    AGENTS.load_plugins(settings.agent_plugin_modules())
    _process = WorkerProcess(settings)


@app.task(name=RUN_PHASE, bind=True)
def run_phase(self: Any, task_id: str, phase: str, dispatch_id: str) -> None:
    assert _process is not None, "worker_process_init did not run: start workers with the prefork pool"
    current_task_id.set(task_id)
    _process.run(task_id, Phase(phase), dispatch_id, self.request.id, self.request.hostname)
