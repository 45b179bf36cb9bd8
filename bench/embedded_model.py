"""How long a whole task takes on the embedded model (LLM_PROVIDER=local), alone and two at once.

For each LOCAL_MODEL_SLOTS value (default: 1 and 2) the service starts fresh, waits for the model to
load (`/readyz`), then runs `--runs` rounds of: one task alone, then two tasks posted together. A
task's time is from its POST to its terminal event, read from its stream. Prints one JSON object with
the median and range of each figure; README and docs/performance.md quote it.

    .venv/bin/python bench/embedded_model.py [--runs 3] [--slots 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import service, wait_for  # noqa: E402

REQUIREMENTS = ("Build a simple todo list web app", "开发一个简单的待办事项应用")


def one_task(base_url: str, requirement: str) -> float:
    """Seconds from POST to the terminal event; fails unless the task completed."""
    started = time.monotonic()
    task = httpx.post(f"{base_url}/api/run_task", json={"user_requirement": requirement}, timeout=30).json()
    last = None
    with httpx.stream("GET", f"{base_url}{task['stream_url']}", timeout=None) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                last = json.loads(line[6:])
    elapsed = time.monotonic() - started
    if last is None or last["event_type"] != "end":
        raise SystemExit(f"task {task['task_id']} did not complete: {last}")
    return elapsed


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(values), 1),
        "min_s": round(min(values), 1),
        "max_s": round(max(values), 1),
    }


def measure(slots: int, runs: int) -> dict[str, object]:
    alone: list[float] = []
    together: list[float] = []
    env = {"LLM_PROVIDER": "local", "LOCAL_MODEL_SLOTS": str(slots), "MAX_CONCURRENT_TASKS": "4"}
    with service(env) as server:
        wait_for(lambda: httpx.get(f"{server.base_url}/readyz", timeout=5).status_code == 200, 300, "the model to load")
        for _ in range(runs):
            alone.append(one_task(server.base_url, REQUIREMENTS[0]))
            with ThreadPoolExecutor(2) as pool:
                together.extend(pool.map(lambda text: one_task(server.base_url, text), REQUIREMENTS))
    return {"local_model_slots": slots, "one_task": summary(alone), "two_tasks_at_once_each": summary(together)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    report = {
        "cpus": os.cpu_count(),
        "local_model_threads": os.environ.get("LOCAL_MODEL_THREADS", "2 (default)"),
        "results": [measure(slots, args.runs) for slots in args.slots],
    }
    print(json.dumps(report, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
