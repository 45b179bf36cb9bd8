"""The HTTP API of the multi-agent delivery service (`python main.py` or `uvicorn main:app`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from delivery_service import __version__
from delivery_service.agents import AGENTS
from delivery_service.http.access_control import BodyLimit, SecurityHeaders
from delivery_service.http.error_responses import (
    http_error_handler,
    request_validation_handler,
    service_error_handler,
)
from delivery_service.http.lifespan import lifespan
from delivery_service.http.mcp_server import build_mcp_server, mcp_route
from delivery_service.http.openapi import install_event_schema
from delivery_service.http.routes import ag_ui, pipeline, service, streams, tasks, webhooks
from delivery_service.observability.logs import configure_logging
from delivery_service.observability.metrics import HttpMetrics
from delivery_service.service_errors import ServiceError
from delivery_service.settings import Settings, get_settings

API_DOCS_ASSETS = "/docs-assets"
# ReDoc's bundle (shipped by fastapi-offline) shows a logo from cdn.redoc.ly under its menu; it is served
# with that image's address emptied, so the page asks no other host (the image, which never loads, hides).
REDOC_BUNDLE = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def create_app(settings: Settings) -> FastAPI:
    """The app with its middleware, error handlers, routers and the test UI's static files.

    `/docs` and `/redoc` load their files from this service (fastapi-offline), not from a CDN, so they
    work offline and behind locked-down networks.
    """
    AGENTS.load_plugins(settings.agent_plugin_modules())
    mcp_server = build_mcp_server()
    mcp = mcp_route(mcp_server)
    app = FastAPIOffline(
        static_url=API_DOCS_ASSETS,
        favicon_url="/static/favicon.svg",
        title="Multi-agent software delivery",
        version=__version__,
        summary="Four LLM agents turn a requirement into an analysis, a test plan, a design and a review, "
        "streamed live.",
        lifespan=_with_mcp_sessions(mcp_server.session_manager.run),
    )
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HttpMetrics)
    if settings.cors_origin_list():
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list(),
            allow_credentials=False,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)
    app.add_exception_handler(ServiceError, service_error_handler)
    for router in (
        tasks.router,
        tasks.threads_router,
        webhooks.router,
        streams.router,
        ag_ui.router,
        pipeline.router,
        service.router,
    ):
        app.include_router(router)
    app.router.routes.append(mcp)
    app.router.routes.insert(0, _redoc_bundle_route())  # before the mount of fastapi-offline's files
    install_event_schema(app)
    app.mount("/static", StaticFiles(directory=service.STATIC_DIR), name="static")
    return app


def _redoc_bundle_route() -> Route:
    """`/docs-assets/redoc.standalone.js`: fastapi-offline's ReDoc bundle without its CDN logo."""
    bundle = REDOC_BUNDLE.read_bytes().replace(REDOC_LOGO, b"data:,")

    async def redoc_bundle(request: Request) -> Response:
        return Response(bundle, media_type="text/javascript", headers={"cache-control": "public, max-age=3600"})

    return Route(f"{API_DOCS_ASSETS}/{REDOC_BUNDLE.name}", redoc_bundle, methods=["GET"])


def _with_mcp_sessions(
    sessions: Callable[[], AbstractAsyncContextManager[None]],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The service's lifespan, with the MCP server's session manager running inside it."""

    @contextlib.asynccontextmanager
    async def both(app: FastAPI) -> AsyncIterator[None]:
        async with lifespan(app), sessions():
            yield

    return both


configure_logging(get_settings().log_level, get_settings().log_format)
app = create_app(get_settings())


if __name__ == "__main__":
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "main:app",
        host=settings.host,
        port=settings.port,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        log_level=settings.log_level,
        log_config=None,
    )
