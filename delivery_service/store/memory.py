"""`MemoryTaskStore`: the `TaskStore` interface kept in this process (TASK_STORE=memory)."""

from __future__ import annotations

import threading

from delivery_service.store.events import EncodedEvent
from delivery_service.store.records import TaskRecord


class MemoryTaskStore:
    """The same interface kept in this process: nothing survives a restart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskRecord] = {}
        self._events: dict[str, list[tuple[int, str]]] = {}

    def save(self, records: list[TaskRecord], events: list[EncodedEvent]) -> None:
        with self._lock:
            for record in records:
                self._tasks[record.task_id] = record
            for encoded in events:
                self._events.setdefault(encoded.event.task_id, []).append((encoded.event.sequence, encoded.payload))

    def task(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def tasks(self, limit: int, offset: int, owner: str | None) -> tuple[list[TaskRecord], int]:
        with self._lock:
            visible = [record for record in self._tasks.values() if owner is None or record.owner == owner]
            newest = sorted(visible, key=lambda record: record.created_at, reverse=True)
        return newest[offset : offset + limit], len(newest)

    def thread(self, thread_id: str) -> list[TaskRecord]:
        with self._lock:
            members = [record for record in self._tasks.values() if record.thread_id == thread_id]
        return sorted(members, key=lambda record: record.created_at)

    def event_payloads(self, task_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        with self._lock:
            stored = self._events.get(task_id, [])
            return stored[after : after + limit]

    def unfinished(self) -> list[TaskRecord]:
        return []

    def purge_finished_before(self, timestamp: str) -> int:
        with self._lock:
            expired = [
                task_id
                for task_id, record in self._tasks.items()
                if record.finished_at is not None and record.finished_at < timestamp
            ]
            for task_id in expired:
                del self._tasks[task_id]
                self._events.pop(task_id, None)
        return len(expired)

    def check(self) -> None:
        return None

    def checkpoint(self) -> None:
        return None

    def close(self) -> None:
        return None
