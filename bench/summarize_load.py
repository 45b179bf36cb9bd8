"""One line of figures from a load.py JSON report on stdin; appends the report to docs/load-reports.jsonl."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPORTS = Path(__file__).resolve().parent.parent / "docs" / "load-reports.jsonl"


def main() -> None:
    report = json.load(sys.stdin)
    with REPORTS.open("a") as reports:
        reports.write(json.dumps(report) + "\n")
    server = report["server"]
    print(
        f"{report['config']['tasks']} tasks x {report['config']['subscribers']} subscribers: "
        f"{report['events_total']} events, {report['events_per_s']} ev/s, "
        f"POST p99 {report['post_latency_ms']['p99']} ms, "
        f"steady delivery p99 {report['delivery_latency_steady_ms']['p99']} ms, "
        f"server CPU {server['cpu_s']} s, RSS {server['rss_kb_after']} KB, "
        f"correctness problems {sum(report['correctness'].values())}"
    )


if __name__ == "__main__":
    main()
