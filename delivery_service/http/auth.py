"""API keys (off unless API_KEYS is set), task ownership and per-task stream tokens.

A caller is known by a *key id*: the first 16 hex digits of the key's SHA-256, safe to store and log;
the key itself is never kept or logged. A task belongs to the key id that created it, and other keys
see it as not found. Because a browser's EventSource cannot send headers, the owner also receives a
`stream_token` per task: an HMAC of the task id under the owner's key, so it opens that task's stream
only, stays valid across restarts, and dies with the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from fastapi import HTTPException, Request

from delivery_service.settings import Settings


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def stream_token(key: str, task_id: str) -> str:
    return hmac.new(key.encode(), task_id.encode(), hashlib.sha256).hexdigest()


# An API_KEYS entry `name:key` gives the key a name (for the record: a waiver's `by`); `key` alone has none.
_NAMED = re.compile(r"^([A-Za-z0-9_.@-]{1,64}):(.+)$")


@dataclass(frozen=True)
class Caller:
    """Who is calling: `owner` is their key id, or None when authentication is off; `name` the key's name."""

    owner: str | None
    key: str | None
    name: str | None = None

    def token_for(self, task_id: str) -> str | None:
        return stream_token(self.key, task_id) if self.key else None


ANONYMOUS = Caller(owner=None, key=None)


class ApiKeys:
    """The configured keys; compares what callers send in constant time."""

    def __init__(self, settings: Settings) -> None:
        raw = settings.api_keys.get_secret_value() if settings.api_keys else ""
        self._names: dict[str, str | None] = {}
        for entry in filter(None, (entry.strip() for entry in raw.split(","))):
            named = _NAMED.match(entry)
            self._names[named.group(2) if named else entry] = named.group(1) if named else None
        self._keys = list(self._names)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def _matching(self, presented: str) -> str | None:
        found = None
        for key in self._keys:
            if hmac.compare_digest(key.encode(), presented.encode()):
                found = key
        return found

    def caller(self, request: Request) -> Caller:
        """The caller of an /api request: 401 unless it carries a valid `Authorization: Bearer` key."""
        if not self.enabled:
            return ANONYMOUS
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        key = self._matching(presented.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            raise HTTPException(
                status_code=401,
                detail="Send a valid API key as 'Authorization: Bearer <key>' (authentication is on: API_KEYS).",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return self._caller(key)

    def _caller(self, key: str) -> Caller:
        return Caller(owner=key_id(key), key=key, name=self._names[key])

    def stream_caller(self, request: Request, task_id: str, token: str | None) -> Caller:
        """The caller of a stream: a Bearer key, or a `?token=` issued for this very task."""
        if not self.enabled or token is None:
            return self.caller(request)
        for key in self._keys:
            if hmac.compare_digest(stream_token(key, task_id).encode(), token.encode()):
                return self._caller(key)
        raise HTTPException(
            status_code=401,
            detail="This stream token is not valid for this task. Use the stream_token returned when the task started.",
            headers={"WWW-Authenticate": "Bearer"},
        )
