"""The embedded model's LLM for CrewAI: it fills a markdown skeleton one short line at a time.

A 135M-parameter model given CrewAI's long role-play prompt and earlier deliverables writes
repetitive, off-topic prose. Given a two-line prompt and the start of a sentence to continue, it stays
on the subject for a line. So this LLM ignores the prompt CrewAI composed, takes the agent's compact
template (see `agents_config.compact_template`), copies the skeleton's fixed markdown, and asks the
model to continue each `[slot …]` for at most one line and SLOT_MAX_TOKENS tokens. Output is capped
and cannot loop; every deliverable is headed markdown about the actual requirement.

It speaks to the model over the OpenAI chat-completions protocol (an assistant message that the
model continues), streaming, with the openai SDK, and emits CrewAI's LLM events like any provider.
"""

from __future__ import annotations

import re
from typing import Any

import openai
from pydantic import PrivateAttr

from agents_config import AGENTS_BY_ROLE, as_prompt_data, compact_template
from crewai_runtime import crewai  # noqa: F401  (CrewAI must be prepared before its submodules)
from crewai.events.types.llm_events import LLMCallType
from crewai.llms.base_llm import BaseLLM, llm_call_context

SLOT_MAX_TOKENS = 36
_SLOT = re.compile(r"\[([^\]]*)…\]")
_SENTENCE_END = re.compile(r"^(.{8,}?(?:[.!?](?=\s|$)|[。！？]))")
_EARLIER_EXCERPT_CHARS = 300


def _one_sentence(text: str) -> str:
    """The first sentence of a slot's continuation, without links or markdown the model made up."""
    cleaned = re.sub(r"https?://\S+|`+|\*+|#+|\ufffd", "", text)
    lead = " " if cleaned[:1].isspace() else ""
    body = cleaned.strip()
    match = _SENTENCE_END.match(body)
    if match:
        return lead + match.group(1)
    return lead + body.rstrip(",;:，；：") + ("" if body.endswith((".", "。")) else "…")


class SkeletonLLM(BaseLLM):
    """Fills the compact skeleton of the calling agent, for one task's requirement."""

    llm_type: str = "skeleton"
    requirement: str
    timeout: float = 60.0
    max_retries: int = 2
    repeat_penalty: float = 1.3
    _client: openai.OpenAI | None = PrivateAttr(default=None)

    def _openai(self) -> openai.OpenAI:
        if self._client is None:
            self._client = openai.OpenAI(
                base_url=self.base_url, api_key=self.api_key or "embedded", timeout=self.timeout, max_retries=self.max_retries
            )
        return self._client

    def call(
        self,
        messages: str | list[Any],
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any | None = None,
        from_agent: Any | None = None,
        response_model: Any | None = None,
    ) -> str:
        agent = AGENTS_BY_ROLE[getattr(from_agent, "role", "")]
        template = compact_template(agent.name, self.requirement)
        earlier = [task.output.raw for task in (getattr(from_task, "context", None) or []) if getattr(task, "output", None)]
        prompt = template.description.format(
            requirement=as_prompt_data(self.requirement),
            earlier="\n".join(text[:_EARLIER_EXCERPT_CHARS] for text in earlier[-1:]),
        )
        conversation = [
            {"role": "system", "content": f"You are a {agent.role}. You write short, concrete markdown."},
            {"role": "user", "content": prompt},
        ]
        skeleton = template.expected_output.format(title=self.requirement.splitlines()[0][:80])
        with llm_call_context():
            self._emit_call_started_event(messages=conversation, from_task=from_task, from_agent=from_agent)
            answer = self._fill(skeleton, conversation, from_task, from_agent)
            self._emit_call_completed_event(
                response=answer,
                call_type=LLMCallType.LLM_CALL,
                from_task=from_task,
                from_agent=from_agent,
                messages=conversation,
            )
        return answer

    def _fill(self, skeleton: str, conversation: list[dict[str, str]], from_task: Any, from_agent: Any) -> str:
        """The skeleton with every slot continued by the model, streamed chunk by chunk as CrewAI events."""
        parts: list[str] = []
        cursor = 0
        for slot in _SLOT.finditer(skeleton):
            fixed = skeleton[cursor : slot.start()] + slot.group(1)
            self._emit_stream_chunk_event(fixed, from_task=from_task, from_agent=from_agent)
            continuation = _one_sentence(self._continue(conversation, slot.group(1)))
            self._emit_stream_chunk_event(continuation, from_task=from_task, from_agent=from_agent)
            parts += [fixed, continuation]
            cursor = slot.end()
        tail = skeleton[cursor:] + "\n"
        self._emit_stream_chunk_event(tail, from_task=from_task, from_agent=from_agent)
        parts.append(tail)
        return "".join(parts)

    def _continue(self, conversation: list[dict[str, str]], opening: str) -> str:
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

    def supports_function_calling(self) -> bool:
        return False
