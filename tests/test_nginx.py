"""The repository's nginx.conf, run by Debian's real Nginx in front of the service: events are not buffered."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import PROJECT_ROOT, ServerProcess, free_port, read_stream, wait_until


@pytest.fixture
def nginx(slow_service: ServerProcess, tmp_path: Path) -> Iterator[str]:
    """Nginx with the repo's nginx.conf, its upstream pointed at the test service; yields its base URL."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert Path(binary).exists(), "nginx is missing: ./scripts/test installs Debian's nginx package"
    port = free_port()
    config = (PROJECT_ROOT / "nginx.conf").read_text()
    assert "server multi-agent-system:8000;" in config and "listen 80;" in config
    config = config.replace("server multi-agent-system:8000;", f"server 127.0.0.1:{slow_service.port};")
    config = config.replace("listen 80;", f"listen 127.0.0.1:{port};")
    config = config.replace("http {", f"http {{\n    access_log {tmp_path}/access.log;", 1)
    (tmp_path / "nginx.conf").write_text(config)
    directives = f"daemon off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;"
    process = subprocess.Popen([binary, "-c", str(tmp_path / "nginx.conf"), "-g", directives])
    base_url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, (tmp_path / "error.log").read_text()
        try:
            return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(answers, 30, "nginx to start")
    yield base_url
    process.terminate()
    process.wait(timeout=15)


def test_events_pass_through_nginx_unbuffered(nginx: str, slow_service: ServerProcess) -> None:
    response = httpx.post(f"{nginx}/api/run_task", json={"user_requirement": "Build a todo app behind a proxy"})
    assert response.status_code == 202
    task_id = response.json()["task_id"]

    received = []
    status_at_first_event = None
    with httpx.Client(timeout=60) as client:
        with client.stream(
            "GET", f"{nginx}/api/stream/{task_id}", headers={"Accept-Encoding": "gzip"}
        ) as stream:
            assert "content-encoding" not in stream.headers, "event streams are never gzipped"
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    received.append(json.loads(line[6:]))
                    if status_at_first_event is None:
                        status_at_first_event = httpx.get(f"{nginx}/api/task/{task_id}/status").json()["status"]
    assert status_at_first_event == "running", "the first event arrived while the task was still running"
    assert received[-1]["event_type"] == "end"
    assert received == read_stream(slow_service.base_url, task_id), "the same events as straight from the service"
