"""The cluster mode measured: crews per second on one Celery worker and on two, and event delivery
latency through Redis against the embedded mode, in the same run.

    .venv/bin/python bench/cluster.py [--tasks 24] [--latency-tasks 8] [--runs 3]

Everything runs on this machine: Debian's redis-server, one API replica under uvicorn, and Celery
workers of one process each, on the scripted `fake` model (no network).

- Throughput: `--tasks` tasks (two crews each: the analysis, then the delivery) posted at once; crews
  per second from the first POST to the last terminal event, with 1 worker, then 2.
- Latency: `--latency-tasks` tasks, two at a time, on the `fake` model slowed to FAKE_LLM_DELAY_MS=5
  with a `delta` per chunk; for every event, the time from its `timestamp` (taken when the crew
  publishes it) to its arrival at an SSE client reading from the start. Embedded mode: one process,
  SQLite store. Cluster mode: one replica, two workers, Redis.

Writes docs/benchmarks/cluster.json (medians of `--runs`) and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import redis

from servers import PROJECT_ROOT, Server, free_port, service, wait_for

REPORT = PROJECT_ROOT / "docs" / "benchmarks" / "cluster.json"
LATENCY_ENV = {"FAKE_LLM_DELAY_MS": "5", "DELTA_INTERVAL_MS": "0"}


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        wait_for(lambda: _pings(client), 30, "redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@contextlib.contextmanager
def celery_workers(count: int, env: dict[str, str]) -> Iterator[None]:
    """`count` workers of one process each, ready (announced in Redis) when this yields."""
    client = redis.Redis.from_url(env["REDIS_URL"])
    before = client.zcard("mad:workers")
    with tempfile.TemporaryDirectory() as workdir:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "delivery_service.cluster.worker",
                    "worker",
                    "--concurrency",
                    "1",
                    "--hostname",
                    f"bench{n}@%h",
                    "--without-heartbeat",
                    "--without-mingle",
                    "--without-gossip",
                    "--loglevel",
                    "WARNING",
                ],
                cwd=workdir,
                env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "LLM_PROVIDER": "fake", **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            for n in range(count)
        ]
        try:
            wait_for(lambda: client.zcard("mad:workers") >= before + count, 90, "the workers")
            yield
        finally:
            for process in workers:
                os.killpg(process.pid, signal.SIGTERM)
            for process in workers:
                process.wait()
            client.delete("mad:workers")
            client.close()


def start(server: Server, requirement: str) -> str:
    body = {"user_requirement": requirement, "skip_confirmation": True, "stream_tokens": True}
    response = httpx.post(f"{server.base_url}/api/run_task", json=body, timeout=30)
    response.raise_for_status()
    return str(response.json()["task_id"])


def read_events(server: Server, task_id: str, arrivals: list[tuple[float, str]] | None = None) -> list[dict[str, Any]]:
    """Every event of a task's stream; with `arrivals`, also when each `data:` line arrived."""
    events = []
    with httpx.stream("GET", f"{server.base_url}/api/stream/{task_id}", timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if arrivals is not None:
                    arrivals.append((time.time(), event["timestamp"]))
                events.append(event)
    return events


def crews_per_second(server: Server, tasks: int) -> float:
    began = time.perf_counter()
    task_ids = [start(server, f"Build todo app number {n}") for n in range(tasks)]
    for task_id in task_ids:
        events = read_events(server, task_id)
        assert events[-1]["event_type"] == "end", events[-1]
    return 2 * tasks / (time.perf_counter() - began)


def delivery_latencies_ms(server: Server, tasks: int) -> list[float]:
    """Publish-to-client latency of every event of `tasks` tasks run two at a time."""
    arrivals: list[tuple[float, str]] = []
    for pair in range(0, tasks, 2):
        readers = []
        for n in range(pair, min(pair + 2, tasks)):
            task_id = start(server, f"Build todo app number {n}")
            reader = threading.Thread(target=read_events, args=(server, task_id, arrivals))
            reader.start()
            readers.append(reader)
        for reader in readers:
            reader.join()
    return [(arrived - datetime.fromisoformat(stamp).timestamp()) * 1000 for arrived, stamp in arrivals]


def percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50": round(cuts[49], 2), "p90": round(cuts[89], 2), "p99": round(cuts[98], 2), "events": len(values)}


def one_run(tasks: int, latency_tasks: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with redis_server() as url:
        cluster_env = {"REDIS_URL": url, "MAX_QUEUED_TASKS": "100000"}
        with service(cluster_env) as replica:
            for workers in (1, 2):
                with celery_workers(workers, cluster_env):
                    result[f"crews_per_second_{workers}_worker{'s' if workers > 1 else ''}"] = round(
                        crews_per_second(replica, tasks), 2
                    )
        with service({**cluster_env, **LATENCY_ENV}) as replica, celery_workers(2, {**cluster_env, **LATENCY_ENV}):
            result["latency_ms_redis"] = percentiles(delivery_latencies_ms(replica, latency_tasks))
    with service({**LATENCY_ENV, "MAX_CONCURRENT_TASKS": "2"}) as embedded:
        result["latency_ms_embedded"] = percentiles(delivery_latencies_ms(embedded, latency_tasks))
    return result


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, dict):
            merged[key] = {name: statistics.median(run[key][name] for run in runs) for name in value}
        else:
            merged[key] = statistics.median(run[key] for run in runs)
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=24)
    parser.add_argument("--latency-tasks", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run(args.tasks, args.latency_tasks) for _ in range(args.runs)]
    report = {
        "machine_cpus": os.cpu_count(),
        "tasks": args.tasks,
        "latency_tasks": args.latency_tasks,
        "median": median_of(runs),
        "runs": runs,
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
