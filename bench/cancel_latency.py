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
import statistics
import time
from datetime import datetime

import httpx

from servers import service, wait_for


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
    env = {"FAKE_LLM_DELAY_MS": str(args.chunk_delay_ms), "MAX_CONCURRENT_TASKS": "1"}
    with service(env) as server:
        base = server.base_url
        responses, stops = [], []
        for _ in range(args.rounds):
            running = httpx.post(f"{base}/api/run_task", json={"user_requirement": "cancel me"}).json()["task_id"]
            waiting = httpx.post(f"{base}/api/run_task", json={"user_requirement": "next"}).json()["task_id"]
            wait_for(
                lambda task=running: httpx.get(f"{base}/api/task/{task}/status").json()["current_agent"], 30, "work"
            )
            sent = time.time()
            httpx.post(f"{base}/api/task/{running}/cancel")
            responses.append((time.time() - sent) * 1000)
            stops.append((start_event_time(base, waiting) - sent) * 1000)
            httpx.post(f"{base}/api/task/{waiting}/cancel")
    report = {
        "rounds": args.rounds,
        "chunk_delay_ms": args.chunk_delay_ms,
        "cancel_response_ms": {"median": round(statistics.median(responses), 1), "max": round(max(responses), 1)},
        "crew_stopped_ms": {"median": round(statistics.median(stops), 1), "max": round(max(stops), 1)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
