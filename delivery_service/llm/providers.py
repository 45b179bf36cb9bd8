"""Builds the CrewAI LLM a task runs on, from the settings (LLM_PROVIDER and friends).

A fresh instance per task: CrewAI counts token usage per instance, and its `RetryingTransport` reports
retries to that task's stream.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from crewai.llms.providers.openai.completion import OpenAICompletion

from delivery_service.crewai_runtime import crewai  # noqa: F401  (CrewAI must be prepared before its submodules)
from delivery_service.llm.embedded_model import LOCAL_MODEL_ALIAS, local_model_server
from delivery_service.llm.fake import ScriptedLLM
from delivery_service.llm.retry import RetryingTransport, shared_ssl_context
from delivery_service.llm.skeleton import SkeletonLLM
from delivery_service.prompts import PromptStyle
from delivery_service.settings import ResolvedProvider, Settings

LOCAL_MODEL_NOTE = (
    "The embedded SmolLM2-135M model demonstrates the pipeline end to end without a key; its deliverables are "
    "not real analysis. Set DASHSCOPE_API_KEY (Qwen) or LLM_BASE_URL/LLM_API_KEY/LLM_MODEL for real deliverables."
)
FAKE_MODEL_NOTE = "The scripted `fake` model is for tests and benchmarks: its deliverables are fixed text."


@dataclass(frozen=True)
class ModelInfo:
    """What a task runs on: shown in /healthz and in each task's `start` event."""

    provider: ResolvedProvider
    model: str
    endpoint: str | None
    prompt_style: PromptStyle
    note: str | None

    def public(self) -> dict[str, Any]:
        """A secret-free description for clients."""
        return asdict(self)


def _public_endpoint(base_url: str) -> str:
    """The endpoint without credentials, path or query: scheme://host[:port]."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def model_info(settings: Settings) -> ModelInfo:
    """Describe the configured model without starting or calling it."""
    provider = settings.resolved_provider()
    if provider == "dashscope":
        return ModelInfo(
            provider, settings.dashscope_model, _public_endpoint(settings.dashscope_base_url), "full", None
        )
    if provider == "openai":
        endpoint = _public_endpoint(settings.llm_base_url) if settings.llm_base_url else "https://api.openai.com"
        return ModelInfo(provider, settings.llm_model, endpoint, "full", None)
    if provider == "local":
        return ModelInfo(provider, LOCAL_MODEL_ALIAS, "embedded", "compact", LOCAL_MODEL_NOTE)
    return ModelInfo(provider, "scripted", None, "full", FAKE_MODEL_NOTE)


class RetryingOpenAICompletion(OpenAICompletion):
    """CrewAI's native OpenAI provider, sending its requests through a RetryingTransport."""

    retry_transport: Any = None

    def _build_sync_client(self) -> Any:
        http_client = httpx.Client(transport=self.retry_transport, timeout=self.timeout)
        return openai.OpenAI(**self._get_client_params() | {"max_retries": 0, "http_client": http_client})

    def _build_async_client(self) -> Any:
        """CrewAI builds it with every LLM although crews here run synchronously: make it cheap."""
        http_client = httpx.AsyncClient(verify=shared_ssl_context(), timeout=self.timeout)
        return openai.AsyncOpenAI(**self._get_client_params() | {"max_retries": 0, "http_client": http_client})


def build_llm(settings: Settings, requirement: str, retries: RetryingTransport) -> Any:
    """A new LLM for one task, its requests retried through `retries` (blocks while the embedded model
    starts: call off the event loop)."""
    provider = settings.resolved_provider()
    if provider == "fake":
        return ScriptedLLM(model="scripted", chunk_delay_seconds=settings.fake_llm_delay_ms / 1000)
    http_client = httpx.Client(transport=retries, timeout=settings.llm_timeout_seconds)
    if provider == "local":
        return SkeletonLLM(
            model=LOCAL_MODEL_ALIAS,
            base_url=local_model_server.endpoint(settings).base_url,
            api_key="embedded",
            requirement=requirement,
            http_client=http_client,
        )
    if provider == "dashscope":
        key = settings.dashscope_api_key.get_secret_value() if settings.dashscope_api_key else ""
        model, base_url = settings.dashscope_model, settings.dashscope_base_url
    else:
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
        model, base_url = settings.llm_model, settings.llm_base_url
    return RetryingOpenAICompletion(
        model=model,
        base_url=base_url,
        api_key=key,
        stream=True,
        timeout=settings.llm_timeout_seconds,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
        retry_transport=retries,
    )
