"""How fast a cancel stops a running crew: `.venv/bin/python bench/cancel_latency.py [--rounds 10]`.

Starts the service on the scripted model streaming one chunk per FAKE_LLM_DELAY_MS (default 50 ms)
with one worker slot. Each round starts a task A and a task B (which waits for A's slot), lets A
stream, cancels A, and measures:
  * cancel response: the POST /cancel round trip (A's `cancelled` event is stored when it answers);
  * crew stopped: from sending the cancel to B's `start` event, which can only be published once A's
    crew has stopped and given its worker slot back.
Prints the median and the maximum of each, in milliseconds, as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise SystemExit("timed out")


def start_event_time(base: str, task_id: str) -> float:
    with httpx.stream("GET", f"{base}/api/stream/{task_id}", timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["event_type"] == "start":
                    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
    raise SystemExit("task B never started")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk-delay-ms", type=float, default=50)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "LLM_PROVIDER": "fake", "FAKE_LLM_DELAY_MS": str(args.chunk_delay_ms),
        "MAX_CONCURRENT_TASKS": "1", "LOG_LEVEL": "warning", "PYTHONPATH": str(PROJECT_ROOT),
        "RATE_LIMIT": "100000/minute",
    }
    with tempfile.TemporaryDirectory() as workdir:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            cwd=workdir, env=env,
        )
        try:
            wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60)
            responses, stops = [], []
            for _ in range(args.rounds):
                running = httpx.post(f"{base}/api/run_task", json={"user_requirement": "cancel me"}).json()["task_id"]
                waiting = httpx.post(f"{base}/api/run_task", json={"user_requirement": "next"}).json()["task_id"]
                wait_for(lambda task=running: httpx.get(f"{base}/api/task/{task}/status").json()["current_agent"], 30)
                sent = time.time()
                httpx.post(f"{base}/api/task/{running}/cancel")
                responses.append((time.time() - sent) * 1000)
                stops.append((start_event_time(base, waiting) - sent) * 1000)
                httpx.post(f"{base}/api/task/{waiting}/cancel")
        finally:
            server.terminate()
            server.wait()
    report = {
        "rounds": args.rounds,
        "chunk_delay_ms": args.chunk_delay_ms,
        "cancel_response_ms": {"median": round(statistics.median(responses), 1), "max": round(max(responses), 1)},
        "crew_stopped_ms": {"median": round(statistics.median(stops), 1), "max": round(max(stops), 1)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
