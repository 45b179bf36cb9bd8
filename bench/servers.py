"""Start and stop the servers a benchmark compares: this service (or a variant) and the references.

Every server is a real uvicorn process on a free loopback port, uvloop + httptools (the reference
servers' settings), in a fresh working directory so no run sees another's data.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_BENCH = PROJECT_ROOT.parent / "shared" / "bench"
LOAD_CLIENT = SHARED_BENCH / "load.py"
STARTUP_TIMEOUT_SECONDS = 90

# The service's abuse limits would throttle a load test from one address; they are tested on their own.
SERVICE_BENCH_ENV = {
    "LLM_PROVIDER": "fake",
    "LOG_LEVEL": "warning",
    "RATE_LIMIT": "1000000/minute",
    "MAX_STREAMS_PER_CLIENT": "1000000",
    "MAX_QUEUED_TASKS": "100000",
}


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    """Poll `condition` until it is true; transport errors count as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


@contextlib.contextmanager
def uvicorn_server(app: str, env: dict[str, str], cwd: Path | None = None, ready_path: str = "/") -> Iterator[Server]:
    """`python -m uvicorn app` with `env` added; `cwd` defaults to a fresh temporary directory."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as workdir, (Path(workdir) / "server.log").open("w+b") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
            ],
            cwd=cwd or workdir,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "DATA_DIR": str(Path(workdir) / "data"), **env},
        )
        try:
            wait_for(
                lambda: _answers(process, f"{base_url}{ready_path}", log), STARTUP_TIMEOUT_SECONDS, f"{app} to start"
            )
            yield Server(base_url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _answers(process: subprocess.Popen[bytes], url: str, log: IO[bytes]) -> bool:
    if process.poll() is not None:
        log.seek(0)
        raise SystemExit(
            f"server exited early with status {process.returncode}:\n{log.read().decode(errors='replace')}"
        )
    return httpx.get(url, timeout=1.0).status_code < 500


def service(env: dict[str, str], app: str = "main:app") -> contextlib.AbstractContextManager[Server]:
    """This service (or a variant app of it) with benchmark settings plus `env`."""
    return uvicorn_server(app, {**SERVICE_BENCH_ENV, **env}, ready_path="/healthz")


def reference(app: str, env: dict[str, str]) -> contextlib.AbstractContextManager[Server]:
    """A reference app of `../shared/bench/` (`limit_app:app`, `seed_baseline:app`), run from there."""
    return uvicorn_server(app, env, cwd=SHARED_BENCH)


def run_load_client(server: Server, tasks: int, subscribers: int, *options: str) -> dict[str, Any]:
    """One run of the reference load client (`../shared/bench/load.py`) against `server`; its JSON report.

    Its exit status is not checked: it is 1 when a stream saw a problem, and the report says which.
    """
    completed = subprocess.run(
        [
            sys.executable,
            str(LOAD_CLIENT),
            "--base-url",
            server.base_url,
            "--tasks",
            str(tasks),
            "--subscribers",
            str(subscribers),
            "--server-pid",
            str(server.pid),
            *options,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if not completed.stdout.strip():
        raise SystemExit(f"load client failed: {completed.stderr}")
    return json.loads(completed.stdout)
