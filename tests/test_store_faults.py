"""A data directory that is read-only or full, a locked database: clear errors, /readyz fails, nothing
stored is lost.

The faults are real: DATA_DIR is a small tmpfs that the test remounts read-only or fills up (which
needs root, as in CI), and another connection holds an exclusive lock on the database.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ServerProcess, follow_in_background, read_stream, sequences, start_task, wait_until
from delivery_service.store.base import StoreUnavailable
from delivery_service.store.sqlite import SqliteTaskStore

pytestmark = pytest.mark.slow

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs for DATA_DIR needs root")


@pytest.fixture
def data_mount(tmp_path: Path) -> Iterator[Callable[[str], None]]:
    """A tmpfs at <workdir>/data (the services' DATA_DIR); call it with mount options to remount."""
    mountpoint = tmp_path / "data"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)], check=True)

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(mountpoint)], check=True)

    yield remount
    subprocess.run(["umount", "-l", str(mountpoint)], check=True)


@needs_root
def test_read_only_data_dir_gives_clear_errors_and_keeps_data(
    start_service: Callable[..., ServerProcess], data_mount: Callable[[str], None]
) -> None:
    service = start_service()
    task_id = start_task(service.base_url)
    events = read_stream(service.base_url, task_id)
    service.stop()

    data_mount("ro")
    degraded = start_service()
    ready = httpx.get(f"{degraded.base_url}/readyz")
    assert ready.status_code == 503
    assert "Cannot open the task database" in ready.json()["checks"]["store"]
    assert "DATA_DIR" in ready.json()["checks"]["store"]
    refused = httpx.post(f"{degraded.base_url}/api/run_task", json={"user_requirement": "x"})
    assert refused.status_code == 503 and "task store is unavailable" in refused.json()["detail"]
    assert httpx.get(f"{degraded.base_url}/healthz").json()["store"].startswith("unavailable")
    degraded.stop()

    data_mount("rw")
    recovered = start_service()
    assert read_stream(recovered.base_url, task_id) == events, "nothing stored was damaged"


@needs_root
def test_full_data_dir_holds_events_back_until_space_returns(
    start_service: Callable[..., ServerProcess], data_mount: Callable[[str], None]
) -> None:
    service = start_service(MAX_REQUIREMENT_CHARS="400000")
    base = service.base_url
    small = start_task(base)
    small_events = read_stream(base, small)

    big = start_task(base, "fill the disk " * 4000, stream_tokens=True)
    streamed = follow_in_background(base, big)
    wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 503, 60, "the disk to fill up")
    problem = httpx.get(f"{base}/readyz").json()["checks"]["store"]
    assert "full" in problem and "Check free space" in problem
    refused = httpx.post(f"{base}/api/run_task", json={"user_requirement": "no room"})
    assert refused.status_code == 503 and "full" in refused.json()["detail"]
    held_back = httpx.get(f"{base}/api/task/{big}/status").json()
    assert held_back["status"] in {"queued", "running"}, "the status tells what is stored, not what is held back"

    data_mount("size=64m")
    events = streamed()
    assert events[-1]["event_type"] == "end", "the held-back events were stored and delivered"
    assert sequences(events) == list(range(1, len(events) + 1))
    assert held_back["last_sequence"] < len(events)
    assert httpx.get(f"{base}/readyz").status_code == 200
    assert read_stream(base, small) == small_events


def test_locked_database_refuses_new_tasks_clearly_and_loses_no_events(
    start_service: Callable[..., ServerProcess],
) -> None:
    service = start_service(FAKE_LLM_DELAY_MS="5")
    base = service.base_url
    running = start_task(base)
    streamed = follow_in_background(base, running)
    locker = sqlite3.connect(service.workdir / "data" / "tasks.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        refused = httpx.post(f"{base}/api/run_task", json={"user_requirement": "while locked"}, timeout=30)
        assert refused.status_code == 503
        assert "database is locked" in refused.json()["detail"] and "no other program" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "30"
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 503, 30, "readiness to report the lock")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert streamed()[-1]["event_type"] == "end"
    assert sequences(streamed()) == list(range(1, len(streamed()) + 1))
    wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30, "readiness to recover")
    assert start_task(base)


def test_a_deleted_database_fails_readiness_and_new_tasks_loudly(start_service: Callable[..., ServerProcess]) -> None:
    service = start_service()
    base = service.base_url
    read_stream(base, start_task(base))
    database = service.workdir / "data" / "tasks.db"
    for path in (database, database.with_name("tasks.db-wal"), database.with_name("tasks.db-shm")):
        path.unlink()

    ready = httpx.get(f"{base}/readyz")
    assert ready.status_code == 503
    assert "tasks.db was deleted" in ready.json()["checks"]["store"]
    refused = httpx.post(f"{base}/api/run_task", json={"user_requirement": "into a deleted file"}, timeout=30)
    assert refused.status_code == 503
    assert "was deleted" in refused.json()["detail"] and "restart" in refused.json()["detail"]
    assert httpx.get(f"{base}/api/tasks").json()["total"] == 1, "nothing was written to the deleted file"


def test_a_replaced_database_file_refuses_writes(tmp_path: Path) -> None:
    """Replaced (a copy moved over it) counts like deleted: the store's open file is no longer on disk."""
    store = SqliteTaskStore(tmp_path)
    store.check()
    shutil.copy(store.path, tmp_path / "copy.db")
    os.replace(tmp_path / "copy.db", store.path)
    try:
        with pytest.raises(StoreUnavailable, match="tasks.db was replaced while the service was running"):
            store.check()
        with pytest.raises(StoreUnavailable, match="tasks.db was replaced"):
            store.purge_finished_before("2000-01-01T00:00:00Z")
    finally:
        store.close()
