"""Turns the exception that ended a crew into one message a user can act on.

The openai SDK's exceptions (which every provider here goes through) say what went wrong; this module
adds which setting to check. No message repeats a key, a full URL with credentials, or a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import openai

from delivery_service.llm.embedded_model import LocalModelUnavailable
from delivery_service.settings import Settings
from delivery_service.task_streams import StreamLimitExceeded


@dataclass(frozen=True)
class TaskFailure:
    """Why a task failed: a short machine-readable kind and a message for people."""

    kind: str
    message: str


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _setting(settings: Settings, name: str) -> str:
    """The setting `name` (API_KEY, MODEL, BASE_URL) of the provider in use."""
    return f"{'DASHSCOPE' if settings.resolved_provider() == 'dashscope' else 'LLM'}_{name}"


def _redact(text: str, settings: Settings) -> str:
    for secret in (settings.dashscope_api_key, settings.llm_api_key):
        if secret and secret.get_secret_value():
            text = text.replace(secret.get_secret_value(), "***")
    return text[:300]


def _describe_status(exc: openai.APIStatusError, settings: Settings, endpoint: str) -> TaskFailure:
    status = exc.status_code
    retries = settings.llm_max_retries
    if status in (401, 403):
        return TaskFailure(
            "llm_auth",
            f"The model provider at {endpoint} rejected the API key (HTTP {status}). Check {_setting(settings, 'API_KEY')} "
            "in your .env or environment, then restart the service and submit the task again.",
        )
    if status == 404:
        return TaskFailure(
            "llm_not_found",
            f"The model provider at {endpoint} answered 404: the model or the URL does not exist. Check "
            f"{_setting(settings, 'MODEL')} and {_setting(settings, 'BASE_URL')}, then submit the task again.",
        )
    if status == 429:
        return TaskFailure(
            "llm_rate_limited",
            f"The model provider at {endpoint} kept answering 429 (rate limit or quota exhausted) after {retries} "
            "retries. Wait a minute and submit the task again, or raise your quota with the provider.",
        )
    if status >= 500:
        return TaskFailure(
            "llm_server_error",
            f"The model provider at {endpoint} failed with HTTP {status} after {retries} retries. It is probably "
            "having trouble: submit the task again later, or check the endpoint's health.",
        )
    detail = _redact(str(getattr(exc, "message", "") or exc), settings)
    return TaskFailure(
        "llm_bad_request",
        f"The model provider at {endpoint} refused the request (HTTP {status}): {detail}. Check "
        f"{_setting(settings, 'MODEL')} and LLM_MAX_TOKENS for this model.",
    )


def describe_failure(exc: BaseException, settings: Settings, endpoint: str) -> TaskFailure:
    """The user-facing reason for `exc`, with the setting to check. `endpoint` is already secret-free."""
    for cause in _causes(exc):
        if isinstance(cause, openai.APITimeoutError):
            return TaskFailure(
                "llm_timeout",
                f"The model provider at {endpoint} did not answer within LLM_TIMEOUT_SECONDS="
                f"{settings.llm_timeout_seconds:g} s (after {settings.llm_max_retries} retries). Raise "
                "LLM_TIMEOUT_SECONDS for slow models, or check that the endpoint is up.",
            )
        if isinstance(cause, openai.APIConnectionError):
            return TaskFailure(
                "llm_unreachable",
                f"Could not connect to the model provider at {endpoint}. Check {_setting(settings, 'BASE_URL')} and that the "
                "server is running and reachable from this service, then submit the task again.",
            )
        if isinstance(cause, openai.APIStatusError):
            return _describe_status(cause, settings, endpoint)
        if isinstance(cause, httpx.TransportError):
            return TaskFailure(
                "llm_connection_lost",
                f"The connection to the model provider at {endpoint} broke while it was answering. The provider may "
                "have restarted or a proxy cut the stream: submit the task again; if it keeps happening, check the "
                "endpoint and any proxy between it and this service.",
            )
        if isinstance(cause, LocalModelUnavailable):
            return TaskFailure("local_model_unavailable", str(cause))
        if isinstance(cause, StreamLimitExceeded):
            return TaskFailure(
                "stream_limit",
                "The task produced more events than MAX_STREAM_BYTES_PER_TASK allows, so it was stopped. Raise "
                "that setting, or turn off stream_tokens for long runs.",
            )
    return TaskFailure(
        "crew_failed",
        f"The agents stopped with an unexpected {type(exc).__name__}: {_redact(str(exc), settings)}. Submit the "
        "task again; if it keeps failing, check the service log for this task id.",
    )
