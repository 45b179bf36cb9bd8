"""API latency while crews run: `.venv/bin/python bench/responsiveness.py`.

For each crew execution mode (CREW_EXECUTION=thread, the default, and process), starts the service on
the scripted `fake` model with MAX_CONCURRENT_TASKS=--crews and keeps that many crews running (a
backlog of tasks waits for the slots). Meanwhile a probe client, one request at a time every
--interval-ms, times POST /api/run_task (the probe's task is then cancelled, untimed) and
GET /api/task/{id}/status. The same probes run first against the idle service, in the same process.
Prints p50/p99/max in ms for both (medians over --runs fresh services per mode), and whether every crew
slot stayed busy while probing.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from typing import Any

import httpx

from servers import service, wait_for

BACKLOG_PER_CREW = 15


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[min(len(ordered), max(1, math.ceil(p / 100 * len(ordered)))) - 1]

    return {"p50": round(rank(50) * 1000, 2), "p99": round(rank(99) * 1000, 2), "max": round(ordered[-1] * 1000, 2)}


def busy_workers(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("delivery_workers_busy "):
            return float(line.split()[1])
    raise SystemExit("/metrics has no delivery_workers_busy")


def probe(client: httpx.Client, rounds: int, interval_seconds: float) -> dict[str, Any]:
    posts, statuses = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        created = client.post("/api/run_task", json={"user_requirement": "probe", "priority": 0})
        posts.append(time.perf_counter() - started)
        task_id = created.json()["task_id"]
        started = time.perf_counter()
        client.get(f"/api/task/{task_id}/status").raise_for_status()
        statuses.append(time.perf_counter() - started)
        client.post(f"/api/task/{task_id}/cancel")
        time.sleep(interval_seconds)
    return {"post_ms": percentiles(posts), "status_ms": percentiles(statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crews", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--interval-ms", type=float, default=20)
    parser.add_argument("--modes", default="thread,process", help="CREW_EXECUTION values to compare")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    report: dict[str, Any] = {"crews": args.crews, "runs": args.runs}
    for mode in args.modes.split(","):
        runs = [measure(mode, args.crews, args.rounds, args.interval_ms / 1000) for _ in range(args.runs)]
        report[mode] = median_of(runs)
    print(json.dumps(report, indent=1))


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the runs (the same keys, nested as one run's)."""
    first = runs[0]
    if not isinstance(first, dict):
        return statistics.median(runs)  # type: ignore[return-value]
    return {key: median_of([run[key] for run in runs]) for key in first}


def measure(mode: str, crews: int, rounds: int, interval_seconds: float) -> dict[str, Any]:
    env = {"MAX_CONCURRENT_TASKS": str(crews), "CREW_EXECUTION": mode}
    with service(env) as server, httpx.Client(base_url=server.base_url, timeout=60) as client:
        probe(client, 20, interval_seconds)  # warm-up
        idle = probe(client, rounds, interval_seconds)
        for _ in range(crews * BACKLOG_PER_CREW):
            client.post(
                "/api/run_task", json={"user_requirement": "Build a todo app", "priority": 5}
            ).raise_for_status()
        wait_for(lambda: busy_workers(client) == crews, 60, "every crew slot to be busy")
        loaded = probe(client, rounds, interval_seconds)
        return {"idle": idle, "under_load": loaded, "crew_slots_busy_after": busy_workers(client)}


if __name__ == "__main__":
    main()
