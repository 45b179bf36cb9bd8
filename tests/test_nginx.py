"""The repository's nginx.conf, run by Debian's real Nginx in front of the service: events are not buffered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cluster_processes import Nginx
from conftest import ServerProcess, follow, read_stream


@pytest.fixture
def nginx(slow_service: ServerProcess, tmp_path: Path) -> Iterator[str]:
    """Nginx with the repo's nginx.conf, its upstream pointed at the test service; yields its base URL."""
    proxy = Nginx([slow_service.port], tmp_path)
    yield proxy.base_url
    proxy.stop()


def test_events_pass_through_nginx_unbuffered(nginx: str, slow_service: ServerProcess) -> None:
    response = httpx.post(f"{nginx}/api/run_task", json={"user_requirement": "Build a todo app behind a proxy"})
    assert response.status_code == 202
    task_id = response.json()["task_id"]

    with httpx.stream("GET", f"{nginx}/api/stream/{task_id}", headers={"Accept-Encoding": "gzip"}) as stream:
        assert "content-encoding" not in stream.headers, "event streams are never gzipped"
    received = []
    status_at_first_event = None
    for event in follow(nginx, task_id, headers={"Accept-Encoding": "gzip"}):
        received.append(event)
        if status_at_first_event is None:
            status_at_first_event = httpx.get(f"{nginx}/api/task/{task_id}/status").json()["status"]
    assert status_at_first_event == "running", "the first event arrived while the task was still running"
    assert received[-1]["event_type"] == "end"
    assert received == read_stream(slow_service.base_url, task_id), "the same events as straight from the service"
