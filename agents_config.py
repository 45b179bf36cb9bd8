"""The design card's agent configuration: the agents, in the order they run, and their prompts.

The registry lives in `delivery_service/agents.py` (`AGENTS`: one entry per agent, built from the plain
data of `delivery_service/prompts.py`, where the roles, goals, backstories and task templates of each
prompt style are; edit them there). A further agent is registered by a module named in AGENT_PLUGINS.
This module keeps the design card's name for them, so scripts and handlers can write
`from agents_config import AGENTS`.
"""

from delivery_service.agents import AGENTS, AgentSpec, Pipeline
from delivery_service.prompts import (
    TASK_TEMPLATES,
    PromptStyle,
    TaskTemplate,
    as_prompt_data,
    compact_template,
    requirement_language,
)

AGENT_NAMES: tuple[str, ...] = AGENTS.names

__all__ = [
    "AGENTS",
    "AGENT_NAMES",
    "TASK_TEMPLATES",
    "AgentSpec",
    "Pipeline",
    "PromptStyle",
    "TaskTemplate",
    "as_prompt_data",
    "compact_template",
    "requirement_language",
]
