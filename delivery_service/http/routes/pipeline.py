"""The pipeline a task runs through, as data: the registry's agents and the facts of each event type.

Clients (the test UI) read it instead of restating the agents, their steps, or which events end a task.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from delivery_service.agents import AGENTS
from delivery_service.event_types import EVENT_FACTS, EventType

router = APIRouter(tags=["service"])


class AgentInfo(BaseModel):
    name: str = Field(description="the agent's name, as events' `agent_name` give it")
    title: str = Field(description="its deliverable's title, in English")
    title_zh: str = Field(description="its deliverable's title, in Chinese")
    step: int = Field(description="its step: its place in the pipeline, from 1 (events' `metadata.step`)")
    phase: Literal["analysis", "delivery"] = Field(
        description="`analysis`: before the requester confirms the analysis; `delivery`: after it"
    )
    reviews: bool = Field(description="whether it reviews the delivery (handed the traceability; its summary ends it)")
    prefixes: list[str] = Field(description="the prefixes of the identifiers it defines (`US` for US-1, ...)")
    traces_to: list[str] = Field(description="the prefixes of the identifiers its document refers to")


class EventTypeInfo(BaseModel):
    event_type: EventType
    terminal: bool = Field(description="whether it ends the task (the last event of its stream)")
    status: str | None = Field(description="the task status it sets, if any")
    message_type: str | None = Field(description="the webhook message it causes, if any")


class PipelineResponse(BaseModel):
    agents: list[AgentInfo]
    event_types: list[EventTypeInfo]


@router.get("/api/agents", response_model=PipelineResponse)
async def agents() -> PipelineResponse:
    """The agents in the order they run, and what each event type means for a task; no key needed."""
    return PipelineResponse(
        agents=[AgentInfo(**vars(agent), step=step) for step, agent in enumerate(AGENTS, start=1)],
        event_types=[EventTypeInfo(**vars(facts), event_type=kind) for kind, facts in EVENT_FACTS.items()],
    )
