"""Prometheus metrics (prometheus-client), served as text at GET /metrics.

Counters move where things happen: tasks and events when stored events become visible to this
process's subscribers (`record_delivered`), model calls in the crew's event handler, HTTP requests in
`HttpMetrics` (to the first byte, so an hour-long stream counts as its start). Gauges of the present
(tasks by status, the waiting line, workers, subscribers) are set when /metrics is scraped.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import Message, Scope

from delivery_service.event_types import EVENT_FACTS, TERMINAL_EVENT_TYPES, EventType
from delivery_service.observability.asgi_hooks import ResponseStartMiddleware

registry = CollectorRegistry()

TASKS_STARTED = Counter("delivery_tasks_started_total", "Tasks whose crew began running", registry=registry)
TASKS_FINISHED = Counter(
    "delivery_tasks_finished_total", "Tasks that ended, by outcome", ["outcome"], registry=registry
)
EVENTS = Counter("delivery_events_total", "Events stored and delivered, by type", ["event_type"], registry=registry)
STORE_LAG = Histogram(
    "delivery_event_visible_seconds",
    "From an event's creation to its being stored and visible to subscribers",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=registry,
)
LLM_CALLS = Counter(
    "delivery_llm_calls_total", "Model calls, by outcome", ["provider", "model", "outcome"], registry=registry
)
LLM_TOKENS = Counter(
    "delivery_llm_tokens_total", "Model tokens, by kind", ["provider", "model", "kind"], registry=registry
)
LLM_SECONDS = Histogram(
    "delivery_llm_call_seconds",
    "Model call duration",
    ["provider", "model"],
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=registry,
)
HTTP_SECONDS = Histogram(
    "delivery_http_response_start_seconds",
    "Time to the first byte of the response, by route",
    ["method", "route", "status"],
    registry=registry,
)
TASKS_LIVE = Gauge("delivery_tasks", "Tasks not yet ended, by status", ["status"], registry=registry)
QUEUE_DEPTH = Gauge("delivery_queue_depth", "Tasks waiting for a worker", registry=registry)
WORKERS_BUSY = Gauge("delivery_workers_busy", "Worker slots running a crew", registry=registry)
WORKERS = Gauge("delivery_workers", "Worker slots (MAX_CONCURRENT_TASKS)", registry=registry)
SUBSCRIBERS = Gauge("delivery_subscribers", "Open event streams", registry=registry)
WEBHOOK_MESSAGES = Counter(
    "delivery_webhook_messages_total",
    "Webhook messages settled, by type and outcome (delivered, failed)",
    ["type", "outcome"],
    registry=registry,
)
WEBHOOK_ATTEMPTS = Counter(
    "delivery_webhook_attempts_total",
    "Webhook requests, by result (2xx, 3xx, 410, 429, 4xx, 5xx, timeout, connection_error, refused_address)",
    ["result"],
    registry=registry,
)
WEBHOOK_LATENCY = Histogram(
    "delivery_webhook_delivery_seconds",
    "From a webhook message's creation to its delivery (retries included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
    registry=registry,
)
WEBHOOK_OUTBOX = Gauge(
    "delivery_webhook_outbox_messages", "Webhook messages waiting to be delivered", registry=registry
)


def record_delivered(events: Iterable[tuple[EventType, float]]) -> None:
    """Count stored events now visible, tasks started and ended, and each event's delay (`events`: its type
    and publishing time, in seconds since the epoch)."""
    now = time.time()
    by_type: collections.Counter[EventType] = collections.Counter()
    for event_type, published in events:
        by_type[event_type] += 1
        STORE_LAG.observe(max(now - published, 0.0))
    for event_type, count in by_type.items():
        EVENTS.labels(event_type.value).inc(count)
        if event_type is EventType.START:
            TASKS_STARTED.inc(count)
        elif event_type in TERMINAL_EVENT_TYPES:
            TASKS_FINISHED.labels(EVENT_FACTS[event_type].status).inc(count)


def record_llm_call(provider: str, model: str, outcome: str, seconds: float, usage: dict[str, object] | None) -> None:
    LLM_CALLS.labels(provider, model, outcome).inc()
    LLM_SECONDS.labels(provider, model).observe(seconds)
    for kind in ("prompt_tokens", "completion_tokens"):
        value = (usage or {}).get(kind)
        if isinstance(value, int):
            LLM_TOKENS.labels(provider, model, kind.removesuffix("_tokens")).inc(value)


def exposition(live_statuses: Iterable[str], queued: int, busy: int, workers: int, subscribers: int) -> bytes:
    """The metrics as Prometheus text, with the present-state gauges set first."""
    counts = collections.Counter(live_statuses)
    for status in ("queued", "running", "awaiting_confirmation"):
        TASKS_LIVE.labels(status).set(counts[status])
    QUEUE_DEPTH.set(queued)
    WORKERS_BUSY.set(busy)
    WORKERS.set(workers)
    SUBSCRIBERS.set(subscribers)
    return generate_latest(registry)


class HttpMetrics(ResponseStartMiddleware):
    """Time to the response's first byte, labelled by route template, not raw path."""

    def on_request(self, scope: Scope) -> float:
        return time.perf_counter()

    def on_response_start(self, scope: Scope, message: Message, started: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        HTTP_SECONDS.labels(scope["method"], route, str(message["status"])).observe(time.perf_counter() - started)
