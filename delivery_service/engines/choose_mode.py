"""`build_engine`: the one place that knows the service has two modes, and picks one from the settings."""

from __future__ import annotations

from delivery_service.engines.cluster import cluster_engine
from delivery_service.engines.embedded import embedded_engine
from delivery_service.engines.task_engine import TaskEngine
from delivery_service.runs.task_runner import TaskRunner
from delivery_service.settings import Settings


async def build_engine(settings: Settings, runner_class: type[TaskRunner] | None = None) -> TaskEngine:
    """The cluster engine with REDIS_URL, else the embedded one (whose runner `runner_class` may replace,
    as bench/event_pump_app.py does). Raises StoreUnavailable when the store cannot be opened."""
    if settings.cluster():
        return await cluster_engine(settings)
    return await embedded_engine(settings, runner_class or TaskRunner)
