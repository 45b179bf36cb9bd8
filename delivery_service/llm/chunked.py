"""The base of the LLMs written here: CrewAI's call events (started, one per chunk, completed or failed)
around a generator of text chunks, since CrewAI sees an LLM's work only through the events it emits."""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

from crewai.events.types.llm_events import LLMCallType
from crewai.llms.base_llm import BaseLLM, llm_call_context

from delivery_service.crewai_runtime import crewai  # noqa: F401  (CrewAI must be prepared before its submodules)

Conversation = list[dict[str, str]]


def tagged(tag: str, prompt: str, default: str | None = None) -> str | None:
    """The text a prompt holds between `<tag>` and `</tag>`, stripped, or `default`."""
    found = re.search(rf"<{tag}>\s*(.*?)\s*</{tag}>", prompt, re.DOTALL)
    return found.group(1) if found else default


def prompt_text(messages: str | list[Any]) -> str:
    """All message contents of a CrewAI prompt as one string."""
    if isinstance(messages, str):
        return messages
    return "\n".join(str(message.get("content", "")) for message in messages if isinstance(message, dict))


class ChunkStreamingLLM(BaseLLM):
    """A CrewAI LLM whose answer is the concatenation of `chunks()`, each streamed as an event."""

    def conversation(self, messages: str | list[Any], from_task: Any, from_agent: Any) -> Conversation:
        """The messages this LLM answers: by default CrewAI's own prompt."""
        if isinstance(messages, str):
            return [{"role": "user", "content": messages}]
        return [{"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in messages]

    @abstractmethod
    def chunks(self, conversation: Conversation, from_task: Any, from_agent: Any) -> Iterator[str]:
        """The answer to `conversation`, piece by piece."""

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
        conversation = self.conversation(messages, from_task, from_agent)
        with llm_call_context():
            self._emit_call_started_event(messages=conversation, from_task=from_task, from_agent=from_agent)
            parts: list[str] = []
            try:
                for chunk in self.chunks(conversation, from_task, from_agent):
                    self._emit_stream_chunk_event(chunk, from_task=from_task, from_agent=from_agent)
                    parts.append(chunk)
            except Exception as exc:
                self._emit_call_failed_event(error=str(exc), from_task=from_task, from_agent=from_agent)
                raise
            answer = "".join(parts)
            prompt_tokens = len(prompt_text(conversation)) // 4
            completion_tokens = len(answer) // 4
            self._emit_call_completed_event(
                response=answer,
                call_type=LLMCallType.LLM_CALL,
                from_task=from_task,
                from_agent=from_agent,
                messages=conversation,
                usage={
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            )
        return answer

    def supports_function_calling(self) -> bool:
        return False
