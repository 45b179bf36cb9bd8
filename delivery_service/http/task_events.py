"""A task's events as dictionaries, for the API's in-process clients (MCP, AG-UI).

They are the frames `GET /api/stream/{task_id}` sends, parsed back, so MCP and AG-UI see exactly what
an SSE client sees, in both modes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from delivery_service.http.lifespan import ServiceState
from delivery_service.store.task_event import TERMINAL_EVENT_TYPES, EventType


async def task_events(state: ServiceState, task_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
    """Every event of the task with a sequence above `after`, in order, until its terminal event."""
    async for frame in state.engine.frames_after(task_id, after):
        for line in frame.split(b"\n"):
            if line.startswith(b"data: "):
                event: dict[str, Any] = orjson.loads(line[6:])
                yield event
                if EventType(event["event_type"]) in TERMINAL_EVENT_TYPES:
                    return
