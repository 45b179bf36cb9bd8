"""The webhook outbox of `SqliteTaskStore` (and `MemoryTaskStore`): its tables and queries.

Messages are inserted by `SqliteTaskStore.save` in the transaction of their events. A sender claims due
messages by moving their `next_attempt_at` past its lease, in one write transaction, so a message is
never sent twice at once; one that a dead process had claimed is due again when the lease runs out. A
claim takes the earliest due messages whose receivers have room (`outbox.ReceiverRoom`) and leaves the
others due, so a busy receiver's messages wait without holding up anyone else's.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from delivery_service.store.outbox import (
    STOPPED_URL_ERROR,
    AttemptOutcome,
    ClaimedMessage,
    Delivery,
    OutboxMessage,
    ReceiverRoom,
    Redelivery,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhook_messages (
    webhook_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    type TEXT NOT NULL,
    url TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    attempts_base INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    last_error TEXT,
    next_attempt_at REAL,
    claim TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_messages_due ON webhook_messages (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_messages_by_task ON webhook_messages (task_id, sequence);
CREATE TABLE IF NOT EXISTS webhook_stopped_urls (
    task_id TEXT NOT NULL,
    url TEXT NOT NULL,
    PRIMARY KEY (task_id, url)
) WITHOUT ROWID;
"""

TABLES = ("webhook_messages", "webhook_stopped_urls")  # both keyed by task_id, purged with their task

_COLUMNS = "webhook_id, task_id, sequence, type, url, body, created_at, attempts, attempts_base"


def insert(connection: sqlite3.Connection, messages: Sequence[OutboxMessage]) -> None:
    """Store new messages, due now (in the transaction of their events)."""
    now = time.time()
    connection.executemany(
        "INSERT OR IGNORE INTO webhook_messages (webhook_id, task_id, sequence, type, url, body, created_at, "
        "next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(m.webhook_id, m.task_id, m.sequence, m.type, m.url, m.body, now, now) for m in messages],
    )


class SqliteOutbox:
    """The outbox over the store's connections (`transaction` and `read` are the store's); blocking: call off
    the event loop."""

    def __init__(
        self,
        transaction: Callable[[str], AbstractContextManager[sqlite3.Connection]],
        read: Callable[..., list[sqlite3.Row]],
    ) -> None:
        self._transaction = transaction
        self._read = read

    def claim_due(self, now: float, lease_seconds: float, room: ReceiverRoom) -> list[ClaimedMessage]:
        """The earliest pending messages due by `now` that `room` takes, leased to the caller; messages to a
        stopped URL fail."""
        due = "status = 'pending' AND next_attempt_at <= ?"
        if not self._read(f"SELECT 1 FROM webhook_messages WHERE {due} LIMIT 1", (now,)):
            return []  # the usual case: no write transaction at all
        claim = uuid.uuid4().hex
        with self._transaction("claim webhook messages in") as writer:
            writer.execute(
                "UPDATE webhook_messages SET status = 'failed', last_error = ?, next_attempt_at = NULL "
                f"WHERE {due} AND EXISTS (SELECT 1 FROM webhook_stopped_urls s "
                "WHERE s.task_id = webhook_messages.task_id AND s.url = webhook_messages.url)",
                (STOPPED_URL_ERROR, now),
            )
            # Row by row, past the messages of receivers without room, until the claim is full.
            query = f"SELECT {_COLUMNS} FROM webhook_messages WHERE {due} ORDER BY next_attempt_at, webhook_id"
            with contextlib.closing(writer.execute(query, (now,))) as due_rows:
                rows = list(itertools.islice((row for row in due_rows if room.take(row["url"])), room.limit))
            writer.executemany(
                "UPDATE webhook_messages SET next_attempt_at = ?, claim = ? WHERE webhook_id = ?",
                [(now + lease_seconds, claim, row["webhook_id"]) for row in rows],
            )
        return [ClaimedMessage(**dict(row), claim=claim) for row in rows]

    def record_attempt(self, message: ClaimedMessage, outcome: AttemptOutcome, now: float) -> None:
        """Store an attempt's outcome (ignored if the claim is no longer the caller's)."""
        with self._transaction("record a webhook attempt in") as writer:
            writer.execute(
                "UPDATE webhook_messages SET status = ?, attempts = attempts + ?, last_status_code = ?, last_error = ?, "
                "next_attempt_at = ?, claim = NULL WHERE webhook_id = ? AND claim = ?",
                (
                    outcome.status,
                    int(outcome.attempted),
                    outcome.status_code,
                    outcome.error,
                    outcome.next_attempt_at,
                    message.webhook_id,
                    message.claim,
                ),
            )
            if outcome.stop_url:
                writer.execute(
                    "INSERT OR IGNORE INTO webhook_stopped_urls (task_id, url) VALUES (?, ?)",
                    (message.task_id, message.url),
                )

    def deliveries(self, task_id: str) -> list[Delivery]:
        rows = self._read(
            "SELECT webhook_id, type, url, status, attempts, last_status_code, last_error, next_attempt_at, created_at "
            "FROM webhook_messages WHERE task_id = ? ORDER BY sequence, webhook_id",
            (task_id,),
        )
        return [Delivery(**dict(row)) for row in rows]

    def redeliver(self, task_id: str, webhook_id: str, now: float) -> Redelivery:
        """Send a delivered or failed message again, with a fresh retry budget."""
        with self._transaction("queue a webhook redelivery in") as writer:
            row = writer.execute(
                "SELECT status, url FROM webhook_messages WHERE task_id = ? AND webhook_id = ?", (task_id, webhook_id)
            ).fetchone()
            if row is None:
                return Redelivery.UNKNOWN
            if row["status"] == "pending":
                return Redelivery.PENDING
            writer.execute(
                "UPDATE webhook_messages SET status = 'pending', attempts_base = attempts, next_attempt_at = ? "
                "WHERE webhook_id = ?",
                (now, webhook_id),
            )
            writer.execute("DELETE FROM webhook_stopped_urls WHERE task_id = ? AND url = ?", (task_id, row["url"]))
        return Redelivery.QUEUED

    def pending(self) -> int:
        return int(self._read("SELECT COUNT(*) AS n FROM webhook_messages WHERE status = 'pending'")[0]["n"])
