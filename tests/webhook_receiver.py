"""A real HTTP webhook receiver on 127.0.0.1 for the tests, scripted per path.

Every request is kept (path, headers, body, whether its signature verified with the `standardwebhooks`
package). What a path answers is a list of responses, used in turn, the last one for ever:
`receiver.script("/flaky", 500, 500, 200)`. A response may be `(status, headers)`. A path can be
held (`hold`): its requests are kept, then wait for their answer until `release` (a slow receiver).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

from conftest import wait_until


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def webhook_settings(secret: str, **settings: str) -> dict[str, str]:
    """A service's settings to sign with `secret` and post to 127.0.0.1, retrying 50 ms after a failure."""
    return {
        "WEBHOOK_SECRET": secret,
        "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "WEBHOOK_RETRY_BASE_SECONDS": "0.05",
    } | settings


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class WebhookReceiver:
    secret: str
    port: int = 0  # 0: any free port
    received: list[Received] = field(default_factory=list)
    _scripts: dict[str, list[int | tuple[int, dict[str, str]]]] = field(default_factory=dict)
    _held: dict[str, threading.Event] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *responses: int | tuple[int, dict[str, str]]) -> None:
        self._scripts[path] = list(responses)

    def hold(self, path: str) -> None:
        self._held[path] = threading.Event()

    def release(self, path: str) -> None:
        self._held[path].set()

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [request for request in self.received if request.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 60) -> list[Received]:
        """The first `count` requests to `path`, once they have arrived."""
        wait_until(lambda: len(self.at(path)) >= count, timeout, f"{count} webhook requests to {path}")
        return self.at(path)[:count]

    def close(self) -> None:
        for event in self._held.values():
            event.set()
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        try:
            Webhook(self.secret).verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with self._lock:
            self.received.append(Received(path, headers, body, verified))
            responses = self._scripts.get(path, [200])
            response = responses.pop(0) if len(responses) > 1 else responses[0]
        return response if isinstance(response, tuple) else (response, {})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, headers = receiver._answer(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                held = receiver._held.get(self.path)
                if held is not None:
                    held.wait(timeout=120)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler


@dataclass
class DripReceiver:
    """Answers one header line every `interval` seconds, `lines` of them, never idle long enough for a
    per-read timeout; counts the attempts, the most open at once (from request to hang-up or full answer),
    and the webhook-ids of which two attempts were open at once (`twice`)."""

    interval: float = 0.5
    lines: int = 120
    attempts: int = 0
    most_open: int = 0
    twice: list[str] = field(default_factory=list)
    _open: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def open_now(self) -> int:
        with self._lock:
            return sum(self._open.values())

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shut_down(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _shut_down(self) -> None:
        self._server.close()
        for handler in asyncio.all_tasks() - {asyncio.current_task()}:
            handler.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")[1:]
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in head if line)
        }
        await reader.readexactly(int(headers.get("content-length", 0)))
        webhook_id = headers.get("webhook-id", "")
        with self._lock:
            self.attempts += 1
            if self._open[webhook_id]:
                self.twice.append(webhook_id)
            self._open[webhook_id] += 1
            self.most_open = max(self.most_open, sum(self._open.values()))
        hung_up = asyncio.ensure_future(reader.read())  # b"" once the sender closes the connection
        dripping = asyncio.ensure_future(self._drip(writer))
        try:
            await asyncio.wait({hung_up, dripping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hung_up.cancel()
            dripping.cancel()
            with self._lock:
                self._open[webhook_id] -= 1
            writer.close()

    async def _drip(self, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for line in range(self.lines):
            await asyncio.sleep(self.interval)  # the receiver's pace, not a wait for the test
            writer.write(f"x-drip-{line}: .\r\n".encode())
            await writer.drain()
        writer.write(b"content-length: 0\r\n\r\n")
        await writer.drain()
