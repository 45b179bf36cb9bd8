"""scripts/cluster: the cluster mode on one machine without Docker starts, serves a task through Nginx, and
stops every process it started on Ctrl-C (real redis-server, nginx, uvicorn replicas and a Celery worker)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import PROJECT_ROOT, TEST_DEFAULTS, free_port, read_stream, start_task, wait_until

pytestmark = pytest.mark.slow


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports that are free on 127.0.0.1 now."""
    while True:
        first = free_port()
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_scripts_cluster_serves_a_task_and_stops_everything(tmp_path: Path) -> None:
    nginx_port, redis_port, first_replica = free_port(), free_port(), consecutive_free_ports(2)
    command = [
        sys.executable,
        "-m",
        "delivery_service.cluster.launcher",
        "--replicas",
        "2",
        "--workers",
        "1",
        "--concurrency",
        "1",
        "--port",
        str(nginx_port),
        "--redis-port",
        str(redis_port),
        "--first-replica-port",
        str(first_replica),
        "--workdir",
        str(tmp_path),
    ]
    cluster = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env={**os.environ, **TEST_DEFAULTS, "PYTHONPATH": str(PROJECT_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base_url = f"http://127.0.0.1:{nginx_port}"
        wait_until(lambda: answers(f"{base_url}/readyz") or cluster.poll() is not None, 120, "the cluster to start")
        assert cluster.poll() is None, cluster.stdout.read() if cluster.stdout else ""
        assert "cluster ready" in (cluster.stdout.readline() if cluster.stdout else "")
        task_id = start_task(base_url, "Served by the local cluster")
        events = read_stream(base_url, task_id)
        assert events[-1]["event_type"] == "end"
        start = next(event for event in events if event["event_type"] == "start")  # after `queued`, if it waited
        assert start["metadata"]["worker"].startswith("worker1@"), "the crew ran on the Celery worker"
        served_by = (tmp_path / "nginx-access.log").read_text()
        assert all(f"127.0.0.1:{port}" in served_by for port in (first_replica, first_replica + 1))
    finally:
        cluster.send_signal(signal.SIGINT)
        assert cluster.wait(timeout=90) == 0
    for port in (nginx_port, redis_port, first_replica, first_replica + 1):
        assert not accepts(port), f"port {port} still open after Ctrl-C"
