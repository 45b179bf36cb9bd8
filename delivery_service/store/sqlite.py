"""`SqliteTaskStore`, the default `base.TaskStore` (TASK_STORE=sqlite): one WAL-mode SQLite file under DATA_DIR."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, fields, replace
from pathlib import Path

from delivery_service.store import sqlite_outbox
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.outbox import OutboxMessage
from delivery_service.store.records import (
    FINISHED_STATUSES,
    USAGE_KEYS,
    Deliverable,
    FollowUp,
    TaskRecord,
    TaskStatus,
    webhook_targets,
)
from delivery_service.store.task_event import EncodedEvent, EventType

# The service checkpoints the write-ahead log every CHECKPOINT_SECONDS from its own connection, where it
# does not stall the event writer (SQLite's automatic checkpoint runs inside a commit: several
# milliseconds, every ~1,000 pages). The automatic one stays as a backstop for a log this large.
_WAL_BACKSTOP_PAGES = 20_000

UNFINISHED_STATUSES = tuple(status.value for status in TaskStatus if status not in FINISHED_STATUSES)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY,
    requirement TEXT NOT NULL,
    skip_confirmation INTEGER NOT NULL,
    stream_tokens INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    model TEXT NOT NULL,
    status TEXT NOT NULL,
    current_agent TEXT,
    completed_steps INTEGER NOT NULL,
    total_steps INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    summary TEXT,
    owner TEXT,
    usage TEXT NOT NULL DEFAULT '{}',
    thread_id TEXT,
    follow_up TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_creation ON tasks (created_at);
CREATE INDEX IF NOT EXISTS tasks_by_finish ON tasks (finished_at);
CREATE TABLE IF NOT EXISTS events (
    task_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (task_id, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliverables (
    task_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    agent_name TEXT NOT NULL,
    title TEXT NOT NULL,
    content TEXT NOT NULL,
    data TEXT,
    PRIMARY KEY (task_id, agent_name)
) WITHOUT ROWID;
"""

# The record's fields (its deliverables have their own table) and its thread, in the record's order.
_TASK_COLUMNS = (*(field.name for field in fields(TaskRecord) if field.name != "deliverables"), "thread_id")
# Set when a task is created and never changed: an update leaves them (and their indexes) alone.
_FIXED_COLUMNS = frozenset(
    ("task_id", "requirement", "skip_confirmation", "stream_tokens", "priority", "model", "created_at", "owner")
) | {"thread_id", "follow_up", "webhooks", "waiver"}  # the waiver: written by `waive` alone
_UPSERT_TASK = (
    f"INSERT INTO tasks ({', '.join(_TASK_COLUMNS)}) VALUES ({', '.join('?' for _ in _TASK_COLUMNS)}) "
    "ON CONFLICT (task_id) DO UPDATE SET "
    + ", ".join(f"{column} = excluded.{column}" for column in _TASK_COLUMNS if column not in _FIXED_COLUMNS)
)


def _task_row(record: TaskRecord) -> tuple[object, ...]:
    encoded = {
        "model": json.dumps(record.model),
        "usage": json.dumps(record.usage),
        "status": record.status.value,
        "follow_up": json.dumps(asdict(record.follow_up)) if record.follow_up else None,
        "webhooks": json.dumps([asdict(target) for target in record.webhooks]) if record.webhooks else None,
        "gate": json.dumps(record.gate) if record.gate is not None else None,
        "waiver": json.dumps(record.waiver) if record.waiver is not None else None,
    }
    return tuple(encoded[column] if column in encoded else getattr(record, column) for column in _TASK_COLUMNS)


# Tasks with `last_sequence` taken from their stored events: the row is rewritten only when the task's
# state changes, not for every delta (see TaskRecord.apply).
_SELECT_TASKS = (
    "SELECT tasks.*, COALESCE((SELECT MAX(sequence) FROM events WHERE events.task_id = tasks.task_id), 0) "
    "AS stored_sequence FROM tasks"
)


def _record(row: sqlite3.Row) -> TaskRecord:
    values = {column: row[column] for column in _TASK_COLUMNS}
    values["last_sequence"] = row["stored_sequence"]
    values["model"] = json.loads(values["model"])
    values["usage"] = {**dict.fromkeys(USAGE_KEYS, 0), **json.loads(values["usage"])}
    values["status"] = TaskStatus(values["status"])
    values["skip_confirmation"] = bool(values["skip_confirmation"])
    values["stream_tokens"] = bool(values["stream_tokens"])
    del values["thread_id"]  # the record's thread is its follow-up's, or itself
    values["follow_up"] = FollowUp.from_dict(json.loads(values["follow_up"])) if values["follow_up"] else None
    values["webhooks"] = webhook_targets(json.loads(values["webhooks"])) if values["webhooks"] else ()
    values["gate"] = json.loads(values["gate"]) if values["gate"] else None
    values["waiver"] = json.loads(values["waiver"]) if values["waiver"] else None
    return TaskRecord(**values)


def _identity(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino


class SqliteTaskStore:
    """Tasks, events and deliverables in `<data_dir>/tasks.db` (synchronous=NORMAL)."""

    def __init__(self, data_dir: Path, busy_timeout_seconds: float = 5.0) -> None:
        self.path = data_dir / "tasks.db"
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect(busy_timeout_seconds)
            self._writer.executescript(_SCHEMA + sqlite_outbox.SCHEMA)
            self._add_missing_columns()
            self._writer.execute(f"PRAGMA wal_autocheckpoint={_WAL_BACKSTOP_PAGES}")
            self._reader = self._connect(busy_timeout_seconds)
            self._checkpointer = self._connect(busy_timeout_seconds)
            files = (str(self.path), f"{self.path}-wal")
            self._opened = {path: _identity(os.stat(path)) for path in files}
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(
                f"Cannot open the task database {self.path}: {exc}. Check that DATA_DIR ({data_dir}) is a writable "
                "directory with free space and that no other program holds the database, then restart."
            ) from exc
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._checkpoint_lock = threading.Lock()
        self.outbox = sqlite_outbox.SqliteOutbox(self._transaction, self._read)

    def _connect(self, busy_timeout_seconds: float) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=busy_timeout_seconds, check_same_thread=False, isolation_level=None
        )
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA foreign_keys=OFF")
        return connection

    def _add_missing_columns(self) -> None:
        """Bring a database written by an earlier version up to date (columns added since)."""
        present = {row["name"] for row in self._writer.execute("PRAGMA table_info(tasks)")}
        for column in ("owner", "usage", "thread_id", "follow_up", "webhooks", "gate", "waiver"):
            if column not in present:
                default = " NOT NULL DEFAULT '{}'" if column == "usage" else ""
                self._writer.execute(f"ALTER TABLE tasks ADD COLUMN {column} TEXT{default}")
        self._writer.execute("CREATE INDEX IF NOT EXISTS tasks_by_thread ON tasks (thread_id)")
        if "data" not in {row["name"] for row in self._writer.execute("PRAGMA table_info(deliverables)")}:
            self._writer.execute("ALTER TABLE deliverables ADD COLUMN data TEXT")

    def _check_files(self) -> None:
        """Raise StoreUnavailable unless the database and its write-ahead log on disk are still the files
        this store opened: one deleted or replaced while the service runs would take every later write
        with it (SQLite goes on writing to the open file, which nothing can open again)."""
        for path, opened in self._opened.items():
            try:
                changed = "was replaced" if _identity(os.stat(path)) != opened else ""
            except FileNotFoundError:
                changed = "was deleted"
            except OSError as exc:
                changed = f"cannot be checked ({exc})"
            if changed:
                raise StoreUnavailable(
                    f"The task database file {path} {changed} while the service was running, so nothing more can "
                    "be stored. Put the database back (from a backup), or accept an empty task history, and restart "
                    "the service."
                )

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction on the writing connection, into the files this store opened: all of it or
        none of it; SQLite errors become StoreUnavailable."""
        with self._write_lock:
            self._check_files()
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield self._writer
                    self._writer.execute("COMMIT")
                except BaseException:
                    if self._writer.in_transaction:  # SQLite has already rolled back on a full disk
                        self._writer.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._fail(action, exc) from exc

    def _fail(self, action: str, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(
            f"Could not {action} the task database {self.path}: {exc}. Check free space and permissions of DATA_DIR "
            "and that no other program locks the database."
        )

    def save(
        self, records: list[TaskRecord], events: list[EncodedEvent], messages: Sequence[OutboxMessage] = ()
    ) -> None:
        deliverables = [
            (
                event.task_id,
                event.sequence,
                event.agent_name,
                str(event.metadata.get("title") or event.agent_name),
                event.content,
                json.dumps(event.metadata["data"]) if event.metadata.get("data") is not None else None,
            )
            for event in (encoded.event for encoded in events)
            if event.event_type is EventType.OUTPUT
        ]
        with self._transaction("write to"):
            self._writer.executemany(_UPSERT_TASK, [_task_row(record) for record in records])
            self._writer.executemany(
                "INSERT INTO events (task_id, sequence, payload) VALUES (?, ?, ?)",
                [(encoded.event.task_id, encoded.event.sequence, encoded.payload) for encoded in events],
            )
            self._writer.executemany(
                "INSERT INTO deliverables (task_id, sequence, agent_name, title, content, data) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (task_id, agent_name) DO UPDATE SET "
                "sequence = excluded.sequence, title = excluded.title, content = excluded.content, data = excluded.data",
                deliverables,
            )
            sqlite_outbox.insert(self._writer, messages)

    def waive(self, task_id: str, waiver: dict[str, str], messages: Sequence[OutboxMessage]) -> bool:
        with self._transaction("write to"):
            updated = self._writer.execute(
                "UPDATE tasks SET waiver = ? WHERE task_id = ? AND waiver IS NULL", (json.dumps(waiver), task_id)
            )
            if updated.rowcount:
                sqlite_outbox.insert(self._writer, messages)
        return bool(updated.rowcount)

    def _read(self, query: str, parameters: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._read_lock:
            try:
                return self._reader.execute(query, parameters).fetchall()
            except sqlite3.Error as exc:
                raise self._fail("read", exc) from exc

    def _records(self, where: str, parameters: tuple[object, ...]) -> list[TaskRecord]:
        return [_record(row) for row in self._read(f"{_SELECT_TASKS} {where}", parameters)]

    def task(self, task_id: str) -> TaskRecord | None:
        found = self._records("WHERE task_id = ?", (task_id,))
        if not found:
            return None
        deliverables = [
            Deliverable(
                row["agent_name"], row["title"], row["content"], json.loads(row["data"]) if row["data"] else None
            )
            for row in self._read(
                "SELECT agent_name, title, content, data FROM deliverables WHERE task_id = ? ORDER BY sequence",
                (task_id,),
            )
        ]
        return replace(found[0], deliverables=deliverables)

    def tasks(self, limit: int, offset: int, owner: str | None) -> tuple[list[TaskRecord], int]:
        mine = "WHERE owner IS ?" if owner is not None else "WHERE ? IS NULL"
        records = self._records(f"{mine} ORDER BY created_at DESC LIMIT ? OFFSET ?", (owner, limit, offset))
        total = self._read(f"SELECT COUNT(*) AS n FROM tasks {mine}", (owner,))[0]["n"]
        return records, int(total)

    def thread(self, thread_id: str) -> list[TaskRecord]:
        # A task stored before threads existed has no thread_id: it is the first of its own thread.
        return self._records("WHERE thread_id = ? OR task_id = ? ORDER BY created_at", (thread_id, thread_id))

    def event_payloads(self, task_id: str, after: int, limit: int) -> list[tuple[int, str]]:
        rows = self._read(
            "SELECT sequence, payload FROM events WHERE task_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
            (task_id, after, limit),
        )
        return [(row["sequence"], row["payload"]) for row in rows]

    def unfinished(self) -> list[TaskRecord]:
        placeholders = ", ".join("?" for _ in UNFINISHED_STATUSES)
        return self._records(f"WHERE status IN ({placeholders}) ORDER BY created_at", UNFINISHED_STATUSES)

    def purge_finished_before(self, timestamp: str) -> int:
        finished = "finished_at IS NOT NULL AND finished_at < ?"
        with self._transaction("purge old tasks from"):
            for table in ("events", "deliverables", *sqlite_outbox.TABLES):
                self._writer.execute(
                    f"DELETE FROM {table} WHERE task_id IN (SELECT task_id FROM tasks WHERE {finished})", (timestamp,)
                )
            purged = self._writer.execute(f"DELETE FROM tasks WHERE {finished}", (timestamp,)).rowcount
        return int(purged)

    def check(self) -> None:
        self._check_files()
        self._read("SELECT 1")

    def checkpoint(self) -> None:
        with self._checkpoint_lock:
            try:
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:
                raise self._fail("checkpoint", exc) from exc

    def close(self) -> None:
        with self._write_lock, self._read_lock, self._checkpoint_lock:
            self._writer.close()
            self._reader.close()
            self._checkpointer.close()
