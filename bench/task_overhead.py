"""What the service adds to a crew: `.venv/bin/python bench/task_overhead.py [--rounds 30]`.

Starts the service on the scripted `fake` model with one extra route (`bench/overhead_app.py`) that runs
the same two crews a task runs with plain `crew.kickoff()`. Rounds alternate, one task at a time:
  * through the service: POST /api/run_task, then the task's SSE stream read to its `end`; wall time from
    the POST to the `end` event at the client;
  * bare: POST /bench/bare_kickoff; wall time of the two kickoffs, measured inside the server.
Server CPU (every thread's time on CPU, from /proc/<pid>/task/*/schedstat) is taken around each. Prints the medians and the
service's extra time and CPU in percent of the bare kickoff's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import httpx

from servers import Server, service


def server_cpu(pid: int) -> float:
    """Seconds on CPU of every thread of the process, from the scheduler's nanosecond counters."""
    total = 0
    for thread in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{thread}/schedstat") as schedstat:
                total += int(schedstat.read().split()[0])
        except FileNotFoundError:
            continue  # the thread ended meanwhile
    return total / 1e9


def through_service(client: httpx.Client, server: Server) -> tuple[float, float]:
    cpu = server_cpu(server.pid)
    started = time.perf_counter()
    task_id = client.post("/api/run_task", json={"user_requirement": "Build a todo app"}).json()["task_id"]
    with client.stream("GET", f"/api/stream/{task_id}") as stream:
        last = ""
        for line in stream.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line[6:])["event_type"]
    wall = time.perf_counter() - started
    if last != "end":
        raise SystemExit(f"task {task_id} ended with {last}")
    return wall, server_cpu(server.pid) - cpu


def bare(client: httpx.Client, server: Server) -> tuple[float, float]:
    cpu = server_cpu(server.pid)
    wall = client.post("/bench/bare_kickoff", params={"requirement": "Build a todo app"}).json()["seconds"]
    return wall, server_cpu(server.pid) - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, float]]] = {"service": [], "bare": []}
    with (
        service({}, app="bench.overhead_app:app") as server,
        httpx.Client(base_url=server.base_url, timeout=120) as client,
    ):
        through_service(client, server), bare(client, server)  # warm-up: first crews import lazily
        for _ in range(args.rounds):
            runs["service"].append(through_service(client, server))
            runs["bare"].append(bare(client, server))
    medians = {
        name: {
            "wall_ms": round(statistics.median(w for w, _ in samples) * 1000, 1),
            "server_cpu_ms": round(statistics.median(c for _, c in samples) * 1000, 1),
        }
        for name, samples in runs.items()
    }
    extra = {
        f"extra_{key.removesuffix('_ms')}_percent": round(100 * (medians["service"][key] / medians["bare"][key] - 1), 1)
        for key in ("wall_ms", "server_cpu_ms")
    }
    print(json.dumps({"rounds": args.rounds, **medians, **extra}, indent=1))


if __name__ == "__main__":
    main()
