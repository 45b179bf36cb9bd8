"""Event delivery against the limit of the HTTP stack, in the same run: `.venv/bin/python bench/delivery.py`.

For each load (tasks × subscribers × events per task) and each of --runs rounds, this starts the
reference app (`../shared/bench/limit_app.py`: FastAPI + sse-starlette, events in memory, no threads,
no store) and then this service with an event pump in place of the crews (`bench/event_pump_app.py`:
worker threads publish through the stream layer and the SQLite store), each fresh, and drives both
with the reference load client (`../shared/bench/load.py`), which checks every stream for gaps,
duplicates and foreign events. It prints, per load, the medians over the rounds and the service's
ratios to the reference, and writes every raw report to docs/benchmarks/delivery-<store>.json.

Server CPU per delivered event (the server's utime+stime over the run, divided by events received) is
the fair comparison: the load client shares the two cores, and when its own CPU use nears one core it,
not the server, limits events/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from typing import Any

from servers import PROJECT_ROOT, reference, run_load_client, service

REPORTS_DIR = PROJECT_ROOT / "docs" / "benchmarks"


@dataclass(frozen=True)
class Load:
    name: str
    tasks: int
    subscribers: int
    events: int
    interval_ms: float = 0

    def env(self) -> dict[str, str]:
        return {"BENCH_EVENTS": str(self.events), "BENCH_INTERVAL_MS": str(self.interval_ms)}


LOADS = (
    Load("1x1x2000", 1, 1, 2000),
    Load("50x1x200", 50, 1, 200),
    Load("50x2x200", 50, 2, 200),
    Load("200x1x100", 200, 1, 100),
    Load("paced 25x1x200 every 10 ms", 25, 1, 200, interval_ms=10),
)


def figures(report: dict[str, Any]) -> dict[str, float]:
    events = report["events_total"]
    return {
        "events_per_s": report["events_per_s"],
        "server_cpu_us_per_event": report["server"]["cpu_s"] / events * 1e6,
        "latency_p50_ms": report["delivery_latency_ms"]["p50"],
        "latency_p99_ms": report["delivery_latency_ms"]["p99"],
        "steady_p50_ms": report["delivery_latency_steady_ms"]["p50"] or 0.0,
        "steady_p99_ms": report["delivery_latency_steady_ms"]["p99"] or 0.0,
        "client_cpu": report["client"]["cpu_util_window"],
        "server_cpu": report["server"]["cpu_util_window"],
        "problems": sum(report["correctness"].values()),
    }


def medians(reports: list[dict[str, Any]]) -> dict[str, float]:
    runs = [figures(report) for report in reports]
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]} | {
        "problems": sum(run["problems"] for run in runs)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=4, help="MAX_CONCURRENT_TASKS (default: the service's; paced: tasks)"
    )
    parser.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    parser.add_argument("--only", help="run only the loads whose name contains this")
    args = parser.parse_args()
    loads = [load for load in LOADS if not args.only or args.only in load.name]
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for load in loads:
        workers = max(args.workers, load.tasks) if load.interval_ms else args.workers
        service_env = {**load.env(), "MAX_CONCURRENT_TASKS": str(min(workers, 64)), "TASK_STORE": args.store}
        runs = raw.setdefault(load.name, {"reference": [], "service": []})
        for _ in range(args.runs):
            with reference("limit_app:app", load.env()) as server:
                runs["reference"].append(run_load_client(server, load.tasks, load.subscribers, "--timeout", "120"))
            with service(service_env, app="bench.event_pump_app:app") as server:
                runs["service"].append(run_load_client(server, load.tasks, load.subscribers, "--timeout", "120"))
        print_load(load, medians(runs["reference"]), medians(runs["service"]))
    REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    (REPORTS_DIR / f"delivery-{args.store}{'-' + args.only if args.only else ''}.json").write_text(
        json.dumps(raw, indent=1)
    )


def print_load(load: Load, ref: dict[str, float], ours: dict[str, float]) -> None:
    latency = "steady" if load.interval_ms else "latency"
    print(
        f"{load.name}: ev/s {ours['events_per_s']:.0f} vs {ref['events_per_s']:.0f} "
        f"({ours['events_per_s'] / ref['events_per_s']:.0%}); "
        f"server us/event {ours['server_cpu_us_per_event']:.1f} vs {ref['server_cpu_us_per_event']:.1f} "
        f"({ours['server_cpu_us_per_event'] / ref['server_cpu_us_per_event']:.2f}x); "
        f"{latency} p50/p99 ms {ours[f'{latency}_p50_ms']:.1f}/{ours[f'{latency}_p99_ms']:.1f} vs "
        f"{ref[f'{latency}_p50_ms']:.1f}/{ref[f'{latency}_p99_ms']:.1f}; "
        f"client cpu {ours['client_cpu']:.2f} vs {ref['client_cpu']:.2f}; "
        f"server cpu {ours['server_cpu']:.2f} vs {ref['server_cpu']:.2f}; "
        f"problems {ours['problems']:.0f} vs {ref['problems']:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
