"""A model's answer as a deliverable's data: find the JSON, validate it, and say what is wrong in words.

Models wrap JSON in fences, add a sentence before it, or write almost-right objects: the errors, one line
each with the field's path, go back to the model in one repair request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from pydantic import ValidationError

from delivery_service.deliverables.schemas import Document

FENCE_START = re.compile(r"```(?:json|JSON)?[ \t]*\n")
_FENCE = re.compile(FENCE_START.pattern + "(.*?)```", re.DOTALL)
MAX_ERRORS = 12


@dataclass(frozen=True)
class Parsed:
    """The validated data, or None and why not."""

    data: Document | None
    errors: list[str] = field(default_factory=list)


def json_text(answer: str) -> str | None:
    """The JSON object an answer holds: a fenced block's content, or its outermost braces."""
    fenced = _FENCE.search(answer)
    if fenced:
        return fenced.group(1).strip()
    start, end = answer.find("{"), answer.rfind("}")
    return answer[start : end + 1] if 0 <= start < end else None


def parse_deliverable(schema: type[Document], answer: str) -> Parsed:
    """`answer` validated against a deliverable's `schema`."""
    text = json_text(answer)
    if text is None:
        return Parsed(None, ["The answer holds no JSON object: answer with one JSON object only."])
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        return Parsed(None, [f"The JSON does not parse: {exc.msg} at line {exc.lineno}, column {exc.colno}."])
    try:
        return Parsed(schema.model_validate(raw))
    except ValidationError as exc:
        return Parsed(None, [_error_line(error) for error in exc.errors()[:MAX_ERRORS]])


def _error_line(error: dict[str, object]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ())) or "the object"  # type: ignore[union-attr]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{location}: {message}"


def repair_request(errors: list[str]) -> str:
    """What the model is told after an answer that does not fit: every problem, and what to send."""
    listed = "\n".join(f"- {error}" for error in errors)
    return (
        "Your answer does not fit the required JSON schema:\n"
        f"{listed}\n"
        "Answer again with the whole corrected JSON object only, no text before or after it."
    )
