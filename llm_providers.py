"""Builds the CrewAI LLM a task runs on, from the settings (LLM_PROVIDER and friends).

Every provider but `fake` goes through CrewAI's native OpenAI provider and the openai SDK:
DashScope's compatible mode, any OpenAI-compatible endpoint, and the embedded model, which
serves the same protocol on loopback. A fresh LLM instance is built per task, because CrewAI
counts token usage per instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agents_config import PromptStyle
from crewai_runtime import crewai
from fake_llm import ScriptedLLM
from local_model import LOCAL_MODEL_ALIAS, local_model_server
from skeleton_llm import SkeletonLLM
from settings import ResolvedProvider, Settings

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
        return {
            "provider": self.provider,
            "model": self.model,
            "endpoint": self.endpoint,
            "prompt_style": self.prompt_style,
            "note": self.note,
        }


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
        return ModelInfo(provider, settings.dashscope_model, _public_endpoint(settings.dashscope_base_url), "full", None)
    if provider == "openai":
        endpoint = _public_endpoint(settings.llm_base_url) if settings.llm_base_url else "https://api.openai.com"
        return ModelInfo(provider, settings.llm_model, endpoint, "full", None)
    if provider == "local":
        return ModelInfo(provider, LOCAL_MODEL_ALIAS, "embedded", "compact", LOCAL_MODEL_NOTE)
    return ModelInfo(provider, "scripted", None, "full", FAKE_MODEL_NOTE)


def _openai_compatible_llm(settings: Settings, *, model: str, base_url: str | None, api_key: str) -> crewai.LLM:
    return crewai.LLM(
        model=f"openai/{model}",
        base_url=base_url,
        api_key=api_key,
        stream=True,
        timeout=settings.llm_timeout_seconds,
        max_retries=settings.llm_max_retries,
        max_tokens=settings.llm_max_tokens,
        temperature=settings.llm_temperature,
    )


def build_llm(settings: Settings, requirement: str) -> Any:
    """A new LLM instance for one task (blocking for the local model's first start: call off the loop)."""
    provider = settings.resolved_provider()
    if provider == "fake":
        return ScriptedLLM(model="scripted", chunk_delay_seconds=settings.fake_llm_delay_ms / 1000)
    if provider == "local":
        endpoint = local_model_server.endpoint(settings)
        return SkeletonLLM(
            model=LOCAL_MODEL_ALIAS,
            base_url=endpoint.base_url,
            api_key="embedded",
            requirement=requirement,
            timeout=settings.llm_timeout_seconds,
            max_retries=settings.llm_max_retries,
        )
    if provider == "dashscope":
        key = settings.dashscope_api_key.get_secret_value() if settings.dashscope_api_key else ""
        return _openai_compatible_llm(
            settings,
            model=settings.dashscope_model,
            base_url=settings.dashscope_base_url,
            api_key=key,
        )
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
    return _openai_compatible_llm(settings, model=settings.llm_model, base_url=settings.llm_base_url, api_key=key)
