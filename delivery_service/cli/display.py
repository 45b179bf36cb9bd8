"""How the command-line client shows a task's events: a live Rich view in a terminal, plain lines otherwise.

In the live view, a structured deliverable being written shows as its document, rendered by the
service's own renderer from the JSON so far, not as JSON. After a completed task, each view prints its
release gate and quality findings (`quality_report`): on stdout under the live view, on stderr where stdout
carries one line per event.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from delivery_service.agents import AGENTS
from delivery_service.deliverables.gate import counted
from delivery_service.event_types import ENDING_STATUS

TAIL_LINES = 12
GATE_STYLES = {"pass": "green", "concerns": "yellow", "fail": "red", "waived": "cyan"}
SEVERITIES = {"error": ("Errors", "red"), "warning": ("Warnings", "yellow"), "info": ("Notes", "cyan")}


def _seconds(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def _one_line(text: str, width: int = 120) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def quality_line(quality: dict[str, Any]) -> str:
    """The `quality` action event's metadata (or a result's `quality`) in one short line."""
    status = (quality.get("gate") or {}).get("status", "unknown")
    return f"Quality: release gate {status}; {counted(quality.get('counts') or {})}."


def quality_report(quality: dict[str, Any]) -> Group:
    """A result's `quality`: the release gate, its reasons and any waiver, then the findings by severity
    (id, rule, target, message, then the suggestion under it)."""
    gate = quality.get("gate") or {}
    status = str(gate.get("status", "unknown"))
    details = counted(quality.get("counts") or {})
    min_coverage = (gate.get("policy") or {}).get("min_coverage")
    if min_coverage is not None:
        details += f"; minimum coverage {min_coverage:.0%}"
    lines = [
        Text.assemble(("Release gate: ", "bold"), (status, f"bold {GATE_STYLES.get(status, '')}"), f"  ({details})")
    ]
    lines += [Text(f"  - {reason}") for reason in gate.get("reasons") or []]
    waiver = gate.get("waiver")
    if waiver:
        lines.append(Text(f"  Waived by {waiver.get('by')} at {waiver.get('at')}: {waiver.get('reason')}", "cyan"))
    findings = quality.get("findings") or []
    for severity, (heading, style) in SEVERITIES.items():
        found = [finding for finding in findings if finding.get("severity") == severity]
        if found:
            lines.append(Text(heading, style=f"bold {style}"))
        for finding in found:
            lines.append(
                Text.assemble(
                    f"  {finding.get('id')}  ",
                    (str(finding.get("rule")), style),
                    "  ",
                    (str(finding.get("target")), "bold"),
                    f"  {finding.get('message')}",
                )
            )
            if finding.get("suggestion"):
                lines.append(Text(f"      → {finding['suggestion']}", style="dim"))
    return Group(*lines)


class PlainDisplay:
    """One line per event."""

    def show(self, event: dict[str, Any]) -> None:
        print(
            f"{event['sequence']:>5} {event['agent_name']:<17} {event['event_type']:<21} {_one_line(event['content'])}",
            flush=True,
        )

    def note(self, message: str) -> None:
        """Something about the connection or the client, not an event."""
        print(f"# {message}", file=sys.stderr, flush=True)

    def report(self, quality: dict[str, Any]) -> None:
        """A completed task's gate and findings, on stderr: stdout stays one line per event."""
        Console(stderr=True).print(quality_report(quality), soft_wrap=True)

    def pause(self) -> None:
        """Stop drawing (before a prompt)."""

    def resume(self) -> None:
        pass


class JsonDisplay(PlainDisplay):
    """Each event as one JSON line, as the stream carries it."""

    def show(self, event: dict[str, Any]) -> None:
        print(json.dumps(event, ensure_ascii=False), flush=True)


@dataclass
class _Step:
    agent: str
    status: str = "working"
    started: float | None = None
    finished: float | None = None
    tokens: int = 0


class LiveDisplay:
    """A live view of one task in the terminal (Rich)."""

    def __init__(self, console: Console, task_id: str) -> None:
        self._console = console
        self._task_id = task_id
        self._steps: dict[str, _Step] = {}
        self._status = "waiting"
        self._sequence = 0
        self._current: str | None = None
        self._text = ""
        self._writing = False  # `_text` is the model's answer so far (deltas), not a finished document
        self._chinese = False  # the deliverables' headings, as the `start` event says
        self._notes: list[str] = []
        self._live = Live(console=console, refresh_per_second=8, get_renderable=self.renderable)
        if console.is_terminal:
            self._live.start()

    def show(self, event: dict[str, Any]) -> None:
        kind, agent, content = event["event_type"], event["agent_name"], event["content"]
        self._sequence = event["sequence"]
        if kind == "start":
            self._status = "running"
            self._chinese = event["metadata"].get("language") == "zh"
        elif kind == "agent_start":
            self._steps[agent] = _Step(agent, started=_seconds(event))
            self._current, self._text, self._writing = agent, "", False
        elif kind == "delta":
            if agent != self._current:
                self._current, self._text = agent, ""
            self._text, self._writing = self._text + content, True
        elif kind == "output":
            step = self._steps.setdefault(agent, _Step(agent))
            step.status = "carried over" if event["metadata"].get("carried_over") else step.status
            self._current, self._text, self._writing = agent, content, False
        elif kind == "step_end":
            step = self._steps.setdefault(agent, _Step(agent))
            step.finished = _seconds(event)
            step.tokens += int((event["metadata"].get("usage") or {}).get("total_tokens") or 0)
            step.status = "carried over" if event["metadata"].get("carried_over") else "done"
        elif kind == "confirmation_required":
            self._status = "awaiting confirmation"
        elif kind == "action" and event["metadata"].get("kind") == "quality":
            self.note(quality_line(event["metadata"]))
        elif kind in ENDING_STATUS:
            self._status = ENDING_STATUS[kind]
            for step in self._steps.values():
                if step.status == "working":
                    step.status = self._status
            ending = {"end": "Completed.", "error": f"Failed: {content}", "cancelled": f"Cancelled: {content}"}[kind]
            self._notes.append(_one_line(ending, 300))
            if self._live.is_started:
                self._live.refresh()
                self._live.stop()

    def note(self, message: str) -> None:
        self._notes = [*self._notes[-2:], message]

    def report(self, quality: dict[str, Any]) -> None:
        """A completed task's gate and findings, under the view (which the `end` event stopped)."""
        self._console.print()
        self._console.print(quality_report(quality))

    def pause(self) -> None:
        self._live.stop()

    def resume(self) -> None:
        if self._console.is_terminal:
            self._live.start()

    def renderable(self) -> Group:
        """What the view shows now (also for recording it: scripts/cli_screenshot.py)."""
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        for column in ("agent", "status", "elapsed", "tokens"):
            table.add_column(column, justify="right" if column in ("elapsed", "tokens") else "left")
        now = datetime.now().timestamp()
        for step in self._steps.values():
            end = step.finished or (now if step.status == "working" else None)
            elapsed = f"{end - step.started:.1f} s" if step.started and end else "-"
            style = {"done": "green", "working": "yellow", "failed": "red", "cancelled": "red"}.get(step.status, "cyan")
            table.add_row(step.agent, Text(step.status, style=style), elapsed, str(step.tokens or "-"))
        writer = AGENTS.get(self._current) if self._writing and self._current else None  # None: shown as it is
        text = writer.live_markdown(self._text, self._chinese) if writer else self._text
        tail = "\n".join(text.splitlines()[-TAIL_LINES:])
        header = Text.assemble(
            ("task ", "dim"),
            self._task_id,
            ("  status ", "dim"),
            self._status,
            ("  event ", "dim"),
            str(self._sequence),
        )
        parts: list[Any] = [header, table]
        if self._current and tail:
            parts += [Text(f"{self._current}:", style="bold"), Text(tail, style="dim")]
        parts += [Text(note, style="italic") for note in self._notes]
        return Group(*parts)


Display = PlainDisplay | LiveDisplay  # JsonDisplay is a PlainDisplay
