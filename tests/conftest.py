"""Real servers for the tests: the service under a real uvicorn on 127.0.0.1, and an OpenAI-compatible stub.

Streaming needs a real server (httpx's ASGITransport buffers whole responses). Each service runs in an
empty working directory, so a developer's `.env` cannot change what the tests see.
"""

from __future__ import annotations

import itertools
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

from delivery_service.agents import AGENTS
from delivery_service.cli.client import ServiceClient

AGENT_NAMES = [agent.name for agent in AGENTS]
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


StartService = Callable[..., ServerProcess]  # the `start_service` fixture


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[StartService]:
    """`start_service(port=None, **settings)`, stopped after the test; one test's services share `./data`,
    so a second one started on a stopped one's `port` is a restart."""
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
    server = ServerProcess("openai_stub:app", {}, tmp_path_factory.mktemp("stub"), "/requests")
    yield server
    server.stop()


def on_stub(stub: ServerProcess, path: str, **settings: str) -> dict[str, str]:
    """The settings of a service whose model is the stub's `path` (`/ok/v1`, `/status/500/v1`...)."""
    return {"LLM_PROVIDER": "openai", "LLM_BASE_URL": f"{stub.base_url}{path}", **settings}


def stub_requests(stub: ServerProcess, path: str = "/", since: int = 0) -> list[dict[str, Any]]:
    """The requests the stub received under `path` after its first `since`."""
    return [r for r in httpx.get(f"{stub.base_url}/requests").json()[since:] if r["path"].startswith(path)]


# --- client helpers -----------------------------------------------------------------------------
def start_task(base_url: str, requirement: str = "开发一个简单的待办事项应用", **options: Any) -> str:
    response = httpx.post(
        f"{base_url}/api/run_task", json={"user_requirement": requirement, "skip_confirmation": True, **options}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


class StreamDropped(RuntimeError):
    """The server closed a stream (or the connection broke) before the task's terminal event."""


def _once(reason: str) -> None:
    raise StreamDropped(reason)


def follow(
    base_url: str,
    task_id: str,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    reconnect: bool = False,
) -> Iterator[dict[str, Any]]:
    """A task's events, read by the project's own client (`ServiceClient.follow`): the tests' one SSE parser.

    `headers` and `params` go on the first request as given (`Last-Event-ID`, `Authorization`, `?token=`).
    Ends at the terminal event; a stream dropped before it raises StreamDropped, unless `reconnect`: then
    the client resumes after the last event it got, as the CLI does.
    """
    client = ServiceClient(base_url)
    client._http.headers.update(headers or {})  # noqa: SLF001 - what the test asks for, on every request
    client._http.params = httpx.QueryParams(params or {})  # noqa: SLF001
    try:
        yield from client.follow(task_id, on_reconnect=None if reconnect else _once)
    finally:
        client.close()


def read_stream(
    base_url: str, task_id: str, headers: dict[str, str] | None = None, params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    return list(follow(base_url, task_id, headers, params))


def read_first(base_url: str, task_id: str, count: int) -> list[dict[str, Any]]:
    """The first `count` events of a live stream, then hang up."""
    return list(itertools.islice(follow(base_url, task_id), count))


class StreamReader:
    """Follows one task's stream on a thread, keeping every event as it arrives."""

    def __init__(self, base_url: str, task_id: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, args=(base_url, task_id, headers), daemon=True)
        self._thread.start()

    def _read(self, base_url: str, task_id: str, headers: dict[str, str] | None) -> None:
        try:
            for event in follow(base_url, task_id, headers):
                self.events.append(event)
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


def follow_in_background(base_url: str, task_id: str) -> Callable[[], list[dict[str, Any]]]:
    """Read a task's whole stream on another thread; call the result to wait for its events."""
    return StreamReader(base_url, task_id).wait


def sequences(events: list[dict[str, Any]]) -> list[int]:
    return [event["sequence"] for event in events]


def status(base_url: str, task_id: str) -> dict[str, Any]:
    response = httpx.get(f"{base_url}/api/task/{task_id}/status")
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_for_status(base_url: str, task_id: str, wanted: str, timeout: float = 60) -> dict[str, Any]:
    return wait_until(lambda: (now := status(base_url, task_id))["status"] == wanted and now, timeout, wanted)


# --- one suite, both modes ------------------------------------------------------------------------
# `mode` runs a test against the embedded service (one uvicorn, SQLite) and against the cluster
# (Redis, two API replicas behind Nginx, Celery workers): the same requests, the same answers expected.
CLUSTER_WORKERS_AT_MOST = 2  # MAX_CONCURRENT_TASKS=n becomes n workers of one crew each, up to this many


class Deployment:
    """A running service in either mode: `restart()` kills it and starts it again on its data; `urls`: every
    address that serves it (the cluster's replicas and Nginx)."""

    base_url: str
    urls: list[str]

    def restart(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def log(self) -> str:
        """What the API processes have logged so far (the audit lines among it)."""
        raise NotImplementedError


class EmbeddedDeployment(Deployment):
    def __init__(self, workdir: Path, settings: dict[str, str], server: ServerProcess | None = None) -> None:
        self.workdir, self.settings = workdir, settings
        self.server = server or launch_service(workdir, settings)
        self.base_url = self.server.base_url
        self.urls = [self.base_url]

    def restart(self) -> None:
        self.server.kill()
        self.server = launch_service(self.workdir, self.settings, self.server.port)

    def stop(self) -> None:
        self.server.stop()

    def log(self) -> str:
        return self.server.log()


class ClusterDeployment(Deployment):
    """Two API replicas and `MAX_CONCURRENT_TASKS` Celery workers on a fresh Redis database, behind Nginx,
    which spreads a test's requests over both replicas."""

    def __init__(self, redis_server: Any, workdir: Path, settings: dict[str, str]) -> None:
        from cluster_processes import Cluster, Nginx

        workers = min(int(settings.get("MAX_CONCURRENT_TASKS", "1")), CLUSTER_WORKERS_AT_MOST)
        self.cluster = Cluster(redis_server, workdir, replicas=2, workers=workers, **settings)
        self.nginx = Nginx([replica.port for replica in self.cluster.replicas], workdir)
        self.base_url = self.nginx.base_url
        self.urls = [self.base_url, *(replica.base_url for replica in self.cluster.replicas)]

    def restart(self) -> None:
        """Every replica and worker killed, then started again on the same ports: Redis keeps the data."""
        for worker in self.cluster.workers:
            worker.kill()
        for replica in self.cluster.replicas:
            replica.kill()
        ports, workers = [replica.port for replica in self.cluster.replicas], len(self.cluster.workers)
        self.cluster.replicas = [launch_service(self.cluster.workdir, self.cluster.settings, port) for port in ports]
        self.cluster.workers = []
        for _ in range(workers):
            self.cluster.add_worker()

    def stop(self) -> None:
        self.nginx.stop()
        self.cluster.stop()

    def log(self) -> str:
        return "".join(replica.log() for replica in self.cluster.replicas)


class Mode:
    """`start(**settings)`: a deployment of the test's own; `fast()` / `slow()`: the session's shared ones."""

    def __init__(self, name: str, request: pytest.FixtureRequest, workdir: Path) -> None:
        self.name, self._request, self._workdir = name, request, workdir
        self._started: list[Deployment] = []

    def start(self, **settings: str) -> Deployment:
        workdir = self._workdir / f"deployment-{len(self._started)}"
        workdir.mkdir()
        if self.name == "embedded":
            deployment: Deployment = EmbeddedDeployment(workdir, settings)
        else:
            deployment = ClusterDeployment(self._request.getfixturevalue("redis_server"), workdir, settings)
        self._started.append(deployment)
        return deployment

    def fast(self) -> Deployment:
        return self._shared("fake_service" if self.name == "embedded" else "fast_cluster")

    def slow(self) -> Deployment:
        return self._shared("slow_service" if self.name == "embedded" else "slow_cluster")

    def _shared(self, fixture: str) -> Deployment:
        found = self._request.getfixturevalue(fixture)
        return EmbeddedDeployment(found.workdir, {}, found) if isinstance(found, ServerProcess) else found

    def stop(self) -> None:
        for deployment in self._started:
            deployment.stop()


@pytest.fixture(params=["embedded", pytest.param("cluster", marks=pytest.mark.slow)])
def mode(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mode]:
    """The service in each mode; the cluster's tests are slow (they start Redis, Nginx and Celery)."""
    chosen = Mode(request.param, request, tmp_path)
    yield chosen
    chosen.stop()


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A webhook receiver on 127.0.0.1 that verifies every message with `standardwebhooks`."""
    from webhook_receiver import WebhookReceiver, new_secret

    server = WebhookReceiver(new_secret())
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One redis-server for the session; each cluster takes a database of its own."""
    from cluster_processes import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def _session_cluster(request: pytest.FixtureRequest, name: str, settings: dict[str, str]) -> Iterator[Deployment]:
    workdir = request.getfixturevalue("tmp_path_factory").mktemp(name)
    deployment = ClusterDeployment(request.getfixturevalue("redis_server"), workdir, settings)
    yield deployment
    deployment.stop()


@pytest.fixture(scope="session")
def fast_cluster(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """The cluster's `fake_service`: the scripted model at full speed, two workers."""
    settings = {"MAX_CONCURRENT_TASKS": "2", "MAX_REQUIREMENT_CHARS": "400000", "MAX_BODY_BYTES": "2000000"}
    yield from _session_cluster(request, "fast-cluster", {**settings, "DELTA_INTERVAL_MS": "0"})


@pytest.fixture(scope="session")
def slow_cluster(request: pytest.FixtureRequest) -> Iterator[Deployment]:
    """The cluster's `slow_service`: 20 ms per model chunk, heartbeats every second."""
    yield from _session_cluster(request, "slow-cluster", {"FAKE_LLM_DELAY_MS": "20", "HEARTBEAT_SECONDS": "1"})
