"""The service plus one benchmark route: the same crews kicked off bare, for `bench/task_overhead.py`.

`POST /bench/bare_kickoff` builds the two crews a task runs (the analysis, then the delivery given the
analysis) with the same model the service uses, and calls plain `crew.kickoff()` on each, on a worker
thread: no event handler, no stream, no store. It answers with the wall time of the two kickoffs.

Run: `LLM_PROVIDER=fake python -m uvicorn bench.overhead_app:app`.
"""

from __future__ import annotations

import asyncio
import threading
import time

from delivery_service.agents import AGENTS
from delivery_service.crew.factory import build_crew
from delivery_service.llm.providers import build_llm
from delivery_service.llm.retry import RetryingTransport
from delivery_service.settings import get_settings
from main import app


def _model(requirement: str) -> object:
    retries = RetryingTransport(
        max_retries=0, base_delay_seconds=0, on_retry=lambda retry: None, ended=threading.Event()
    )
    return build_llm(get_settings(), requirement, retries)


def bare_kickoff(requirement: str) -> float:
    started = time.perf_counter()
    analysis_crew, _ = build_crew(requirement, _model(requirement), AGENTS.analysis_steps)
    analysis = str(analysis_crew.kickoff().raw)
    delivery_crew, _ = build_crew(requirement, _model(requirement), AGENTS.delivery_steps, analysis=analysis)
    delivery_crew.kickoff()
    return time.perf_counter() - started


@app.post("/bench/bare_kickoff", include_in_schema=False)
async def bare(requirement: str = "Build a todo app") -> dict[str, float]:
    return {"seconds": await asyncio.to_thread(bare_kickoff, requirement)}
