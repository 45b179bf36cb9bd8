"""A deterministic model for tests and benchmarks (LLM_PROVIDER=fake): it streams the calling agent's
registry entry's `scripted` answer, so a run is reproducible, offline and free."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from delivery_service import scripted_answers
from delivery_service.agents import AGENTS
from delivery_service.llm.chunked import ChunkStreamingLLM, Conversation, prompt_text, tagged
from delivery_service.scripted_answers import Brief


def scripted_answer(role: str, prompt: str) -> str:
    """The scripted answer of the agent whose CrewAI role is `role` to `prompt`: its deliverable's JSON."""
    requirement = tagged("requirement", prompt, "(no requirement found)")
    follow_up = tagged("follow_up_request", prompt)
    agent = AGENTS.by_role(role) or AGENTS[-1]
    if follow_up is not None and "<previous_documents>" in prompt:
        triage = json.dumps(scripted_answers.triage(follow_up), ensure_ascii=False)
        return f"Thought: I will triage the follow-up.\nFinal Answer: {triage}"
    quality = tagged("quality", prompt)
    brief = Brief(requirement, tagged("feedback", prompt), follow_up, json.loads(quality) if quality else None)
    data = agent.scripted(brief)
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
