"""Every setting of the service, from the environment, then `.env`; keep `.env.example` in step."""

from __future__ import annotations

import base64
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from limits import parse as parse_rate
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["auto", "dashscope", "openai", "local", "fake"]
ResolvedProvider = Literal["dashscope", "openai", "local", "fake"]

DASHSCOPE_BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"


class Settings(BaseSettings):
    """Service configuration. Field names map to upper-case environment variables.

    An empty variable means "not set" (the default applies): docker-compose.yml passes every setting
    through as `${NAME:-}`, and .env.example lists some with no value.
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True, hide_input_in_errors=True
    )

    # --- LLM provider -------------------------------------------------------------------------
    llm_provider: ProviderName = "auto"
    dashscope_api_key: SecretStr | None = None
    dashscope_model: str = "qwen-plus"
    dashscope_base_url: str = DASHSCOPE_BASE_URL
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_seconds: float = Field(default=120.0, gt=0)
    llm_max_retries: int = Field(default=2, ge=0, le=10)
    llm_retry_base_seconds: float = Field(default=1.0, ge=0)
    llm_max_tokens: int = Field(default=4096, ge=16)
    llm_temperature: float = Field(default=0.3, ge=0, le=2)

    # --- embedded local model (LLM_PROVIDER=local) ---------------------------------------------
    local_model_path: Path | None = None
    local_model_threads: int = Field(default=2, ge=1)
    local_model_slots: int = Field(default=2, ge=1)
    local_model_context: int = Field(default=8192, ge=512)

    # --- scripted model (LLM_PROVIDER=fake) ----------------------------------------------------
    fake_llm_delay_ms: float = Field(default=0.0, ge=0)

    # --- tasks and streams --------------------------------------------------------------------
    max_requirement_chars: int = Field(default=20000, ge=1)
    max_concurrent_tasks: int = Field(default=4, ge=1, le=64)
    max_queued_tasks: int = Field(default=100, ge=0)
    task_timeout_seconds: float = Field(default=900.0, gt=0)
    confirmation_timeout_seconds: float = Field(default=3600.0, gt=0)
    max_revisions: int = Field(default=3, ge=0)
    gate_min_coverage: float = Field(default=0.8, ge=0, le=1)  # below it, the release gate has concerns
    max_thread_revisions: int = Field(default=20, ge=1)
    delta_interval_ms: float = Field(default=50.0, ge=0)
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    stream_retention_seconds: float = Field(default=600.0, ge=0)
    stream_cleanup_interval_seconds: float = Field(default=60.0, gt=0)
    max_stream_bytes_per_task: int = Field(default=16 * 1024 * 1024, ge=64 * 1024)
    max_event_content_chars: int = Field(default=100_000, ge=256)
    crew_events_handler: str = "delivery_service.crew.event_handler:CrewEventsHandler"
    agent_plugins: str = ""  # comma-separated modules that register further agents (`delivery_service.agents`)
    crew_execution: Literal["thread", "process"] = "thread"
    crew_stop_grace_seconds: float = Field(default=5.0, ge=0)

    # --- storage and lifecycle ----------------------------------------------------------------
    task_store: Literal["sqlite", "memory"] = "sqlite"
    data_dir: Path = Path("data")
    task_retention_days: float = Field(default=7.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)

    # --- cluster (REDIS_URL set: events in Redis Streams, crews on Celery workers) -------------
    redis_url: SecretStr | None = None
    worker_lease_seconds: float = Field(default=15.0, ge=1)

    def cluster(self) -> bool:
        return bool(self.redis_url and self.redis_url.get_secret_value())

    # --- access ---------------------------------------------------------------------------------
    api_keys: SecretStr | None = None
    cors_origins: str = ""
    rate_limit: str = "10/minute"
    max_streams_per_client: int = Field(default=20, ge=1)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit_syntax(cls, value: str) -> str:
        try:
            parse_rate(value)
        except ValueError as exc:
            raise ValueError(f"RATE_LIMIT must look like '10/minute' or '100/hour': {exc}") from exc
        return value

    def agent_plugin_modules(self) -> tuple[str, ...]:
        return tuple(_comma_list(self.agent_plugins))

    def cors_origin_list(self) -> list[str]:
        return _comma_list(self.cors_origins)

    # --- webhooks (off unless WEBHOOK_SECRET is set) -----------------------------------------------
    webhook_secret: SecretStr | None = None
    webhook_urls: str = ""
    webhook_allowed_hosts: str = ""
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    public_url: str = ""

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_syntax(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value else ""
        body = secret.removeprefix("whsec_").rstrip("=")
        try:
            decoded = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except ValueError:
            decoded = b""
        if secret and len(decoded) < 16:
            raise ValueError(
                "WEBHOOK_SECRET must be 'whsec_' followed by at least 16 random bytes in base64, as Standard Webhooks "
                "says; make one with: python -c \"import base64,os;print('whsec_'+base64.b64encode(os.urandom(32)).decode())\""
            )
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _webhook_urls_syntax(cls, value: str) -> str:
        for url in _comma_list(value):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"WEBHOOK_URLS: {parts.scheme}://{parts.hostname} is not an http or https URL")
            if "@" in parts.netloc:
                raise ValueError(
                    "WEBHOOK_URLS: a URL carries credentials; receivers authenticate messages by their signature"
                )
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _webhook_allowed_hosts_syntax(cls, value: str) -> str:
        for entry in _comma_list(value):
            _allowed_host(entry)
        return value

    def webhooks_enabled(self) -> bool:
        return bool(self.webhook_secret and self.webhook_secret.get_secret_value())

    def webhook_url_list(self) -> list[str]:
        return _comma_list(self.webhook_urls)

    def webhook_allowed_host_entries(self) -> frozenset[tuple[str, int | None]]:
        """WEBHOOK_ALLOWED_HOSTS as (host, port) pairs, port None for an entry without one (any port)."""
        return frozenset(_allowed_host(entry) for entry in _comma_list(self.webhook_allowed_hosts))

    # --- server -------------------------------------------------------------------------------
    host: str = "127.0.0.1"  # this machine only; the image sets 0.0.0.0
    port: int = Field(default=8000, ge=1, le=65535)
    forwarded_allow_ips: str = "127.0.0.1,::1"  # peers whose X-Forwarded-For uvicorn believes
    log_level: str = "info"
    log_format: Literal["text", "json"] = "text"
    crewai_storage_dir: str = "multi-agent-delivery"

    def resolved_provider(self) -> ResolvedProvider:
        """The provider `auto` stands for: DashScope with a key, else an explicit endpoint, else local."""
        if self.llm_provider != "auto":
            return self.llm_provider
        if self.dashscope_api_key and self.dashscope_api_key.get_secret_value():
            return "dashscope"
        if self.llm_base_url:
            return "openai"
        return "local"


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _allowed_host(entry: str) -> tuple[str, int | None]:
    """A WEBHOOK_ALLOWED_HOSTS entry, `host` or `host:port` (an IPv6 address in brackets), as (host, port)."""
    try:
        parts = urlsplit(f"//{entry}")  # checks an address in brackets and the port's range
        host, port = parts.hostname or "", parts.port
        readable = parts.netloc == entry and "@" not in entry and not entry.endswith(":") and port != 0
    except ValueError:
        readable = False
    if not readable or not (_HOST_NAME.fullmatch(host) or entry.startswith("[")):
        raise ValueError(
            f"WEBHOOK_ALLOWED_HOSTS: cannot read {entry!r}; write a host name or address, optionally with ':port' "
            "(an IPv6 address in brackets: [::1]:8080), entries separated by commas"
        )
    return host, port


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (FastAPI dependency and module helper)."""
    return Settings()
