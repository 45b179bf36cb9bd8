"""The design card's agent configuration: the four agents, in the order they run, and their prompts.

The definitions live in `delivery_service/agents.py` (one place for roles, goals, backstories and the
task templates of each prompt style); edit them there. This module keeps the design card's name for
them, so scripts and handlers can write `from agents_config import AGENTS`.
"""

from delivery_service.agents import (
    AGENT_NAMES,
    AGENTS,
    AGENTS_BY_ROLE,
    TASK_TEMPLATES,
    AgentSpec,
    PromptStyle,
    TaskTemplate,
    as_prompt_data,
    compact_template,
    requirement_language,
)

__all__ = [
    "AGENTS",
    "AGENTS_BY_ROLE",
    "AGENT_NAMES",
    "TASK_TEMPLATES",
    "AgentSpec",
    "PromptStyle",
    "TaskTemplate",
    "as_prompt_data",
    "compact_template",
    "requirement_language",
]
