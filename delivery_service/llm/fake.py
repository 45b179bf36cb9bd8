"""A deterministic, scripted model for tests and benchmarks (LLM_PROVIDER=fake).

It behaves like a streaming LLM towards CrewAI (call-started, stream-chunk and call-completed
events, estimated token usage) but answers from a fixed script: the agent of the calling role's
registry entry names its scripted answer (`delivery_service.scripted_answers` for the default agents),
so a run is reproducible, needs no network and costs no tokens. Every answer says that it is scripted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

from delivery_service import scripted_answers
from delivery_service.agents import AGENTS
from delivery_service.llm.chunked import ChunkStreamingLLM, Conversation, prompt_text
from delivery_service.scripted_answers import Brief

_REQUIREMENT_BLOCK = re.compile(r"<requirement>\s*(.*?)\s*</requirement>", re.DOTALL)
_FEEDBACK_BLOCK = re.compile(r"<feedback>\s*(.*?)\s*</feedback>", re.DOTALL)
_FOLLOW_UP_BLOCK = re.compile(r"<follow_up_request>\s*(.*?)\s*</follow_up_request>", re.DOTALL)


def scripted_answer(role: str, prompt: str) -> str:
    """The scripted answer of the agent whose CrewAI role is `role` to `prompt`: its deliverable's JSON."""
    requirement_match = _REQUIREMENT_BLOCK.search(prompt)
    requirement = requirement_match.group(1) if requirement_match else "(no requirement found)"
    feedback_match = _FEEDBACK_BLOCK.search(prompt)
    follow_up_match = _FOLLOW_UP_BLOCK.search(prompt)
    follow_up = follow_up_match.group(1) if follow_up_match else None
    agent = AGENTS.by_role(role) or AGENTS[-1]
    if follow_up is not None and "<previous_documents>" in prompt:
        triage = json.dumps(scripted_answers.triage(follow_up), ensure_ascii=False)
        return f"Thought: I will triage the follow-up.\nFinal Answer: {triage}"
    data = agent.scripted(Brief(requirement, feedback_match.group(1) if feedback_match else None, follow_up))
    return f"Thought: I will write the {agent.name} deliverable as the JSON asked for.\nFinal Answer: {json.dumps(data, ensure_ascii=False)}"


class ScriptedLLM(ChunkStreamingLLM):
    """Streams a scripted answer in `chunk_chars`-sized chunks, `chunk_delay_seconds` apart."""

    llm_type: str = "fake"
    chunk_delay_seconds: float = 0.0
    chunk_chars: int = 24

    def chunks(self, conversation: Conversation, from_task: Any, from_agent: Any) -> Iterator[str]:
        answer = scripted_answer(getattr(from_agent, "role", "") or "", prompt_text(conversation))
        for start in range(0, len(answer), self.chunk_chars):
            if self.chunk_delay_seconds:
                time.sleep(self.chunk_delay_seconds)
            yield answer[start : start + self.chunk_chars]
