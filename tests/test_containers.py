"""The Dockerfile and docker-compose.yml on a real Docker engine: the image, both profiles, failures.

Base images are the stand-ins `scripts/docker-base-images` builds from Debian packages (kept between
runs by content hash); the service image is built from the working tree. Every stack runs as its own
compose project on free ports with the scripted model, and is removed with `down -v` at the end.
Skipped, with the reason, only where no Docker engine answers and none can be started.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import PROJECT_ROOT, StreamReader, free_port, read_stream, sequences, start_task, status, wait_until
from delivery_service.cluster.redis_event_log import TaskKeys
from docker_stack import ComposeProject, DockerEngine, DockerUnavailable, docker

# Building images and waiting on health checks takes minutes, the in-image suite longer.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

IMAGE = "multi-agent-delivery:latest"
PLAIN_SERVICES = ["redis", "multi-agent-system", "worker"]
PRODUCTION_SERVICES = [*PLAIN_SERVICES, "multi-agent-system-2", "worker-2", "nginx"]
API_SERVICES = ["multi-agent-system", "multi-agent-system-2"]
WORKER_SERVICES = ["worker", "worker-2"]
# CrewAI's dependencies the Dockerfile leaves out (import names).
LEFT_OUT = ["lancedb", "pyarrow", "kubernetes", "onnxruntime", "pdfplumber", "pypdfium2", "PIL", "textual"]
TERMINAL = {"end", "error", "cancelled"}
# The compose network of the test stacks (not the default one, which a developer's own stack may hold).
SUBNET_PREFIX = "172.30.231"
NGINX_ADDRESS = f"{SUBNET_PREFIX}.2"
FORGED_CLIENT = "203.0.113.7"  # TEST-NET-3: an address a client claims in X-Forwarded-For
REPORT_CHARS = 8000  # of the in-image run's first failure


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    engine = DockerEngine(tmp_path_factory.mktemp("docker"))
    try:
        engine.start()
    except DockerUnavailable as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield
    engine.stop()


@pytest.fixture(scope="module")
def image(engine: None) -> str:
    """The stand-in base images (unless real ones exist) and the service image of the working tree."""
    base = subprocess.run(
        [PROJECT_ROOT / "scripts" / "docker-base-images"], capture_output=True, text=True, timeout=1200
    )
    assert base.returncode == 0, base.stderr
    docker("build", "--tag", IMAGE, str(PROJECT_ROOT), timeout=1800)
    return IMAGE


@pytest.fixture(scope="module")
def project(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """docker-compose.yml as its own project, with the scripted model slowed so tasks run ~15 s."""
    api_port, nginx_port = free_port(), free_port()
    settings = {
        "LLM_PROVIDER": "fake",
        "FAKE_LLM_DELAY_MS": "100",
        "WORKER_LEASE_SECONDS": "6",
        "HEARTBEAT_SECONDS": "2",
        "RATE_LIMIT": "100000/minute",
        "MAX_STREAMS_PER_CLIENT": "100000",
        "PUBLISH_API_PORT": str(api_port),
        "PUBLISH_NGINX_PORT": str(nginx_port),
        "SUBNET_PREFIX": SUBNET_PREFIX,
    }
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    compose = ComposeProject(f"delivery-test-{uuid.uuid4().hex[:8]}", env_file, api_port, nginx_port)
    yield compose
    compose("down", "--volumes", "--remove-orphans", production=True)


def replica_metric(compose: ComposeProject, service: str, prefix: str) -> float:
    """The sum of a replica's metric lines starting with `prefix` (read inside its container)."""
    script = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/metrics').read().decode())"
    lines = compose.exec(service, "python", "-c", script).splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))


def curl_stream(url: str) -> list[dict[str, Any]]:
    """`curl -N` of an event stream, as a user runs it, until the server closes it."""
    result = subprocess.run(
        ["curl", "--silent", "--show-error", "--no-buffer", url], capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line[len("data: ") :]) for line in result.stdout.splitlines() if line.startswith("data: ")]


class ResumingReader:
    """A client that reconnects after a dropped stream with `Last-Event-ID`, as EventSource does."""

    MAX_CONNECTIONS = 20

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.connections = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        try:
            while not (self.events and self.events[-1]["event_type"] in TERMINAL):
                assert self.connections < self.MAX_CONNECTIONS, "the stream never reached its end"
                self.connections += 1
                self._read_once()
        except BaseException as exc:  # reported by `wait`
            self.error = exc

    def _read_once(self) -> None:
        headers = {"Last-Event-ID": str(self.events[-1]["sequence"])} if self.events else {}
        try:
            with httpx.stream("GET", self.url, headers=headers, timeout=30) as response:
                if response.status_code != 200:
                    return
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[len("data: ") :]))
        except httpx.TransportError:
            return  # dropped mid-stream: reconnect

    def wait(self) -> list[dict[str, Any]]:
        self._thread.join(timeout=180)
        assert not self._thread.is_alive(), "the stream did not end"
        if self.error is not None:
            raise self.error
        return self.events


def audited_address(compose: ComposeProject, base_url: str, headers: dict[str, str]) -> str:
    """The client address the API replicas' audit log gives for a task created at `base_url` with `headers`."""
    response = httpx.post(f"{base_url}/api/run_task", json={"user_requirement": "Build a todo app"}, headers=headers)
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]

    def audit_record() -> dict[str, Any] | None:
        for service in API_SERVICES:
            logs = subprocess.run(
                ["docker", "logs", compose.container(service)], capture_output=True, text=True, timeout=60
            )
            for line in (logs.stdout + logs.stderr).splitlines():
                _, found, record = line.partition(" audit: ")
                if found and json.loads(record)["task_id"] == task_id:
                    return dict(json.loads(record))
        return None

    return str(wait_until(audit_record, 30, f"the audit line of task {task_id}")["address"])


def pytest_failure_report(output: str) -> str:
    """What says why a pytest run failed: its first failure (or error) and the short summary.

    Not the output's tail: one failure's captured log lines can fill any tail.
    """
    sections = list(re.finditer(r"^=+ (.+?) =+$", output, re.MULTILINE))  # `=== FAILURES ===` and the like
    failures = next((section for section in sections if section[1] in ("FAILURES", "ERRORS")), None)
    summary = next((section for section in sections if section[1] == "short test summary info"), None)
    if failures is None:
        return output[-REPORT_CHARS:]
    tests = list(re.finditer(r"^_{3,} .+ _{3,}$", output[failures.end() :], re.MULTILINE))  # a heading per test
    ends = [failures.end() + test.start() for test in tests[1:2]]
    ends += [section.start() for section in sections if section.start() > failures.end()]
    first = output[failures.start() : min(ends, default=len(output))]
    return f"{first[:REPORT_CHARS]}\n...\n{output[summary.start() :] if summary else output[-1000:]}"


def installed_left_out_packages(image: str) -> list[str]:
    probe = f"import importlib.util as u; print(' '.join(m for m in {LEFT_OUT!r} if u.find_spec(m)))"
    return docker("run", "--rm", image, "python", "-c", probe).split()


def test_the_image_runs_as_a_non_root_user_without_crewais_unused_dependencies(image: str) -> None:
    assert docker("run", "--rm", image, "id", "-u").strip() != "0"
    assert installed_left_out_packages(image) == []


def test_plain_up_serves_a_task_on_8000_and_a_restart_keeps_it(project: ComposeProject) -> None:
    project("up", "--detach")
    project.wait_healthy(PLAIN_SERVICES)
    for service in ("multi-agent-system", "worker"):
        assert project.exec(service, "id", "-u").strip() != "0", f"{service} runs as a non-root user"
    api = project.api_url
    task_id = start_task(api, "Build a todo app in a container")
    events = curl_stream(f"{api}/api/stream/{task_id}")
    assert events[-1]["event_type"] == "end" and sequences(events) == list(range(1, len(events) + 1))
    result = httpx.get(f"{api}/api/task/{task_id}/result").json()

    project("restart")
    project.wait_healthy(PLAIN_SERVICES)
    assert status(api, task_id)["status"] == "completed"
    assert curl_stream(f"{api}/api/stream/{task_id}") == events, "the history survives the restart (Redis volume)"
    assert httpx.get(f"{api}/api/task/{task_id}/result").json() == result


@pytest.fixture(scope="module")
def production(project: ComposeProject) -> ComposeProject:
    """The production profile on top of the plain stack: the same Redis, so earlier tasks stay."""
    project("up", "--detach", production=True)
    project.wait_healthy(PRODUCTION_SERVICES)
    return project


def test_production_streams_live_through_nginx_to_two_replicas(production: ComposeProject) -> None:
    nginx = production.nginx_url
    task_id = start_task(nginx, "Build a todo app behind Nginx")
    reader = StreamReader(nginx, task_id)
    wait_until(lambda: reader.has("agent_start"), 60, "the first agent through Nginx")
    assert status(nginx, task_id)["status"] == "running", "events arrive while the task runs, not at its end"
    events = reader.wait()
    assert events[-1]["event_type"] == "end" and sequences(events) == list(range(1, len(events) + 1))
    assert events == read_stream(production.api_url, task_id), "the same events on replica 1 directly"

    for _ in range(4):
        assert httpx.get(f"{nginx}/api/tasks").status_code == 200
    listed = 'delivery_http_response_start_seconds_count{method="GET",route="/api/tasks"'
    served = {service: replica_metric(production, service, listed) for service in API_SERVICES}
    assert all(count >= 1 for count in served.values()), f"Nginx spreads requests over both replicas: {served}"


def test_only_nginx_may_name_the_client(production: ComposeProject) -> None:
    """Rate limits and the audit log count the address a request comes from; X-Forwarded-For is believed
    from Nginx alone, so a client on :8000 cannot claim another address, and through Nginx the address is
    the one Nginx saw, not the one the client wrote."""
    forged = {"X-Forwarded-For": FORGED_CLIENT}
    peer = audited_address(production, production.api_url, {})
    assert peer not in (FORGED_CLIENT, NGINX_ADDRESS)
    assert audited_address(production, production.api_url, forged) == peer, "a forged header on :8000 changes nothing"
    assert audited_address(production, production.nginx_url, {}) == peer, "through Nginx: the address Nginx saw"
    assert audited_address(production, production.nginx_url, forged) == peer, "a forged header through Nginx neither"


def test_a_killed_worker_container_ends_its_task_with_an_error(production: ComposeProject) -> None:
    nginx = production.nginx_url
    task_id = start_task(nginx, "Build a todo app on a worker that dies")
    reader = StreamReader(nginx, task_id)
    wait_until(lambda: reader.has("agent_start"), 60, "the crew to start")
    worker = production.exec("redis", "redis-cli", "HGET", TaskKeys(task_id).meta, "worker").strip()
    hostname = worker.removeprefix("celery@")  # a container's hostname is the start of its id
    (service,) = [s for s in WORKER_SERVICES if production.container(s).startswith(hostname)]
    docker("kill", production.container(service))

    events = reader.wait()
    assert events[-1]["event_type"] == "error" and events[-1]["metadata"] == {"error_type": "worker_died"}
    assert sequences(events) == list(range(1, len(events) + 1))
    production("start", service, production=True)
    production.wait_healthy([service])
    assert read_stream(nginx, start_task(nginx, "Build a todo app after the crash"))[-1]["event_type"] == "end"


def test_a_replica_stopped_mid_stream_loses_no_event_of_a_resuming_client(production: ComposeProject) -> None:
    nginx = production.nginx_url
    task_id = start_task(nginx, "Build a todo app while a replica stops")
    reader = ResumingReader(f"{nginx}/api/stream/{task_id}")
    wait_until(lambda: len(reader.events) >= 3, 60, "three events")
    serving = wait_until(
        lambda: next((s for s in API_SERVICES if replica_metric(production, s, "delivery_subscribers") >= 1), None),
        30,
        "the replica serving the stream",
    )
    production("stop", serving, production=True)

    events = reader.wait()
    assert reader.connections >= 2, "the stream dropped when its replica stopped, and the client resumed"
    assert events[-1]["event_type"] == "end"
    assert sequences(events) == list(range(1, len(events) + 1)), "no event lost or repeated"
    assert events == read_stream(nginx, task_id)
    production("start", serving, production=True)
    production.wait_healthy([serving])


def test_down_leaves_no_container_network_or_volume(project: ComposeProject) -> None:
    project("up", "--detach", production=True)
    assert project.leftovers()["volumes"], "the Redis volume exists while the stack runs"
    project("down", "--volumes", production=True)
    assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}


def test_the_test_suite_passes_inside_the_image(image: str) -> None:
    """The image's packages (without what the Dockerfile leaves out) run the suite's quick tests."""
    suite_image = f"{image}-suite"
    docker(
        "build",
        "--tag",
        suite_image,
        "--file",
        str(PROJECT_ROOT / "tests" / "Dockerfile.suite"),
        str(PROJECT_ROOT),
        timeout=1800,
    )
    assert installed_left_out_packages(suite_image) == [], "the test tools did not bring them back"
    name = f"delivery-test-suite-{uuid.uuid4().hex[:8]}"
    # The suite's own process logs at WARNING (main.py, which tests/test_api_doc.py imports, sets LOG_LEVEL's
    # level), so a failure's captured output is not a line per httpx request.
    container = ["--name", name, "--volume", f"{PROJECT_ROOT}:/src:ro", "--workdir", "/src"]
    container += ["--env", "LOG_LEVEL=warning"]
    quick_suite = ["python", "-m", "pytest", "-m", "not slow", "-p", "no:cacheprovider", "-q", "--tb=short"]
    quick_suite += ["--ignore", "tests/test_nginx.py"]  # Nginx is not in the image; the host runs Debian's
    try:
        run = subprocess.run(
            ["docker", "run", "--rm", *container, suite_image, *quick_suite],
            capture_output=True,
            text=True,
            timeout=1700,
        )
    finally:  # also when this test times out: the container must not outlive it
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)
    assert run.returncode == 0, pytest_failure_report(run.stdout) + run.stderr[-2000:]


def test_a_failed_run_is_reported_by_its_first_failure_and_summary(tmp_path: Path) -> None:
    """What the in-image run reports when it fails: the assertion, even behind pages of captured logs."""
    (tmp_path / "test_noisy.py").write_text(
        "import logging\n"
        "def test_passes(): pass\n"
        "def test_fails_with_a_name_as_long_as_the_one_that_failed_in_ci_until_it_answers():\n"
        "    for n in range(500): logging.getLogger('httpx').warning('HTTP Request: GET /%d', n)\n"
        "    assert 'the answer' == 'another', 'the first failure says this'\n"
        "def test_fails_too():\n"
        "    logging.getLogger('httpx').warning('the second failure')\n"
        "    assert False\n"
    )
    # pytest cuts summary lines to the terminal's width, but not on CI (where CI or BUILD_NUMBER is set).
    env = {name: value for name, value in os.environ.items() if name not in ("CI", "BUILD_NUMBER")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--tb=short", "-p", "no:cacheprovider", "-ra", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "80"},
    )
    assert run.returncode == 1
    # The summary's line is cut at 80 columns, here before the message: only the failure's section has it.
    assert "the first failure says this" not in run.stdout[-6000:], "the tail alone loses the assertion"
    report = pytest_failure_report(run.stdout)
    assert "the first failure says this" in report and "the second failure" not in report
    assert "FAILED test_noisy.py::test_fails_too" in report and "2 failed, 1 passed" in report
