"""The image and the compose stacks, measured: size, build times, time to healthy, memory per container.

    python bench/containers.py            (as root or a docker user, with a running Docker engine and
                                           the base images: scripts/docker-base-images)

1. Builds the image from a copy of the committed tree three times: cold (`--no-cache`), again with
   nothing changed, and after a change to one Python module (the dependency layers stay cached).
2. `docker-compose up -d` (then `--profile production up -d`) with the embedded model (no API key):
   seconds until every container's health check is healthy.
3. Memory of each container (`docker stats`) at rest, and the peak while one task runs to its end.

Prints one JSON object; docs/deployment.md records the figures.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
IMAGE = "multi-agent-delivery:bench"
PROJECT = "delivery-bench"


def run(*command: str, cwd: Path | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{result.stderr}{result.stdout}")
    return result.stdout


def timed(*command: str, cwd: Path | None = None) -> float:
    start = time.monotonic()
    run(*command, cwd=cwd)
    return round(time.monotonic() - start, 1)


def committed_tree(target: Path) -> None:
    """The committed files of the repository (what a fresh clone builds) in `target`."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)


def builds() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        tree = Path(directory)
        committed_tree(tree)
        cold = timed("docker", "build", "--no-cache", "--tag", IMAGE, ".", cwd=tree)
        unchanged = timed("docker", "build", "--tag", IMAGE, ".", cwd=tree)
        with (tree / "delivery_service" / "__init__.py").open("a") as module:
            module.write("\n# changed by bench/containers.py\n")
        code_change = timed("docker", "build", "--tag", IMAGE, ".", cwd=tree)
    size = int(run("docker", "image", "inspect", "--format", "{{.Size}}", IMAGE))
    return {"cold_s": cold, "unchanged_s": unchanged, "code_change_s": code_change, "image_mb": round(size / 1e6)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """docker-compose.yml as project `delivery-bench`, on free ports, with the embedded model."""

    def __init__(self, directory: Path) -> None:
        self.api_port, nginx_port = free_port(), free_port()
        env_file = directory / "bench.env"
        env_file.write_text(
            f"PUBLISH_API_PORT={self.api_port}\nPUBLISH_NGINX_PORT={nginx_port}\nRATE_LIMIT=1000/minute\n"
        )
        compose = (
            ["docker", "compose"]
            if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
            else ["docker-compose"]
        )
        self.base = [*compose, "--project-name", PROJECT, "--env-file", str(env_file)]

    def __call__(self, *args: str, production: bool = False) -> str:
        return run(*self.base, *(["--profile", "production"] if production else []), *args, cwd=PROJECT_ROOT)

    def containers(self) -> dict[str, str]:
        """Service name -> container id, for every container of the project."""
        ids = self("ps", "-q", production=True).split()
        names = run(
            "docker", "inspect", "--format", '{{index .Config.Labels "com.docker.compose.service"}}', *ids
        ).split()
        return dict(zip(names, ids, strict=True))

    def seconds_to_healthy(self, production: bool) -> float:
        start = time.monotonic()
        self("up", "--detach", production=production)
        while True:
            states = run(
                "docker", "inspect", "--format", "{{.State.Health.Status}}", *self.containers().values()
            ).split()
            if all(state == "healthy" for state in states):
                return round(time.monotonic() - start, 1)
            time.sleep(0.5)

    def memory_mb(self) -> dict[str, float]:
        containers = self.containers()
        by_id = {container[:12]: name for name, container in containers.items()}
        lines = run(
            "docker", "stats", "--no-stream", "--format", "{{.ID}} {{.MemUsage}}", *containers.values()
        ).splitlines()
        memory = {}
        for line in lines:
            container, usage = line.split(" ", 1)
            amount = usage.split(" / ")[0]
            scale = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[amount[-3:]]
            memory[by_id[container[:12]]] = round(float(amount[:-3]) * scale, 1)
        return memory

    def peak_memory_during_a_task(self) -> dict[str, float]:
        base = f"http://127.0.0.1:{self.api_port}"
        response = httpx.post(
            f"{base}/api/run_task", json={"user_requirement": "A todo app with sign-in", "skip_confirmation": True}
        )
        task_id = response.json()["task_id"]
        done = threading.Event()

        def follow() -> None:
            with httpx.stream("GET", f"{base}/api/stream/{task_id}", timeout=600) as stream:
                for _ in stream.iter_lines():
                    pass
            done.set()

        threading.Thread(target=follow, daemon=True).start()
        peak: dict[str, float] = {}
        while not done.is_set():
            for name, megabytes in self.memory_mb().items():
                peak[name] = max(peak.get(name, 0.0), megabytes)
        return peak


def stacks() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        stack = Stack(Path(directory))
        try:
            plain = stack.seconds_to_healthy(production=False)
            production = stack.seconds_to_healthy(production=True)
            at_rest = stack.memory_mb()
            with_task = stack.peak_memory_during_a_task()
        finally:
            stack("down", "--volumes", production=True)
    return {
        "plain_up_to_healthy_s": plain,
        "production_up_to_healthy_s": production,
        "memory_at_rest_mb": at_rest,
        "memory_peak_with_a_task_mb": with_task,
    }


if __name__ == "__main__":
    if shutil.which("docker") is None:
        sys.exit("docker is not installed")
    figures = builds()
    run("docker", "tag", IMAGE, "multi-agent-delivery:latest")
    figures.update(stacks())
    print(json.dumps(figures, indent=2))
