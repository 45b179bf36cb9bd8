"""`MemoryTaskStore`: the `TaskStore` interface kept in this process (TASK_STORE=memory)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from delivery_service.store import sqlite_outbox
from delivery_service.store.outbox import OutboxMessage
from delivery_service.store.records import TaskRecord
from delivery_service.store.task_event import EncodedEvent


class MemoryTaskStore:
    """Nothing survives a restart; the webhook outbox is SQLite's, on an in-memory database of its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskRecord] = {}
        self._events: dict[str, list[tuple[int, str]]] = {}
        self._outbox_db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._outbox_db.row_factory = sqlite3.Row
        self._outbox_db.executescript(sqlite_outbox.SCHEMA)
        self.outbox = sqlite_outbox.SqliteOutbox(self._outbox_transaction, self._outbox_read)

    def save(
        self, records: list[TaskRecord], events: list[EncodedEvent], messages: Sequence[OutboxMessage] = ()
    ) -> None:
        with self._lock:
            for record in records:
                self._tasks[record.task_id] = record
            for encoded in events:
                self._events.setdefault(encoded.event.task_id, []).append((encoded.event.sequence, encoded.payload))
            sqlite_outbox.insert(self._outbox_db, messages)

    def waive(self, task_id: str, waiver: dict[str, str], messages: Sequence[OutboxMessage]) -> bool:
        with self._lock:
            record = self._tasks.get(task_id)
            if record is None or record.waiver is not None:
                return False
            record.waiver = waiver
            sqlite_outbox.insert(self._outbox_db, messages)
        return True

    @contextmanager
    def _outbox_transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._outbox_db.execute("BEGIN")
            try:
                yield self._outbox_db
            except BaseException:
                self._outbox_db.execute("ROLLBACK")
                raise
            self._outbox_db.execute("COMMIT")

    def _outbox_read(self, query: str, parameters: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._outbox_db.execute(query, parameters).fetchall()

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
                for table in sqlite_outbox.TABLES:
                    self._outbox_db.execute(f"DELETE FROM {table} WHERE task_id = ?", (task_id,))
        return len(expired)

    def check(self) -> None:
        return None

    def checkpoint(self) -> None:
        return None

    def close(self) -> None:
        return None
