"""`WebhookSender`: claims due messages from the outbox with a lease, posts them signed, stores each outcome.

An attempt has WEBHOOK_TIMEOUT_SECONDS in all (a deadline, not httpx's per-read timeout, which an answer
dripping in byte by byte never trips), and the lease outlives it, so no message is sent twice at once. A
receiver has at most MAX_PER_RECEIVER of the MAX_IN_FLIGHT attempts, so a slow one delays only its own
messages. Outcomes and retries: docs/webhooks.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

import httpx
from standardwebhooks import Webhook

from delivery_service.observability.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_LATENCY, WEBHOOK_MESSAGES, WEBHOOK_OUTBOX
from delivery_service.settings import Settings
from delivery_service.store.outbox import AttemptOutcome, ClaimedMessage, ReceiverRoom, receiver
from delivery_service.webhooks.addresses import AllowList, WebhookUrlRefused, connect_address
from delivery_service.webhooks.async_outbox import AsyncOutbox

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.2  # how often an idle sender looks for due messages
MAX_IN_FLIGHT = 32  # messages posted at once by one sender
MAX_PER_RECEIVER = MAX_IN_FLIGHT // 4  # of which to one receiver (host and port)
LEASE_MARGIN_SECONDS = 10.0  # a claim outlives the attempt's deadline by this much (time to record its outcome)
MAX_RETRY_DELAY_SECONDS = 3600.0  # a longer backoff or Retry-After is cut to this
USER_AGENT = "multi-agent-delivery-webhooks/1"


class WebhookSender:
    """Delivers the outbox's messages until stopped; see the module docstring."""

    def __init__(self, outbox: AsyncOutbox, settings: Settings) -> None:
        assert settings.webhook_secret is not None, "webhooks are off without WEBHOOK_SECRET"
        self.outbox = outbox
        self._settings = settings
        self._signer = Webhook(settings.webhook_secret.get_secret_value())
        self._allowed = AllowList.of(settings)
        self._deadline = settings.webhook_timeout_seconds
        self._lease = self._deadline + LEASE_MARGIN_SECONDS
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._in_flight: dict[asyncio.Task[None], str] = {}  # attempt: its receiver
        self._receivers: Counter[str] = Counter()  # receiver: attempts in flight
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="webhook-sender")

    def wake(self) -> None:
        """Look for due messages now (new messages were stored, or a redelivery was queued)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; attempts in flight are abandoned (their leases run out and they are sent again)."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for attempt in list(self._in_flight):
            attempt.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # before claiming: a wake-up during the claim is not lost
            try:
                await self._claim_and_send()
            except Exception:  # the store or Redis failed: say so, keep going
                logger.exception("webhook sender could not read the outbox; trying again")
                await asyncio.sleep(POLL_SECONDS * 10)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=POLL_SECONDS)

    async def _claim_and_send(self) -> None:
        free = MAX_IN_FLIGHT - len(self._in_flight)
        if free > 0:
            room = ReceiverRoom(free, MAX_PER_RECEIVER, dict(self._receivers))
            for message in await self.outbox.claim_due(time.time(), self._lease, room):
                attempt = asyncio.create_task(self._deliver(message))
                self._in_flight[attempt] = receiver(message.url)
                self._receivers[self._in_flight[attempt]] += 1
                attempt.add_done_callback(self._attempt_done)
        WEBHOOK_OUTBOX.set(await self.outbox.pending())

    def _attempt_done(self, attempt: asyncio.Task[None]) -> None:
        """A slot is free: claim again now rather than at the next poll."""
        self._receivers -= Counter({self._in_flight.pop(attempt): 1})  # drops receivers with none left
        self._wake.set()

    async def _deliver(self, message: ClaimedMessage) -> None:
        outcome = await self._attempt(message)
        try:
            await self.outbox.record_attempt(message, outcome, time.time())
        except Exception:  # the lease runs out and the message is sent again: at least once
            logger.exception("could not record webhook attempt %s", message.webhook_id)
            return
        if outcome.status != "pending":
            WEBHOOK_MESSAGES.labels(message.type, outcome.status).inc()
        if outcome.status == "delivered":
            WEBHOOK_LATENCY.observe(max(time.time() - message.created_at, 0.0))

    async def _attempt(self, message: ClaimedMessage) -> AttemptOutcome:
        """One POST of `message` to the address its host resolved to (checked), and what it led to."""
        try:
            async with asyncio.timeout(self._deadline):
                code, headers = await self._post(message)
        except WebhookUrlRefused as exc:
            WEBHOOK_ATTEMPTS.labels("refused_address").inc()
            return AttemptOutcome("failed", None, str(exc))
        except TimeoutError:  # before OSError, which it is
            WEBHOOK_ATTEMPTS.labels("timeout").inc()
            error = f"The receiver did not answer within {self._deadline:g} s (WEBHOOK_TIMEOUT_SECONDS, for the whole attempt)."
            return self._retry(message, None, error, None)
        except OSError as exc:
            WEBHOOK_ATTEMPTS.labels("connection_error").inc()
            return self._retry(message, None, f"Could not resolve the webhook host: {exc}.", None)
        except httpx.TransportError as exc:
            WEBHOOK_ATTEMPTS.labels("connection_error").inc()
            return self._retry(message, None, f"Could not reach the receiver: {exc or type(exc).__name__}.", None)
        WEBHOOK_ATTEMPTS.labels(str(code) if code in (410, 429) else f"{code // 100}xx").inc()
        if 200 <= code < 300:
            return AttemptOutcome("delivered", code, None)
        if code == 410:
            error = "The receiver answered 410 Gone: no more messages of this task are sent to this URL."
            return AttemptOutcome("failed", code, error, stop_url=True)
        if code == 429 or code >= 500:
            return self._retry(
                message, code, f"The receiver answered {code}.", _retry_after(headers.get("retry-after"))
            )
        if 300 <= code < 400:
            return AttemptOutcome(
                "failed",
                code,
                f"The receiver answered {code}, a redirect to {headers.get('location', '')[:200]!r}; "
                "webhooks do not follow redirects: give the final URL.",
            )
        return AttemptOutcome(
            "failed", code, f"The receiver answered {code}; answers 4xx other than 410 and 429 are not retried."
        )

    async def _post(self, message: ClaimedMessage) -> tuple[int, httpx.Headers]:
        """Resolve and check the host, post the signed message to the checked address: the answer's status
        and headers (its body is not read; the connection is closed)."""
        host, address = await connect_address(message.url, self._allowed)
        now = datetime.now(tz=timezone.utc)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": urlsplit(message.url).netloc,
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(message.webhook_id, now, message.body),
        }
        async with self._client.stream(
            "POST",
            _at_address(message.url, address),
            content=message.body.encode(),
            headers=headers,
            timeout=None,  # the attempt's deadline bounds it all
            extensions={"sni_hostname": host},
        ) as response:
            return response.status_code, response.headers

    def _retry(
        self, message: ClaimedMessage, code: int | None, error: str, retry_after: float | None
    ) -> AttemptOutcome:
        """Pending again after a backoff, or failed once WEBHOOK_MAX_ATTEMPTS attempts are spent."""
        made = message.attempts + 1 - message.attempts_base
        limit = self._settings.webhook_max_attempts
        if made >= limit:
            return AttemptOutcome(
                "failed", code, f"{error} Gave up after {made} attempts (WEBHOOK_MAX_ATTEMPTS={limit})."
            )
        if retry_after is None:
            retry_after = self._settings.webhook_retry_base_seconds * 2 ** (made - 1) * random.uniform(0.8, 1.2)
        return AttemptOutcome(
            "pending", code, error, next_attempt_at=time.time() + min(retry_after, MAX_RETRY_DELAY_SECONDS)
        )


def _at_address(url: str, address: str) -> str:
    """`url` with its host replaced by the checked address (the Host header and SNI keep the name)."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(tz=timezone.utc)).total_seconds(), 0.0) if when.tzinfo else None
