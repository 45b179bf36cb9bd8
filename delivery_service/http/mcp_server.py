"""`/mcp`: the service as a Model Context Protocol server (the official `mcp` SDK, streamable HTTP).

Five tools and the deliverables as resources, each over the service layer as the REST routes are.
Stateless (no MCP session to pin to one replica), so it works behind Nginx on any number of replicas.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.server.fastmcp.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.requests import Request
from starlette.routing import Route

from delivery_service import __version__
from delivery_service.agents import AGENTS
from delivery_service.http.api_models import (
    ConfirmRequest,
    RunTaskRequest,
    RunTaskResponse,
    TaskResultResponse,
    TaskStatusResponse,
)
from delivery_service.http.dependencies import requester_of
from delivery_service.http.error_responses import readable_error
from delivery_service.http.lifespan import ServiceState, running_service
from delivery_service.http.mcp_guard import McpGuard
from delivery_service.http.routes.tasks import started_fields
from delivery_service.http.task_events import task_events
from delivery_service.service_errors import ServiceError
from delivery_service.service_layer.delivery import Requester


def instructions() -> str:
    """The server's instructions, naming the registry's agents and documents."""
    return (
        f"A software delivery team of {len(AGENTS)} agents ({', '.join(AGENTS.names)}). Give run_delivery a "
        f"requirement and get back the {', '.join(agent.title.lower() for agent in AGENTS)}. For long runs: "
        "start_delivery, then get_delivery; confirm_delivery answers a task that waits for approval of its analysis."
    )


def _service(ctx: Context) -> tuple[ServiceState, Requester]:
    request = ctx.request_context.request
    if not isinstance(request, Request):
        raise ToolError("This tool needs the HTTP transport (/mcp).")
    state = running_service(request.app.state)
    return state, requester_of(request, state.keys.caller(request))


@contextlib.asynccontextmanager
async def _as_tool_errors() -> AsyncIterator[None]:
    """A refusal of the service becomes a tool error with the same words as the API's."""
    try:
        yield
    except ServiceError as exc:
        raise ToolError(f"{exc.status}: {exc}") from exc
    except ValidationError as exc:
        raise ToolError(" ".join(readable_error(error)["msg"] for error in exc.errors(include_input=False))) from exc


async def _start(state: ServiceState, who: Requester, requirement: str, skip: bool, priority: int) -> dict[str, Any]:
    """`run_task`'s answer, without the stream token (a tool reads the task through the tools)."""
    async with _as_tool_errors():
        body = RunTaskRequest(user_requirement=requirement, skip_confirmation=skip, priority=priority)
        record, waits = await state.delivery.start(who, body.user_requirement, body)
    return RunTaskResponse(**started_fields(record, waits, None)).model_dump(mode="json", exclude={"stream_token"})


async def start_delivery(
    requirement: str, ctx: Context, skip_confirmation: bool = True, priority: int = 0
) -> dict[str, Any]:
    """Start a delivery for a software requirement; returns at once with its task_id.

    skip_confirmation=false pauses after the requirements analysis until confirm_delivery.
    """
    return await _start(*_service(ctx), requirement, skip_confirmation, priority)


async def get_delivery(task_id: str, ctx: Context) -> dict[str, Any]:
    """Where a delivery stands; once it has finished, also its deliverables, traceability, quality (findings
    and release gate) and decision."""
    state, who = _service(ctx)
    async with _as_tool_errors():
        return await _status_and_result(task_id, state, who)


async def confirm_delivery(task_id: str, ctx: Context, approved: bool = True, feedback: str = "") -> dict[str, Any]:
    """Approve the requirements analysis of a delivery waiting for it, or reject it with feedback to revise it."""
    state, who = _service(ctx)
    async with _as_tool_errors():
        decision = ConfirmRequest(approved=approved, feedback=feedback)
        task = await state.delivery.confirm(who, task_id, decision.approved, decision.feedback)
    return TaskStatusResponse.of(task).model_dump(mode="json")


async def cancel_delivery(task_id: str, ctx: Context) -> dict[str, Any]:
    """Cancel a delivery (a finished one is left as it is)."""
    state, who = _service(ctx)
    async with _as_tool_errors():
        task = await state.delivery.cancel(who, task_id)
    return TaskStatusResponse.of(task).model_dump(mode="json")


async def run_delivery(requirement: str, ctx: Context, priority: int = 0) -> dict[str, Any]:
    """Run a whole delivery and return its deliverables; reports progress after each agent's step."""
    state, who = _service(ctx)
    task_id = (await _start(state, who, requirement, True, priority))["task_id"]
    await ctx.info(f"Delivery {task_id} started: {len(AGENTS)} agents")
    async for event in task_events(state, task_id):
        if event["event_type"] == "step_end":
            step = int(event["metadata"].get("step", 0))
            await ctx.report_progress(
                step, len(AGENTS), f"{event['agent_name']} finished (step {step} of {len(AGENTS)})"
            )
        elif event["event_type"] in ("error", "cancelled"):
            raise ToolError(f"Delivery {task_id} {event['event_type']}: {event['content']}")
    async with _as_tool_errors():
        return await _status_and_result(task_id, state, who)


async def _status_and_result(task_id: str, state: ServiceState, who: Requester) -> dict[str, Any]:
    task = await state.delivery.status(who, task_id)
    answer: dict[str, Any] = {"status": TaskStatusResponse.of(task).model_dump(mode="json")}
    if task.record.finished:
        result = TaskResultResponse.of(await state.delivery.result(who, task_id))
        answer["result"] = result.model_dump(mode="json", exclude={"usage"})
    return answer


async def deliverable(task_id: str, agent_name: str, ctx: Context) -> str:
    """One agent's deliverable of a finished task, as markdown."""
    state, who = _service(ctx)
    async with _as_tool_errors():
        result = TaskResultResponse.of(await state.delivery.result(who, task_id))
    for found in result.deliverables:
        if found.agent_name == agent_name:
            return found.content
    raise ToolError(f"Task {task_id} has no deliverable of {agent_name}; the agents are {', '.join(AGENTS.names)}.")


def build_mcp_server() -> FastMCP:
    """A FastMCP server with the tools and the deliverable resources (one per app)."""
    server = FastMCP(
        "multi-agent-delivery",
        instructions=instructions(),
        stateless_http=True,
        streamable_http_path="/mcp",
        # Like the rest of the API, /mcp is protected by API_KEYS, not by checking Host headers.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    # FastMCP takes no version and so reports the SDK's: the service's own goes to its low-level server.
    server._mcp_server.version = __version__
    for tool in (start_delivery, get_delivery, confirm_delivery, cancel_delivery, run_delivery):
        server.tool()(tool)
    server.resource(
        "delivery://tasks/{task_id}/deliverables/{agent_name}",
        name="deliverable",
        description="An agent's deliverable of a finished delivery, as markdown",
        mime_type="text/markdown",
    )(deliverable)
    return server


def mcp_route(server: FastMCP) -> Route:
    """The `/mcp` route of `server` (its session manager must run: `server.session_manager.run()`)."""
    (route,) = [route for route in server.streamable_http_app().routes if isinstance(route, Route)]
    return Route(route.path, endpoint=McpGuard(route.app), include_in_schema=False)
