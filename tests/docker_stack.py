"""A real Docker engine and the repository's docker-compose.yml, for tests/test_containers.py.

`DockerEngine` uses the running engine, or starts Debian's `dockerd` when the tests run as root (and
stops it afterwards). `ComposeProject` runs docker-compose.yml from the working tree as a project of
its own (its own name, its own `--env-file`, so a developer's `.env` changes nothing) with Compose v2
(`docker compose`) where it is installed and Debian's `docker-compose` 1.29 otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import PROJECT_ROOT, wait_until

ENGINE_START_TIMEOUT_SECONDS = 60.0
COMPOSE_TIMEOUT_SECONDS = 900.0


class DockerUnavailable(Exception):
    """No Docker engine answers and none can be started here (the reason is the message)."""


def docker(*args: str, timeout: float = 120.0) -> str:
    """Run the docker CLI; its output, or an AssertionError with what it printed."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
    )
    return result.stdout


def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


class DockerEngine:
    """The Docker engine: the one already running, or a `dockerd` started (and later stopped) here."""

    def __init__(self, workdir: Path) -> None:
        self._log_path = workdir / "dockerd.log"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if shutil.which("docker") is None:
            raise DockerUnavailable("the docker CLI is not installed (apt-get install docker.io)")
        if _engine_answers():
            return
        if shutil.which("dockerd") is None:
            raise DockerUnavailable("no Docker engine answers and dockerd is not installed (apt-get install docker.io)")
        if os.geteuid() != 0:
            raise DockerUnavailable("no Docker engine answers, and starting dockerd needs root")
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(
                lambda: self._process.poll() is not None or _engine_answers(), ENGINE_START_TIMEOUT_SECONDS, "dockerd"
            )
        except AssertionError:
            self.stop()
            raise
        if self._process.poll() is not None:
            raise DockerUnavailable(f"dockerd exited at start: {self._log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        """Stop dockerd if this started it; an engine that was already running is left alone."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=60)
        self._process = None


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) where the plugin is installed, else `docker-compose` (v1.29)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise DockerUnavailable(
        "neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)"
    )


class ComposeProject:
    """docker-compose.yml from the working tree, as project `name`, with the settings in `env_file`.

    `api_port` and `nginx_port` are the ports the env file publishes the service and Nginx on.
    """

    def __init__(self, name: str, env_file: Path, api_port: int, nginx_port: int) -> None:
        self.name = name
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.nginx_url = f"http://127.0.0.1:{nginx_port}"
        self._base = [*compose_command(), "--project-name", name, "--env-file", str(env_file)]

    def __call__(self, *args: str, production: bool = False, timeout: float = COMPOSE_TIMEOUT_SECONDS) -> str:
        profile = ["--profile", "production"] if production else []
        result = subprocess.run(
            [*self._base, *profile, *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, (
            f"compose {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
        )
        return result.stdout

    def container(self, service: str) -> str:
        """The id of the service's (one) container."""
        ids = self("ps", "-q", service, production=True).split()
        assert len(ids) == 1, f"expected one container for {service}, found {ids}"
        return ids[0]

    def state(self, service: str) -> str:
        """`healthy`, `starting`, `unhealthy`, or the container's state when it has no health check."""
        template = "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}} {{.RestartCount}}"
        state, restarts = docker("inspect", "--format", template, self.container(service)).split()
        assert restarts == "0", f"{service} restarted {restarts} times:\n{self.logs(service)}"
        return state

    def wait_healthy(self, services: list[str], timeout: float = 180.0) -> None:
        for service in services:
            wait_until(lambda service=service: self.state(service) == "healthy", timeout, f"{service} to be healthy")

    def exec(self, service: str, *command: str) -> str:
        return docker("exec", self.container(service), *command)

    def logs(self, service: str) -> str:
        return subprocess.run(
            [*self._base, "--profile", "production", "logs", "--tail", "40", service],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        ).stdout

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes Docker still has for this project."""
        label = f"label=com.docker.compose.project={self.name}"
        return {
            "containers": docker("ps", "--all", "--quiet", "--filter", label).split(),
            "networks": docker("network", "ls", "--quiet", "--filter", label).split(),
            "volumes": docker("volume", "ls", "--quiet", "--filter", label).split(),
        }
