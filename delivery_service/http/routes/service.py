"""The service's own pages: liveness, readiness, Prometheus metrics, the test UI and the index."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from delivery_service import __version__
from delivery_service.http.api_models import HealthResponse, ReadinessResponse
from delivery_service.http.dependencies import State
from delivery_service.http.lifespan import ServiceState
from delivery_service.llm.providers import model_info
from delivery_service.observability.metrics import exposition
from delivery_service.settings import get_settings

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["service"])


@router.get("/healthz", response_model=HealthResponse)
async def healthz(request: Request) -> HealthResponse:
    """Liveness: the process answers. Says which model tasks run on."""
    state: ServiceState | None = request.app.state.service
    store = "ok" if state is not None else f"unavailable: {request.app.state.unavailable}"
    settings = get_settings()
    return HealthResponse(
        status="ok",
        model=model_info(settings).public(),
        max_requirement_chars=settings.max_requirement_chars,
        store=store,
        version=__version__,
    )


@router.get("/readyz", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}})
async def readyz(request: Request) -> JSONResponse:
    """Readiness: the store answers, events are being stored, the service takes tasks, the model is loaded."""
    state: ServiceState | None = request.app.state.service
    if state is None:
        checks = {"store": f"unavailable: {request.app.state.unavailable}"}
    else:
        checks = await state.engine.readiness()
    ready = all(value == "ok" for value in checks.values())
    body = ReadinessResponse(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics_text(state: State) -> PlainTextResponse:
    """Tasks, events, workers, subscribers, model calls and HTTP latency, for Prometheus."""
    statuses, queued, busy, workers = state.engine.load()
    subscribers = sum(stream.subscribers for stream in state.engine.streams())
    body = exposition(statuses, queued, busy, workers, subscribers)
    return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/test-ui", include_in_schema=False)
async def test_ui() -> FileResponse:
    return FileResponse(STATIC_DIR / "test_ui.html", media_type="text/html; charset=utf-8")


@router.get("/", include_in_schema=False)
async def index(request: Request) -> dict[str, str]:
    return {"service": request.app.title, "docs": "/docs", "test_ui": "/test-ui", "health": "/healthz"}
