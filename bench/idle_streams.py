"""Idle SSE streams held open, memory per stream against the reference: `.venv/bin/python bench/idle_streams.py`.

Each of --runs rounds starts the reference app (`../shared/bench/limit_app.py`, BENCH_HOLD=1: one event,
then the stream stays open) and this service with its event pump holding every task open
(`bench/event_pump_app.py`, BENCH_HOLD=1: `start` or `queued`, then nothing but heartbeats), and has the
reference load client open --tasks × --subscribers streams on each, wait until every stream has its first
event, and hold them --hold seconds, longer than the heartbeat interval (15 s on both), so heartbeats flow.
The client reports the server's RSS before and while the streams are held; the difference divided by the
number of streams is the memory one open stream costs. Prints medians; raw reports go to
docs/benchmarks/idle-streams-reports.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from servers import PROJECT_ROOT, Server, reference, run_load_client, service

REPORTS = PROJECT_ROOT / "docs" / "benchmarks" / "idle-streams-reports.json"
HOLD_ENV = {"BENCH_HOLD": "1"}


def hold(server: Server, tasks: int, subscribers: int, seconds: float) -> dict[str, Any]:
    return run_load_client(server, tasks, subscribers, "--hold", str(seconds), "--timeout", "300")


def summary(reports: list[dict[str, Any]]) -> dict[str, float]:
    held = [report["hold"] for report in reports]
    return {
        "streams_open": statistics.median(h["streams_with_first_event"] for h in held),
        "kb_per_stream": statistics.median(h["kb_per_connection"] for h in held),
        "all_open_after_s": statistics.median(h["all_first_after_s"] for h in held),
        "server_rss_mb_held": statistics.median(h["server_rss_kb_held"] for h in held) / 1024,
        "stream_errors": sum(
            report["correctness"]["stream_errors"] + report["correctness"]["http_errors"] for report in reports
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--hold", type=float, default=20)
    args = parser.parse_args()
    raw: dict[str, list[dict[str, Any]]] = {"reference": [], "service": []}
    for _ in range(args.runs):
        with reference("limit_app:app", HOLD_ENV) as server:
            raw["reference"].append(hold(server, args.tasks, args.subscribers, args.hold))
        with service(HOLD_ENV, app="bench.event_pump_app:app") as server:
            raw["service"].append(hold(server, args.tasks, args.subscribers, args.hold))
    REPORTS.parent.mkdir(parents=True, exist_ok=True)
    REPORTS.write_text(json.dumps(raw, indent=1))
    ref, ours = summary(raw["reference"]), summary(raw["service"])
    print(
        json.dumps(
            {
                "reference": ref,
                "service": ours,
                "memory_per_stream_ratio": round(ours["kb_per_stream"] / ref["kb_per_stream"], 2),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
