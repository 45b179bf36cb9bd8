"""The command-line client's view of the service: its HTTP API over httpx, and a task's stream followed
to its end across dropped connections and restarts of the service."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

from delivery_service.event_types import ENDING_STATUS

RECONNECT_SECONDS = 300.0  # how long `follow` keeps trying to reach a service that went away
STREAM_READ_TIMEOUT_SECONDS = 60.0  # the service pings idle streams every HEARTBEAT_SECONDS (15)
TASKS_PER_PAGE = 100  # the most GET /api/tasks gives at once


class CannotConnect(RuntimeError):
    """The service did not answer at its URL."""


class NoSuchTask(LookupError):
    """None of the caller's tasks has the id (or id prefix) given."""


class ServiceRefused(RuntimeError):
    """The service answered with an error; the message is its own explanation."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class ServiceClient:
    """The API of one service, as a key (or nobody) sees it."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(30.0, read=STREAM_READ_TIMEOUT_SECONDS)
        )

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self._answer(self._request("GET", path, params=params))

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._answer(self._request("POST", path, json=body or {}))

    def task_ids_starting_with(self, prefix: str) -> list[str]:
        """The ids of the caller's tasks that start with `prefix`, newest first (every page of /api/tasks)."""
        found: list[str] = []
        offset, total = 0, 1
        while offset < total:
            page = self.get("/api/tasks", limit=TASKS_PER_PAGE, offset=offset)
            found += [task["task_id"] for task in page["tasks"] if task["task_id"].startswith(prefix)]
            offset, total = offset + TASKS_PER_PAGE, page["total"]
        return found

    def text(self, path: str, **params: Any) -> str:
        response = self._request("GET", path, params=params)
        if response.is_error:
            self._answer(response)
        return response.text

    def _request(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **options)
        except httpx.TransportError as exc:
            raise CannotConnect(
                f"Cannot reach the service at {self.url}: {exc}. Is it running? (--url / SERVICE_URL)"
            ) from exc

    @staticmethod
    def _answer(response: httpx.Response) -> Any:
        if not response.is_error:
            return response.json()
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:500]
        if isinstance(detail, list):  # a 422: one message per field
            detail = " ".join(str(error.get("msg")) for error in detail)
        raise ServiceRefused(response.status_code, f"{response.status_code}: {detail or response.reason_phrase}")

    def follow(
        self, task_id: str, after: int = 0, on_reconnect: Callable[[str], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The task's events after sequence `after`, until its terminal event.

        A dropped connection or a restarted service is retried for up to RECONNECT_SECONDS, resuming
        with `Last-Event-ID`: each event is yielded once, in order, none skipped.
        """
        last, delay, lost_since = after, 0.5, None
        while True:
            headers = {"Last-Event-ID": str(last)} if last else {}
            try:
                with connect_sse(self._http, "GET", f"/api/stream/{task_id}", headers=headers) as source:
                    if source.response.is_error:
                        source.response.read()
                        self._answer(source.response)
                    for sse in source.iter_sse():
                        if not sse.data:
                            continue  # a heartbeat comment
                        event = json.loads(sse.data)
                        if event["sequence"] <= last:
                            continue
                        last, delay, lost_since = event["sequence"], 0.5, None
                        yield event
                        if event["event_type"] in ENDING_STATUS:
                            return
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
            else:
                reason = "the stream closed before the task ended"
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > RECONNECT_SECONDS:
                raise CannotConnect(f"Lost the service at {self.url} for {RECONNECT_SECONDS:g} s ({reason}).")
            if on_reconnect is not None:
                on_reconnect(f"connection lost ({reason}); resuming after event {last}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
