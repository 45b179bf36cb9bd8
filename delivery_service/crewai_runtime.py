"""Prepare the process for CrewAI, then import it once.

CrewAI must be configured through environment variables *before* its first import: otherwise it
starts a telemetry thread that hangs process exit when there is no network, asks an interactive
tracing question on the first kickoff, and writes state under an unwritable HOME. Every module that
needs CrewAI imports it through this module so the order is guaranteed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from delivery_service.settings import get_settings

_CREWAI_ENV_DEFAULTS = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
    "CREWAI_DISABLE_VERSION_CHECK": "true",
}


def _prepare_environment() -> None:
    for name, value in _CREWAI_ENV_DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("CREWAI_STORAGE_DIR", get_settings().crewai_storage_dir)
    home = Path(os.environ.get("HOME") or "/tmp")
    if not os.access(home, os.W_OK):
        os.environ["HOME"] = "/tmp"


_prepare_environment()

import crewai  # noqa: E402  (must follow the environment set-up above)
from crewai_core.lock_store import set_lock_backend  # noqa: E402

_named_locks: dict[str, threading.Lock] = {}
_named_locks_guard = threading.Lock()


@contextmanager
def _in_process_lock(name: str, *, timeout: float) -> Iterator[None]:
    """CrewAI's named locks, held in memory instead of as files under $TMPDIR.

    CrewAI guards its task-output SQLite file with a file lock; concurrent crews in one process
    serialise on it (10 crews: 2.6 s instead of 0.4 s). One process owns the file here, so an
    in-process lock gives the same safety without the file-system round trips.
    """
    with _named_locks_guard:
        lock = _named_locks.setdefault(name, threading.Lock())
    if not lock.acquire(timeout=timeout):
        raise TimeoutError(f"could not acquire CrewAI lock {name!r} within {timeout} s")
    try:
        yield
    finally:
        lock.release()


set_lock_backend(_in_process_lock)


@contextmanager
def without_crewai_retries() -> Iterator[None]:
    """Run a crew without CrewAI's own silent retries of rate-limited model calls.

    The service retries model requests itself, visibly and up to LLM_MAX_RETRIES (`llm_retry`);
    CrewAI's extra attempts on a 429 would multiply them. CrewAI skips its retry loop when this
    (private, version-pinned) flag is set in the context, which it copies into its helper threads.
    """
    from crewai.llms.retry import _active_llm_rate_limit_retry

    token = _active_llm_rate_limit_retry.set(True)
    try:
        yield
    finally:
        _active_llm_rate_limit_retry.reset(token)


# CrewAI warns on every call to a model without a native token counter (DashScope, local, fake) that
# it estimates input tokens; that is expected here and would bury the service's own log lines.
logging.getLogger("crewai.llms.base_llm").setLevel(logging.ERROR)

__all__ = ["crewai"]
