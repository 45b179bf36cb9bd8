"""Retries of model requests that failed for a passing reason, each one announced to the task.

The openai SDK retries silently, so its retries are off (and CrewAI's, see `crewai_runtime`): a
connection error, a timeout before the answer starts, or HTTP 408/429/5xx is retried here after an
exponential backoff (or the server's Retry-After), up to LLM_MAX_RETRIES times, `on_retry` told first
(the task's stream shows an `action`). A task that ends while waiting stops waiting.
"""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from functools import cache

import httpx

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError)
MAX_DELAY_SECONDS = 60.0


@cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context (certifi's roots) for every model client: building one costs ~18 ms of CPU, and
    each crew builds its own clients."""
    return httpx.create_ssl_context()


class TaskEnded(Exception):
    """The task ended (cancelled, timed out, server stopping) while a request waited to be retried."""


@dataclass(frozen=True)
class Retry:
    """One coming retry: which one, of how many, why, and after how long."""

    attempt: int
    max_retries: int
    reason: str
    delay_seconds: float


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The server's requested wait: `Retry-After` (seconds or an HTTP date) or `retry-after-ms`."""
    milliseconds = response.headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


class RetryingTransport(httpx.BaseTransport):
    """An httpx transport that retries transient failures; see the module docstring."""

    def __init__(
        self,
        *,
        max_retries: int,
        base_delay_seconds: float,
        on_retry: Callable[[Retry], None],
        ended: threading.Event,
        wrapped: httpx.BaseTransport | None = None,
    ) -> None:
        self._max_retries = max_retries
        self._base_delay = base_delay_seconds
        self._on_retry = on_retry
        self._ended = ended
        self._wrapped = wrapped or httpx.HTTPTransport(verify=shared_ssl_context())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            server_delay: float | None = None
            try:
                response = self._wrapped.handle_request(request)
            except TRANSIENT_ERRORS as exc:
                if attempt >= self._max_retries:
                    raise
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code not in TRANSIENT_STATUSES or attempt >= self._max_retries:
                    return response
                reason = f"HTTP {response.status_code}"
                server_delay = retry_after_seconds(response)
                response.close()
            attempt += 1
            backoff = self._base_delay * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)
            delay = min(server_delay if server_delay is not None else backoff, MAX_DELAY_SECONDS)
            self._on_retry(Retry(attempt, self._max_retries, reason, delay))
            if self._ended.wait(delay):
                raise TaskEnded("the task ended while a model request waited to be retried")

    def close(self) -> None:
        self._wrapped.close()
