"""Real servers for the tests: the service under a real uvicorn on 127.0.0.1, and an OpenAI-compatible stub.

Streaming needs a real server (httpx's ASGITransport buffers whole responses), so every service is a
separate `uvicorn main:app` process with its own settings in the environment. Each runs in an empty
working directory, so a developer's `.env` cannot change what the tests see.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class ServerProcess:
    """A uvicorn subprocess serving `app_path` on a free loopback port."""

    def __init__(
        self, app_path: str, env: dict[str, str], workdir: Path, health_path: str, port: int | None = None
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        full_env = {**os.environ, "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'tests'}", **env}
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app_path,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            cwd=workdir,
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(lambda: self._answers(health_path), STARTUP_TIMEOUT_SECONDS, f"{app_path} to start")
        except BaseException:  # a service that never answered is not left running
            self.stop()
            raise

    def _answers(self, path: str) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited early:\n{self.log()}")
        try:
            return httpx.get(self.base_url + path, timeout=1.0).status_code < 500
        except httpx.TransportError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# Tests start many tasks and streams from one address; the abuse limits are tested on their own.
TEST_DEFAULTS = {
    "LLM_PROVIDER": "fake",
    "LOG_LEVEL": "warning",
    "RATE_LIMIT": "100000/minute",
    "MAX_STREAMS_PER_CLIENT": "100000",
}


def launch_service(workdir: Path, settings: dict[str, str], port: int | None = None) -> ServerProcess:
    # The data under the working directory, even where the environment names another (the image's /app/data).
    env = {**TEST_DEFAULTS, "DATA_DIR": str(workdir / "data"), **settings}
    return ServerProcess("main:app", env, workdir, "/healthz", port)


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start the service with extra settings, `start_service(LLM_PROVIDER="local")`; stopped after the test.

    `port=` restarts a service where a stopped one listened.

    Every service of one test runs in the same working directory, so a second one started after the
    first has stopped finds the first one's data (`./data`): that is a restart.
    """
    started: list[ServerProcess] = []

    def start(port: int | None = None, **settings: str) -> ServerProcess:
        started.append(launch_service(tmp_path, settings, port))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def fake_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The scripted model at full speed, requirements up to 400,000 characters, one delta per model chunk."""
    server = launch_service(
        tmp_path_factory.mktemp("fake"),
        {
            "MAX_CONCURRENT_TASKS": "8",
            "MAX_REQUIREMENT_CHARS": "400000",
            "MAX_BODY_BYTES": "2000000",
            "DELTA_INTERVAL_MS": "0",
        },
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def slow_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The scripted model slowed to 20 ms per chunk, so tests catch tasks mid-run; heartbeats every second."""
    server = launch_service(tmp_path_factory.mktemp("slow"), {"FAKE_LLM_DELAY_MS": "20", "HEARTBEAT_SECONDS": "1"})
    yield server
    server.stop()


@pytest.fixture(scope="session")
def openai_stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The OpenAI-compatible stub server (tests/openai_stub.py)."""
    server = ServerProcess("openai_stub:app", {}, tmp_path_factory.mktemp("stub"), "/requests")
    yield server
    server.stop()


# --- client helpers -----------------------------------------------------------------------------
def start_task(base_url: str, requirement: str = "开发一个简单的待办事项应用", **options: Any) -> str:
    response = httpx.post(
        f"{base_url}/api/run_task", json={"user_requirement": requirement, "skip_confirmation": True, **options}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def read_stream(
    base_url: str, task_id: str, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Every event of one SSE connection, until the server closes it. Checks `id:` equals `sequence`."""
    events = []
    with httpx.Client(timeout=httpx.Timeout(60.0)) as client:
        with connect_sse(
            client, "GET", f"{base_url}/api/stream/{task_id}", headers=dict(headers or {}), params=params
        ) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith("text/event-stream")
            for sse in source.iter_sse():
                if not sse.data:
                    continue  # a heartbeat comment: httpx-sse reports it as an empty event, browsers ignore it
                event = json.loads(sse.data)
                assert sse.id == str(event["sequence"])
                assert sse.event == "message"
                events.append(event)
    return events


def follow_in_background(base_url: str, task_id: str) -> Callable[[], list[dict[str, Any]]]:
    """Read a task's whole stream on another thread; call the result to wait for its events."""
    received: list[list[dict[str, Any]]] = []
    reader = threading.Thread(target=lambda: received.append(read_stream(base_url, task_id)))
    reader.start()

    def events() -> list[dict[str, Any]]:
        reader.join(timeout=120)
        assert received, "the stream did not end"
        return received[0]

    return events


def sequences(events: list[dict[str, Any]]) -> list[int]:
    return [event["sequence"] for event in events]


class StreamReader:
    """Reads one SSE stream on a thread, keeping every event as it arrives."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(url, headers or {}), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.stream("GET", url, headers=headers, timeout=60) as response:
                assert response.status_code == 200
                assert "content-encoding" not in response.headers, "event streams are never gzipped"
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except BaseException as exc:  # reported by `wait`
            self.error = exc

    def has(self, event_type: str) -> bool:
        return any(event["event_type"] == event_type for event in self.events)

    def wait(self) -> list[dict[str, Any]]:
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the stream did not end"
        if self.error is not None:
            raise self.error
        return self.events


def status(base_url: str, task_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/api/task/{task_id}/status")
    assert response.status_code == 200, response.text
    return dict(response.json())
