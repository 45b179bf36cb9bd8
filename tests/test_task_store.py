"""The SQLite store on its own: a database written by an earlier version opens and keeps its data."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from delivery_service.store.records import TaskRecord, TaskStatus
from delivery_service.store.sqlite import SqliteTaskStore
from delivery_service.store.task_event import EncodedEvent, EventType, TaskEvent

# The tasks table as the first released version wrote it: no `owner`, no `usage`.
_FIRST_TASKS_TABLE = """
CREATE TABLE tasks (
    task_id TEXT PRIMARY KEY, requirement TEXT NOT NULL, skip_confirmation INTEGER NOT NULL,
    stream_tokens INTEGER NOT NULL, priority INTEGER NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL,
    current_agent TEXT, completed_steps INTEGER NOT NULL, total_steps INTEGER NOT NULL,
    last_sequence INTEGER NOT NULL, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    error TEXT, summary TEXT
);
INSERT INTO tasks VALUES ('old-task', 'Build a blog', 1, 0, 0, '{"provider": "fake"}', 'completed', NULL,
    4, 4, 12, '2026-11-01T10:00:00.000Z', '2026-11-01T10:00:01.000Z', '2026-11-01T10:00:09.000Z', NULL, 'Done');
"""


def test_an_earlier_database_gains_the_new_columns_and_keeps_its_tasks(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "tasks.db") as connection:
        connection.executescript(_FIRST_TASKS_TABLE)
    store = SqliteTaskStore(tmp_path)
    old = store.task("old-task")
    assert old is not None and old.status is TaskStatus.COMPLETED and old.summary == "Done"
    assert old.owner is None
    assert old.usage == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}

    record = TaskRecord("new-task", "Build a shop", True, False, 0, {"provider": "fake"})
    step_end = TaskEvent(
        task_id="new-task",
        sequence=1,
        event_type=EventType.STEP_END,
        agent_name="ProductManager",
        content="step 1 done",
        timestamp="2026-11-25T10:00:00.000Z",
        metadata={"step": 1, "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}},
    )
    record.apply(step_end)
    store.save([record], [EncodedEvent.of(step_end)])
    store.close()

    reopened = SqliteTaskStore(tmp_path)
    assert reopened.task("new-task").usage == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    assert reopened.task("old-task").summary == "Done"
    reopened.close()


def _delta(task_id: str, sequence: int) -> EncodedEvent:
    return EncodedEvent.of(
        TaskEvent(
            task_id=task_id,
            sequence=sequence,
            event_type=EventType.DELTA,
            agent_name="QAEngineer",
            content=f"chunk {sequence}",
            timestamp="2026-11-25T10:00:00.000Z",
        )
    )


def test_deltas_do_not_rewrite_the_task_yet_its_last_sequence_is_exact(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path)
    record = TaskRecord("streaming", "x" * 5000, True, True, 0, {"provider": "fake"})
    store.save([record], [])
    deltas = [_delta("streaming", sequence) for sequence in range(1, 51)]
    assert not any(record.apply(delta.event) for delta in deltas), "a delta changes nothing but the sequence"
    store.save([], deltas)
    assert store.task("streaming").last_sequence == 50
    assert [task.last_sequence for task in store.tasks(10, 0, None)[0]] == [50]
    assert [task.last_sequence for task in store.unfinished()] == [50], "a restart continues after event 50"
    store.close()


def test_checkpoint_folds_the_write_ahead_log_into_the_database(tmp_path: Path) -> None:
    store = SqliteTaskStore(tmp_path)
    database, log = tmp_path / "tasks.db", tmp_path / "tasks.db-wal"
    store.save([TaskRecord("logged", "Build a blog", True, True, 0, {})], [_delta("logged", n) for n in range(1, 500)])
    before = database.stat().st_size
    assert log.stat().st_size > before, "the writes wait in the log: the automatic checkpoint is far off"
    store.checkpoint()
    assert database.stat().st_size > before, "the logged pages were copied into the database"
    store.close()
