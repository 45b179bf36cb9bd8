"""Puts the stream's event model into the OpenAPI schema, which FastAPI cannot infer for SSE responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from delivery_service.store.task_event import TaskEvent

EVENT_STREAM_RESPONSE: dict[str, Any] = {
    "description": "Server-Sent Events: each event is `id: <sequence>` and one `data:` line holding a TaskEvent "
    "as JSON; `: ping` comments while idle; the stream closes after the terminal event "
    "(`end`, `error` or `cancelled`).",
    "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/TaskEvent"}}},
}


def install_event_schema(app: FastAPI) -> None:
    """Make `app.openapi()` include TaskEvent (and its enums) under components/schemas."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            _, definitions = models_json_schema(
                [(TaskEvent, "serialization")], ref_template="#/components/schemas/{model}"
            )
            schema.setdefault("components", {}).setdefault("schemas", {}).update(definitions["$defs"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
