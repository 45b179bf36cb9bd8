"""`StructuredAnswer`: a CrewAI task guardrail that turns an agent's answer into its deliverable's data.

A valid answer becomes the data and the markdown rendered from it; a review saying `go` over a failing
release gate (`blocking`: the gate's reasons) becomes `no_go`; a revision's review ends with the service's
`appendix` (what changed), whatever the model wrote. An invalid one is sent back once with its errors
(CrewAI's guardrail retry is the repair request); if that does not fit either, the model's text is kept
with no data, `fallback_errors` says why, and the task goes on.
"""

from __future__ import annotations

from typing import Any

from crewai.tasks.task_output import TaskOutput

from delivery_service.deliverables.parsing import parse_deliverable, repair_request
from delivery_service.deliverables.render import Renderer, render
from delivery_service.deliverables.schemas import DeliveryReview, Document

REPAIR_ATTEMPTS = 1


class StructuredAnswer:
    def __init__(
        self,
        schema: type[Document],
        renderer: Renderer,
        chinese: bool,
        blocking: tuple[str, ...] = (),
        appendix: str = "",
    ) -> None:
        self.schema = schema
        self.renderer = renderer
        self.chinese = chinese
        self.blocking = blocking
        self.appendix = appendix
        self.data: Document | None = None
        self.fallback_errors: list[str] | None = None
        self.attempts = 0  # answers checked: 1, or 2 after a repair request
        self._failures = 0

    # The guardrail is this bound method: CrewAI reads a guardrail's source, so it must be a function or
    # method. No return annotation: CrewAI checks it at runtime, and this module's postponed annotations
    # would reach it as a string. It returns (accepted, output or the repair request).
    def check(self, output: TaskOutput):  # type: ignore[no-untyped-def]
        self.attempts += 1
        parsed = parse_deliverable(self.schema, output.raw)
        if parsed.data is not None:
            self.data = self._without_go_over_a_failing_gate(parsed.data)
            return True, self._with_appendix(render(self.data, self.renderer, self.chinese))
        self._failures += 1
        if self._failures <= REPAIR_ATTEMPTS:
            return False, repair_request(parsed.errors)
        self.fallback_errors = parsed.errors
        return True, self._with_appendix(output.raw)

    def _with_appendix(self, markdown: str) -> str:
        return f"{markdown.rstrip()}\n\n{self.appendix}" if self.appendix else markdown

    def _without_go_over_a_failing_gate(self, data: Document) -> Document:
        if not (isinstance(data, DeliveryReview) and data.decision == "go" and self.blocking):
            return data
        reasons = [*data.reasons, *(reason for reason in self.blocking if reason not in data.reasons)]
        return data.model_copy(update={"decision": "no_go", "reasons": reasons})

    def public_data(self) -> dict[str, Any] | None:
        """The data as the API shows it (JSON-ready), or None."""
        return self.data.model_dump(mode="json") if self.data is not None else None
