"""A structured deliverable while it streams: its JSON so far, shown as the document it will be.

The scripted model's answers are cut after every character; each prefix is read by pydantic-core's
partial-JSON parser and rendered by the agent's renderer (`render_partial`), which the command
line's live view uses. The whole answer renders exactly as the finished deliverable does.
"""

from __future__ import annotations

import pytest

from delivery_service.agents import AGENTS
from delivery_service.llm.fake import scripted_answer

PROMPT = "<requirement>开发一个简单的待办事项应用 | pipes and **stars**</requirement>"


@pytest.mark.parametrize("agent", AGENTS, ids=lambda agent: agent.name)
@pytest.mark.parametrize("chinese", [False, True])
def test_every_prefix_of_an_answer_reads_as_its_document(agent, chinese: bool) -> None:  # type: ignore[no-untyped-def]
    answer = scripted_answer(agent.role, PROMPT)
    finished = agent.render(agent.parse(answer).data, chinese=chinese)  # type: ignore[arg-type]
    start = answer.index("{")
    shown = [agent.live_markdown(answer[:end], chinese) for end in range(start + 1, len(answer) + 1)]
    assert all('{"' not in text and '":' not in text for text in shown), "never the JSON's encoding"
    assert shown[-1].endswith(finished) and shown[-1].startswith("Thought: I will write"), "the whole answer"
    title = finished.splitlines()[0]
    assert all(title in text for text in shown), "the document's title from the first brace on"


def test_a_triage_text_without_json_and_json_that_does_not_parse() -> None:
    product_manager, qa_engineer = AGENTS.named("ProductManager"), AGENTS.named("QAEngineer")
    assert product_manager.live_markdown('{"classification": "bug", "rerun_from": "QAE') == "bug: re-run from QAE.\n"
    assert product_manager.live_markdown("Thought: let me think") == "Thought: let me think"
    broken = '{"user_stories": [}] and more'
    assert product_manager.live_markdown(broken) == broken, "shown as written"
    fenced = 'Here it is:\n```json\n{"test_cases": [{"id": "TC-1", "title": "Saves"'
    assert qa_engineer.live_markdown(fenced).startswith("Here it is:\n\n# Test plan")
    assert "| TC-1 | Saves |" in qa_engineer.live_markdown(fenced)
