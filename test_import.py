"""Smoke check of an installation: `python test_import.py`. Needs no network and no API key.

Prints one `[OK]` line per check and a final `[SUCCESS]` line, or a `[FAIL]` line and exits with 1.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

os.environ.setdefault("LLM_PROVIDER", "fake")

EXPECTED_ROUTES = {
    "/api/run_task",
    "/api/stream/{task_id}",
    "/api/task/{task_id}/status",
    "/api/task/{task_id}/result",
    "/api/streams",
    "/api/tasks",
    "/healthz",
    "/readyz",
}


def check_imports() -> None:
    import agents_config  # noqa: F401
    import crew_factory  # noqa: F401
    import delivery_service.cluster.celery_app  # noqa: F401  (the cluster mode: Celery, redis-py)
    import delivery_service.cluster.cluster_runner  # noqa: F401
    import main  # noqa: F401
    import stream_manager  # noqa: F401


def check_agents() -> None:
    from agents_config import AGENT_NAMES
    from crew_factory import build_crew
    from delivery_service.llm.fake import ScriptedLLM

    crew, steps = build_crew("A smoke-test requirement", ScriptedLLM(model="scripted"), (1, 2, 3, 4))
    roles = [agent.role for agent in crew.agents]
    assert len(roles) == len(AGENT_NAMES) == 4, roles
    assert sorted(steps.values()) == [1, 2, 3, 4]


def check_stream_manager() -> None:
    from delivery_service.store.memory import MemoryTaskStore
    from delivery_service.store.records import TaskRecord
    from delivery_service.store.task_event import EventType
    from stream_manager import StreamLimits, StreamManager

    async def publish_and_read() -> bytes:
        streams = StreamManager(MemoryTaskStore(), StreamLimits(1_000_000, 10_000), 60)
        stream = await streams.create_stream(TaskRecord("smoke", "smoke test", True, False, 0, {}))
        stream.publish_system(EventType.START, "go")
        stream.publish_system(EventType.END, "done")
        frames = b"".join([frame async for frame in stream.frames_after(0)])
        await streams.close()
        return frames

    frames = asyncio.run(publish_and_read())
    assert frames.startswith(b"id: 1\ndata: ") and b"id: 2\n" in frames


def check_endpoints() -> None:
    from main import app

    paths = set(app.openapi()["paths"])
    assert app.url_path_for("test_ui") == "/test-ui"
    missing = EXPECTED_ROUTES - paths
    assert not missing, f"missing routes: {sorted(missing)}"


CHECKS: list[tuple[str, Callable[[], None]]] = [
    ("Module Imports", check_imports),
    ("Agent Creation", check_agents),
    ("Stream Manager", check_stream_manager),
    ("API Endpoints", check_endpoints),
]


def main() -> int:
    for name, check in CHECKS:
        try:
            check()
        except Exception as exc:
            reason = " ".join(str(exc).split())
            print(f"[FAIL] {name}: {type(exc).__name__}: {reason}")
            return 1
        print(f"[OK] {name}")
    print("[SUCCESS] All tests passed! System is ready.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
