"""The embedded model's LLM for CrewAI: it fills the JSON skeleton of a deliverable one short line at a time.

Given CrewAI's long prompt, a 135M model writes off-topic prose; given two lines and a sentence's start, it
stays on the subject for a line. So this LLM copies the agent's compact template (`prompts.compact_template`)
and has the model continue each `⟦slot …⟧` for one line: the output always fits the schema. The review's
decision and coverage come from the service's traceability; a follow-up's triage reruns every agent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
from pydantic import PrivateAttr

from delivery_service.agents import AGENTS
from delivery_service.llm.chunked import ChunkStreamingLLM, Conversation, tagged
from delivery_service.prompts import SLOT_CLOSE, SLOT_OPEN, as_prompt_data, compact_template, is_chinese
from delivery_service.scripted_answers import answered_findings

SLOT_MAX_TOKENS = 36
_SLOT = re.compile(re.escape(SLOT_OPEN) + r"([^⟧]*)" + re.escape(SLOT_CLOSE))
_SENTENCE_END = re.compile(r"^(.{8,}?(?:[.!?](?=\s|$)|[。！？]))")
_EARLIER_EXCERPT_CHARS = 300
_TRIAGE = {
    "classification": "change",
    "rerun_from": "ProductManager",
    "reason": "The embedded demonstration model does not triage requests, so every agent works on this one again.",
}
_HANDED_OVER = ("plan_and_design", "analysis")


def _one_sentence(text: str) -> str:
    """The first sentence of a slot's continuation, without links or markdown the model made up."""
    cleaned = re.sub(r"https?://\S+|`+|\*+|#+|\ufffd", "", text)
    lead = " " if cleaned[:1].isspace() else ""
    body = cleaned.strip()
    match = _SENTENCE_END.match(body)
    if match:
        return lead + match.group(1)
    return lead + body.rstrip(",;:，；：") + ("" if body.endswith((".", "。")) else "…")


def _latest_deliverable(task: Any) -> str:
    """The deliverable just before this task: its crew context, or what it was handed over (the plan and
    design for the review, else the approved analysis)."""
    earlier = [
        context.output.raw for context in (getattr(task, "context", None) or []) if getattr(context, "output", None)
    ]
    if earlier:
        return str(earlier[-1])
    description = str(getattr(task, "description", ""))
    for tag in _HANDED_OVER:
        if (found := tagged(tag, description)) is not None:
            return found
    return ""


class SkeletonLLM(ChunkStreamingLLM):
    """Fills the compact skeleton of the calling agent, for one task's requirement."""

    llm_type: str = "skeleton"
    requirement: str
    http_client: httpx.Client
    repeat_penalty: float = 1.3
    _client: openai.OpenAI | None = PrivateAttr(default=None)

    def _openai(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(
                base_url=self.base_url, api_key=self.api_key or "embedded", max_retries=0, http_client=self.http_client
            )
        return self._client

    def conversation(self, messages: str | list[Any], from_task: Any, from_agent: Any) -> Conversation:
        """A two-line prompt from the agent's compact template, in place of CrewAI's long one."""
        agent = AGENTS.by_role(getattr(from_agent, "role", ""))
        template = compact_template(agent.name, self.requirement)
        prompt = template.description.format(
            requirement=as_prompt_data(self.requirement),
            earlier=_latest_deliverable(from_task)[:_EARLIER_EXCERPT_CHARS],
        )
        return [
            {"role": "system", "content": f"You are a {agent.role}. You write short, concrete markdown."},
            {"role": "user", "content": prompt},
        ]

    def chunks(self, conversation: Conversation, from_task: Any, from_agent: Any) -> Iterator[str]:
        """The skeleton's fixed markdown, and the model's continuation of each slot, in order."""
        agent = AGENTS.by_role(getattr(from_agent, "role", ""))
        if "<previous_documents>" in str(getattr(from_task, "description", "")):
            yield json.dumps(_TRIAGE)  # a follow-up's triage is beyond a 135M model: everything runs again
            return
        skeleton = compact_template(agent.name, self.requirement).expected_output
        if agent.reviews:
            skeleton = self._with_computed_review(skeleton, str(getattr(from_task, "description", "")))
        cursor = 0
        for slot in _SLOT.finditer(skeleton):
            yield skeleton[cursor : slot.start()] + slot.group(1)
            yield json.dumps(_one_sentence(self._continue(conversation, slot.group(1))), ensure_ascii=False)[1:-1]
            cursor = slot.end()
        yield skeleton[cursor:] + "\n"

    def _with_computed_review(self, skeleton: str, description: str) -> str:
        """The decision and the coverage reason from the traceability the Coordinator was handed."""
        found = tagged("traceability", description)
        traceability = json.loads(found) if found is not None else {}
        covered, criteria = traceability.get("covered", 0), traceability.get("acceptance_criteria", 0)
        chinese = is_chinese(self.requirement)
        coverage = (
            f"{criteria} 条验收标准中有 {covered} 条有测试用例。"
            if chinese
            else f"{covered} of {criteria} acceptance criteria have a test case."
        )
        decision = "go" if traceability.get("complete") else "no_go"
        quality = tagged("quality", description)
        issues = json.dumps(answered_findings(json.loads(quality) if quality else None), ensure_ascii=False)
        skeleton = skeleton.replace('"issues": []', f'"issues": {issues}')
        return skeleton.replace("⟪decision⟫", decision).replace("⟪coverage⟫", coverage)

    def _continue(self, conversation: Conversation, opening: str) -> str:
        """The model's continuation of `opening`, one line at most."""
        stream = self._openai().chat.completions.create(
            model=self.model,
            messages=[*conversation, {"role": "assistant", "content": opening}],  # type: ignore[list-item]
            max_tokens=SLOT_MAX_TOKENS,
            temperature=self.temperature if self.temperature is not None else 0.2,
            stop=["\n"],
            stream=True,
            extra_body={"repeat_penalty": self.repeat_penalty},
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
