"""A deterministic, scripted model for tests and benchmarks (LLM_PROVIDER=fake).

It behaves like a streaming LLM towards CrewAI (call-started, stream-chunk and call-completed
events, estimated token usage) but answers from a fixed script keyed by the agent's role, so a run is
reproducible, needs no network and costs no tokens. Every answer says that it is scripted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from delivery_service.agents import AGENTS_BY_ROLE
from delivery_service.llm.chunked import ChunkStreamingLLM, Conversation, prompt_text

_REQUIREMENT_BLOCK = re.compile(r"<requirement>\s*(.*?)\s*</requirement>", re.DOTALL)
_FEEDBACK_BLOCK = re.compile(r"<feedback>\s*(.*?)\s*</feedback>", re.DOTALL)

SCRIPTED_NOTICE = "_Scripted output of the `fake` model: it demonstrates the pipeline, not real analysis._"

_SCRIPTS: dict[str, str] = {
    "ProductManager": (
        "Thought: I will restate the requirement as user stories with acceptance criteria.\n"
        "Final Answer: # Requirements analysis\n\n{notice}\n\n"
        "## Requirement\n\n> {requirement}\n\n"
        "## User stories\n\n"
        "- **US-1 (Must):** As a user, I want the core workflow of the requirement, so that I get its value.\n"
        "  - AC-1.1: Given valid input, when I submit it, then it is saved and shown.\n"
        "  - AC-1.2: Given invalid input, when I submit it, then I see a clear error.\n"
        "- **US-2 (Should):** As a user, I want to see my history, so that I can resume work.\n"
        "  - AC-2.1: Given saved items, when I open the app, then they are listed newest first.\n\n"
        "## Non-functional requirements\n\n- Responds within 200 ms at p95.\n- Data survives a restart.\n\n"
        "## Open questions\n\n- Who are the users, and how many?{feedback}\n"
    ),
    "QAEngineer": (
        "Thought: I will trace one test case to each acceptance criterion.\n"
        "Final Answer: # Test plan\n\n{notice}\n\n"
        "| ID | Traces to | Type | Steps | Expected |\n|---|---|---|---|---|\n"
        "| TC-1 | AC-1.1 | functional | submit valid input | saved and shown |\n"
        "| TC-2 | AC-1.2 | negative | submit empty input | clear error |\n"
        "| TC-3 | AC-2.1 | functional | reopen the app | items newest first |\n"
        "| TC-4 | AC-1.1 | edge | submit 10,000 characters | saved intact |\n"
        "| TC-5 | NFR | performance | 100 users at once | p95 under 200 ms |\n"
        "| TC-6 | AC-1.1 | security | submit `<script>` | shown as text |\n"
    ),
    "SoftwareDeveloper": (
        "Thought: I will propose the smallest architecture that meets the stories.\n"
        "Final Answer: # Technical design\n\n{notice}\n\n"
        "## Architecture\n\nA web client, a JSON API and a relational database.\n\n"
        "## Components\n\n- API service\n- Persistence layer\n- Web UI\n\n"
        "## Data model\n\n- `item(id, title, created_at, done)`\n\n"
        "## API\n\n- `POST /items`, `GET /items`, `PATCH /items/{{id}}`\n\n"
        "## Stack\n\nPython, FastAPI, SQLite.\n\n"
        "## Risks\n\n- Scope creep.\n\n## Milestones\n\n1. API\n2. UI\n3. Release\n"
    ),
    "Coordinator": (
        "Thought: I will check that the three documents agree.\n"
        "Final Answer: # Delivery review\n\n{notice}\n\n"
        "## Consistency\n\nEvery acceptance criterion has a test case and a component.\n\n"
        "## Gaps\n\n- User numbers are unknown.\n\n## Risks\n\n- Scope creep.\n\n"
        "## Decision\n\n**Go** for a first iteration.\n\n"
        "## Summary\n\nA scripted delivery plan for: {requirement_short}\n"
    ),
}


def scripted_answer(role: str, prompt: str) -> str:
    """The scripted answer of the agent whose CrewAI role is `role` to `prompt` (a fixed script per agent)."""
    requirement_match = _REQUIREMENT_BLOCK.search(prompt)
    requirement = requirement_match.group(1) if requirement_match else "(no requirement found)"
    feedback_match = _FEEDBACK_BLOCK.search(prompt)
    feedback = f"\n- Feedback taken into account: {feedback_match.group(1)}" if feedback_match else ""
    agent = AGENTS_BY_ROLE.get(role)
    script = _SCRIPTS[agent.name if agent else "Coordinator"]
    return script.format(
        notice=SCRIPTED_NOTICE,
        requirement=requirement.replace("\n", "\n> "),
        requirement_short=requirement[:120],
        feedback=feedback,
    )


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
