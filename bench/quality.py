"""How well a model's deliverables fit together: a fixed set of requirements run against whatever model is set.

Ten requirements (five English, five Chinese; small apps to larger systems) run one after another on the
service with the model the environment configures (`LLM_PROVIDER`, `LLM_BASE_URL`, `LLM_MODEL`,
`DASHSCOPE_API_KEY`...; as the service picks it: the embedded model without any). For each it reports the share of deliverables
that fit their schema at the first answer and after the repair request, the traceability the service
computed (coverage, dangling references, stories without a component), the quality findings by rule and
the release gate (docs/quality.md), the decision, tokens and time; then the same overall. Writes `docs/benchmarks/quality-<provider>.json` and prints the summary.

    .venv/bin/python bench/quality.py                                  # the embedded model
    LLM_BASE_URL=https://... LLM_API_KEY=... LLM_MODEL=... .venv/bin/python bench/quality.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import PROJECT_ROOT, service, wait_for  # noqa: E402

REQUIREMENTS = (
    "Build a simple todo list web app",
    "A command-line tool that converts CSV files to JSON",
    "A booking system for a small dental clinic: patients book, dentists see their day, reminders by SMS",
    "An online store for handmade jewellery with a cart, payments and order tracking",
    "A multi-tenant analytics platform that ingests events, builds dashboards and alerts on anomalies",
    "开发一个简单的待办事项应用",
    "做一个天气查询小程序",
    "开发一个图书馆借阅管理系统，支持借书、还书和逾期提醒",
    "开发一个外卖点餐平台，包括商家管理、用户下单、骑手配送和支付",
    "设计一个支持百万用户的在线教育平台，包括直播课程、作业批改和学习数据分析",
)
MODEL_SETTINGS = ("LLM_PROVIDER", "LLM_BASE_URL", "LLM_API_KEY", "LLM_MODEL", "DASHSCOPE_API_KEY", "DASHSCOPE_MODEL")


def one_requirement(base_url: str, requirement: str) -> dict[str, Any]:
    started = time.monotonic()
    task = httpx.post(f"{base_url}/api/run_task", json={"user_requirement": requirement}, timeout=30).json()
    events = []
    with httpx.stream("GET", f"{base_url}{task['stream_url']}", timeout=None) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]
    seconds = time.monotonic() - started
    result = httpx.get(f"{base_url}/api/task/{task['task_id']}/result", timeout=30).json()
    outputs = [event for event in events if event["event_type"] == "output"]
    traceability = result.get("traceability") or {}
    status = httpx.get(f"{base_url}/api/task/{task['task_id']}/status", timeout=30).json()
    return {
        "requirement": requirement,
        "ended": events[-1]["event_type"] if events else None,
        "deliverables": len(outputs),
        "valid_first_try": sum(1 for e in outputs if e["metadata"].get("data") and e["metadata"].get("attempts") == 1),
        "valid_after_repair": sum(1 for e in outputs if e["metadata"].get("data")),
        "coverage": traceability.get("coverage"),
        "dangling": len(traceability.get("dangling", [])),
        "stories_without_component": len(traceability.get("stories_without_component", [])),
        "findings": dict(Counter(finding["rule"] for finding in (result.get("quality") or {}).get("findings", []))),
        "gate": ((result.get("quality") or {}).get("gate") or {}).get("status"),
        "decision": result.get("decision"),
        "total_tokens": status["usage"]["total_tokens"],
        "seconds": round(seconds, 1),
    }


def overall(rows: list[dict[str, Any]]) -> dict[str, Any]:
    deliverables = sum(row["deliverables"] for row in rows) or 1
    coverages = [row["coverage"] for row in rows if row["coverage"] is not None]
    return {
        "requirements": len(rows),
        "completed": sum(1 for row in rows if row["ended"] == "end"),
        "schema_valid_first_try": round(sum(row["valid_first_try"] for row in rows) / deliverables, 3),
        "schema_valid_after_repair": round(sum(row["valid_after_repair"] for row in rows) / deliverables, 3),
        "median_coverage": round(statistics.median(coverages), 3) if coverages else None,
        "dangling_references": sum(row["dangling"] for row in rows),
        "stories_without_component": sum(row["stories_without_component"] for row in rows),
        "findings_by_rule": dict(sum((Counter(row["findings"]) for row in rows), Counter()).most_common()),
        "gates": {gate: sum(1 for row in rows if row["gate"] == gate) for gate in ("pass", "concerns", "fail", None)},
        "decisions": {d: sum(1 for row in rows if row["decision"] == d) for d in ("go", "no_go", None)},
        "total_tokens": sum(row["total_tokens"] for row in rows),
        "median_seconds": round(statistics.median(row["seconds"] for row in rows), 1),
    }


def main() -> None:
    env = {name: os.environ[name] for name in MODEL_SETTINGS if os.environ.get(name)}
    env.setdefault("LLM_PROVIDER", "auto")  # DashScope with a key, else LLM_BASE_URL, else the embedded model
    with service(env) as server:
        wait_for(lambda: httpx.get(f"{server.base_url}/readyz", timeout=5).status_code == 200, 300, "the model")
        model = httpx.get(f"{server.base_url}/healthz").json()["model"]
        rows = [one_requirement(server.base_url, requirement) for requirement in REQUIREMENTS]
    report = {
        "model": {"provider": model["provider"], "model": model["model"]},
        "overall": overall(rows),
        "requirements": rows,
    }
    out = PROJECT_ROOT / "docs" / "benchmarks" / f"quality-{model['provider']}.json"
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    print(json.dumps({"model": report["model"], "overall": report["overall"]}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
