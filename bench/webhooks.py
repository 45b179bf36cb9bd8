"""Webhook delivery, measured: latency from an event to its message's arrival, and outbox throughput.

    python bench/webhooks.py [--tasks 20] [--messages 5000]

1. Latency: the service (uvicorn, scripted model at full speed, SQLite store) runs `--tasks` tasks at
   once, each with a `webhook_url` on a receiver (uvicorn, another process, answering 204 at once). For
   every message: its arrival at the receiver minus its event's timestamp (same machine, same clock).
2. Throughput: `--messages` messages put into a SQLite outbox at once, then drained by one
   `WebhookSender` to the same receiver: messages per second, end to end (claim, sign, POST, record).

Prints one JSON object; docs/webhooks.md records the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from delivery_service.settings import Settings  # noqa: E402
from delivery_service.store.outbox import OutboxMessage, webhook_id  # noqa: E402
from delivery_service.store.sqlite import SqliteTaskStore  # noqa: E402
from delivery_service.webhooks.async_outbox import ThreadedOutbox  # noqa: E402
from delivery_service.webhooks.sender import WebhookSender  # noqa: E402

# The receiver: an ASGI app keeping each message's arrival time; GET returns them.
arrivals: list[tuple[float, bytes]] = []


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "POST":
        arrivals.append((time.time(), body))
        payload = b""
        status = 204
    else:
        payload = json.dumps([[at, json.loads(raw)] for at, raw in arrivals]).encode()
        status = 200
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", str(len(payload)).encode())]}
    )
    await send({"type": "http.response.body", "body": payload})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(app_path: str, env: dict[str, str], cwd: Path, app_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app_path,
            "--app-dir",
            str(app_dir),
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=cwd,
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"{app_path} did not start")


def latency(tasks: int, secret: str, receiver: str, workdir: Path) -> dict[str, Any]:
    env = {
        "LLM_PROVIDER": "fake",
        "WEBHOOK_SECRET": secret,
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "RATE_LIMIT": "100000/minute",
        "MAX_CONCURRENT_TASKS": str(tasks),
        "LOG_LEVEL": "warning",
    }
    service, url = serve("main:app", env, workdir, PROJECT_ROOT)
    try:
        for n in range(tasks):
            body = {"user_requirement": f"Build todo app {n}", "webhook_url": f"{receiver}/hook"}
            assert httpx.post(f"{url}/api/run_task", json=body).status_code == 202
        expected = tasks * 5
        deadline = time.monotonic() + 300
        while len(received := httpx.get(f"{receiver}/").json()) < expected and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        service.terminate()
        service.wait()
    delays = sorted(at - datetime.fromisoformat(payload["timestamp"]).timestamp() for at, payload in received)
    return {
        "tasks": tasks,
        "messages": len(delays),
        "p50_ms": round(statistics.median(delays) * 1000, 1),
        "p95_ms": round(delays[int(len(delays) * 0.95) - 1] * 1000, 1),
        "max_ms": round(delays[-1] * 1000, 1),
    }


async def throughput(count: int, secret: str, receiver: str, workdir: Path) -> dict[str, Any]:
    store = SqliteTaskStore(workdir / "outbox")
    body = json.dumps(
        {"type": "task.step_completed", "timestamp": "2026-11-28T00:00:00Z", "data": {"task_id": "bench"}}
    )
    store.save(
        [],
        [],
        [
            OutboxMessage(webhook_id("bench", n, 1), "bench", n, "task.step_completed", f"{receiver}/hook", body)
            for n in range(1, count + 1)
        ],
    )
    settings = Settings(webhook_secret=secret, webhook_allowed_hosts="127.0.0.1")
    sender = WebhookSender(ThreadedOutbox(store.outbox), settings)
    started = time.perf_counter()
    sender.start()
    while await sender.outbox.pending():
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    await sender.stop()
    delivered = sum(1 for d in store.outbox.deliveries("bench") if d.status == "delivered")
    store.close()
    return {
        "messages": count,
        "delivered": delivered,
        "seconds": round(seconds, 2),
        "per_second": round(count / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--messages", type=int, default=5000)
    options = parser.parse_args()
    secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        receiver_process, receiver = serve("webhooks:app", {}, workdir, PROJECT_ROOT / "bench")
        try:
            results = {"latency": latency(options.tasks, secret, receiver, workdir)}
            results["throughput"] = asyncio.run(throughput(options.messages, secret, receiver, workdir))
        finally:
            receiver_process.terminate()
            receiver_process.wait()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
