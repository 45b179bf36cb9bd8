"""`delivery`: the command-line client (Typer + Rich + httpx), a thin client of the HTTP API.

Exit codes (also in docs/cli.md): 0 the task completed (or the command did its job), 1 the task failed,
2 usage error (also an id prefix that names several tasks), 3 the task was cancelled, 4 the service cannot be
reached, 5 the service refused the request (the message says why) or no task has the id given, 6 the task
completed but its release gate is worse than `--require-gate` asks, 130 stopped watching with Ctrl-C (the
task goes on). A task id may be shortened to any prefix that names one of your tasks.
"""

from __future__ import annotations

import enum
import json
import re
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.prompt import Prompt
from rich.table import Table

from delivery_service.cli.client import CannotConnect, NoSuchTask, ServiceClient, ServiceRefused
from delivery_service.cli.display import Display, JsonDisplay, LiveDisplay, PlainDisplay
from delivery_service.cli.options import GlobalOptionsGroup
from delivery_service.event_types import ENDING_STATUS


class ExitCode(enum.IntEnum):
    COMPLETED = 0
    FAILED = 1
    USAGE = 2
    CANCELLED = 3
    CANNOT_CONNECT = 4
    REFUSED = 5
    GATE_NOT_MET = 6
    STOPPED_WATCHING = 130


EXIT_BY_STATUS = {"completed": ExitCode.COMPLETED, "failed": ExitCode.FAILED, "cancelled": ExitCode.CANCELLED}


class Gate(str, enum.Enum):
    """The least release gate `--require-gate` accepts."""

    PASS = "pass"
    CONCERNS = "concerns"


GATE_RANK = {"fail": 0, "concerns": 1, "pass": 2}  # `waived` meets any requirement: a person signed it off


def gate_meets(status: str | None, required: Gate) -> bool:
    """Whether a gate of `status` is at least `required` (an unknown or missing gate is not)."""
    return status == "waived" or GATE_RANK.get(str(status), -1) >= GATE_RANK[required.value]


app = typer.Typer(
    cls=GlobalOptionsGroup,
    help="Run and watch multi-agent deliveries from the terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
errors = Console(stderr=True)


@dataclass
class Session:
    """One invocation: the global options (before or after the command), the console, the client."""

    console: Console
    interactive: bool  # a person at a terminal on both ends, who can answer prompts
    options: dict[str, Any] = field(default_factory=dict)  # the app's options by name (options.py)

    @cached_property
    def client(self) -> ServiceClient:
        return ServiceClient(self.options["url"], self.options["api_key"])

    @property
    def output(self) -> str:
        """`json`, `plain` (asked for, or not a terminal) or `live`."""
        if self.options["json_lines"]:
            return "json"
        return "plain" if self.options["plain"] or not self.console.is_terminal else "live"

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()

    def task_id(self, given: str) -> str:
        """The id of the caller's one task whose id starts with `given` (a whole id is taken as it is)."""
        if FULL_ID.fullmatch(given):
            return given
        matches = self.client.task_ids_starting_with(given)
        if not matches:
            raise NoSuchTask(f"No task of yours has an id starting with {given!r} (delivery list shows them).")
        if len(matches) > 1:
            shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
            raise typer.BadParameter(f"{given!r} matches {len(matches)} tasks ({shown}): give more of the id.")
        return matches[0]

    def display(self, task_id: str) -> Display:
        if self.output == "live":
            return LiveDisplay(self.console, task_id)
        return JsonDisplay() if self.output == "json" else PlainDisplay()

    def print_json(self, value: Any) -> None:
        print(json.dumps(value, indent=2, ensure_ascii=False))


@app.callback()
def options(
    context: typer.Context,
    url: Annotated[str, typer.Option(envvar="SERVICE_URL", help="The service's address.")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="SERVICE_API_KEY", help="An API key, when the service has API_KEYS set.")
    ] = None,
    plain: Annotated[bool, typer.Option("--plain", help="One line per event (or task), even in a terminal.")] = False,
    json_lines: Annotated[bool, typer.Option("--json", help="Events (and answers) as JSON.")] = False,
) -> None:
    """Options accepted before the command or after it (options.py)."""
    # Asked before any live view starts: Rich's live view stands in for sys.stdout while it runs.
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    options = {"url": url, "api_key": api_key, "plain": plain, "json_lines": json_lines}
    context.obj = Session(Console(), interactive, options)
    context.call_on_close(context.obj.close)


Requirement = Annotated[str, typer.Argument(help="What to build, in any language.")]
TaskId = Annotated[str, typer.Argument(help="The task's id, or enough of its start to name one of your tasks.")]
FULL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
Confirm = Annotated[bool, typer.Option("--confirm", help="Pause after the analysis and ask for approval.")]
Tokens = Annotated[bool, typer.Option("--tokens", help="Show the agents' text as it is written.")]
Priority = Annotated[int, typer.Option(min=0, max=9, help="0-9; higher starts first when tasks wait.")]
Out = Annotated[Path | None, typer.Option(help="Write the deliverables (markdown) and result.json here.")]
RequireGate = Annotated[
    Gate | None,
    typer.Option(
        help="Exit 6 when the task completes with a worse release gate (pass > concerns > fail; waived meets both)."
    ),
]
LIST_COLUMNS = ("task", "rev", "status", "created")  # then the request, in the width left
MIN_REQUEST_WIDTH = 12  # in a terminal narrower than that, `list` prints its plain lines


@app.command()
def run(
    context: typer.Context,
    requirement: Requirement,
    confirm: Confirm = False,
    tokens: Tokens = False,
    priority: Priority = 0,
    out: Out = None,
    require_gate: RequireGate = None,
) -> None:
    """Start a task and follow it to its end; write its deliverables with --out."""
    body = {"user_requirement": requirement}
    _start(context.obj, "/api/run_task", body, confirm, tokens, priority, out, require_gate)


@app.command("follow-up")
def follow_up(
    context: typer.Context,
    task_id: TaskId,
    request: Annotated[str, typer.Argument(help="What should change.")],
    confirm: Confirm = False,
    tokens: Tokens = False,
    priority: Priority = 0,
    out: Out = None,
    require_gate: RequireGate = None,
) -> None:
    """Revise a completed task: a new revision in its thread, followed to its end."""
    path = f"/api/task/{context.obj.task_id(task_id)}/follow_up"
    _start(context.obj, path, {"request": request}, confirm, tokens, priority, out, require_gate)


def _start(
    session: Session,
    path: str,
    body: dict[str, Any],
    confirm: bool,
    tokens: bool,
    priority: int,
    out: Path | None,
    require_gate: Gate | None,
) -> NoReturn:
    body |= {"skip_confirmation": not confirm, "stream_tokens": tokens, "priority": priority}
    raise typer.Exit(follow(session, session.client.post(path, body)["task_id"], out, require_gate))


@app.command()
def watch(context: typer.Context, task_id: TaskId, out: Out = None, require_gate: RequireGate = None) -> None:
    """Follow any task from its first event; resumes by itself after a dropped connection or a restart."""
    session: Session = context.obj
    raise typer.Exit(follow(session, session.task_id(task_id), out, require_gate))


@app.command()
def status(context: typer.Context, task_id: TaskId) -> None:
    """Where a task stands."""
    session: Session = context.obj
    answer = session.client.get(f"/api/task/{session.task_id(task_id)}/status")
    if session.output == "json":
        session.print_json(answer)
        return
    for key in ("task_id", "status", "current_agent", "completed_steps", "total_steps", "queue_position", "error"):
        if answer.get(key) is not None:
            session.console.print(f"[dim]{key}[/dim] {answer[key]}")


@app.command()
def result(
    context: typer.Context,
    task_id: TaskId,
    format: Annotated[str, typer.Option(help="md: one markdown document; json: the API's answer.")] = "md",
) -> None:
    """A finished task's deliverables."""
    session: Session = context.obj
    if format not in ("md", "json"):
        raise typer.BadParameter("use md or json", param_hint="--format")
    task_id = session.task_id(task_id)
    if format == "json":
        session.print_json(session.client.get(f"/api/task/{task_id}/result"))
        return
    document = session.client.text(f"/api/task/{task_id}/result", format="markdown")
    if session.output == "live":
        session.console.print(Markdown(document))
    else:
        print(document)


@app.command()
def cancel(context: typer.Context, task_id: TaskId) -> None:
    """Cancel a task (a finished one is left as it is)."""
    _control(context.obj, task_id, "cancel")


@app.command("confirm")
def confirm_task(
    context: typer.Context,
    task_id: TaskId,
    reject: Annotated[bool, typer.Option("--reject", help="Have the analysis revised instead.")] = False,
    feedback: Annotated[str, typer.Option(help="What to change (with --reject).")] = "",
) -> None:
    """Approve a task's requirements analysis, or reject it with feedback."""
    _control(context.obj, task_id, "confirm", {"approved": not reject, "feedback": feedback})


def _control(session: Session, task_id: str, action: str, body: dict[str, Any] | None = None) -> None:
    task_id = session.task_id(task_id)
    answer = session.client.post(f"/api/task/{task_id}/{action}", body)
    print(f"{task_id}: {answer['status']}")


@app.command("list")
def list_tasks(context: typer.Context, limit: Annotated[int, typer.Option(min=1, max=100)] = 20) -> None:
    """Your tasks, newest first: a follow-up shows its revision and request (--plain: also its thread)."""
    session: Session = context.obj
    answer = session.client.get("/api/tasks", limit=limit)
    if session.output == "json":
        session.print_json(answer)
        return
    # A service older than the thread fields lists first tasks only.
    tasks = [{"thread_id": t["task_id"], "revision": 1, "request": t["requirement"], **t} for t in answer["tasks"]]
    rows = [
        [task["task_id"], str(task["revision"]), task["status"], task["created_at"][5:16].replace("T", " ")]
        for task in tasks
    ]
    widths = [max([len(title), *(len(row[n]) for row in rows)]) for n, title in enumerate(LIST_COLUMNS)]
    request_width = session.console.width - sum(widths) - 2 * len(LIST_COLUMNS)  # a space either side of a column
    if session.output == "plain" or request_width < MIN_REQUEST_WIDTH:  # whole fields, tab-separated
        for task in tasks:
            fields = ("task_id", "status", "created_at", "thread_id", "revision", "request")
            print("\t".join(" ".join(str(task[key]).split()) for key in fields))
        return
    table = Table(box=None, header_style="bold")  # ids whole; the request cut to the width left
    for title, width in zip(LIST_COLUMNS, widths, strict=True):
        table.add_column(title, no_wrap=True, min_width=width)
    table.add_column("request", no_wrap=True, overflow="ellipsis", max_width=request_width)
    for row, task in zip(rows, tasks, strict=True):
        table.add_row(*row, " ".join(task["request"].split()))
    session.console.print(table)


def follow(session: Session, task_id: str, out: Path | None, require_gate: Gate | None = None) -> ExitCode:
    """Show the task's events to its end (deciding a confirmation when asked), then a completed task's gate and
    findings; the exit code of its outcome (or of a gate worse than `require_gate`)."""
    display = session.display(task_id)
    last = 0
    while True:
        try:
            for event in session.client.follow(task_id, after=last, on_reconnect=display.note):
                last = event["sequence"]
                display.show(event)
                if event["event_type"] == "confirmation_required":
                    _decide(session, task_id, event, display)
                ending = ENDING_STATUS.get(event["event_type"])
                if ending == "completed":
                    return _completed(session, task_id, display, out, require_gate)
                if ending is not None:
                    return EXIT_BY_STATUS[ending]
        except KeyboardInterrupt:
            display.pause()
            if (
                not session.interactive
                or Prompt.ask("\nCancel the task, or stop watching it?", choices=["cancel", "stop"], default="stop")
                == "stop"
            ):
                errors.print(f"Stopped watching; the task goes on. Resume with: delivery watch {task_id}")
                return ExitCode.STOPPED_WATCHING
            session.client.post(f"/api/task/{task_id}/cancel")
            display.resume()


def _decide(session: Session, task_id: str, event: dict[str, Any], display: Display) -> None:
    """Ask the person at the terminal to approve the analysis, or to say what should change."""
    if not session.interactive:
        display.note(f"Waiting for a decision: delivery confirm {task_id} [--reject --feedback TEXT]")
        return
    display.pause()
    analysis = event["metadata"].get("analysis")  # whole, as markdown (older services: only in the content)
    if analysis:
        session.console.print(Markdown(analysis))
    session.console.print(f"\n[bold]{event['metadata'].get('question') if analysis else event['content']}[/bold]")
    approved = typer.confirm("Approve the requirements analysis?", default=True)
    feedback = "" if approved else typer.prompt("What should change?")
    session.client.post(f"/api/task/{task_id}/confirm", {"approved": approved, "feedback": feedback})
    display.resume()


def _completed(
    session: Session, task_id: str, display: Display, out: Path | None, require_gate: Gate | None
) -> ExitCode:
    """After the `end` event: the deliverables written (--out), the gate and findings shown, the gate checked.

    The gate is the result's, not the `end` event's: it includes a waiver given since the task ended.
    """
    try:
        answer = session.client.get(f"/api/task/{task_id}/result")
    except ServiceRefused as exc:
        if out is not None or require_gate is not None:
            raise
        display.note(f"No release gate to show: {exc}")
        return ExitCode.COMPLETED
    if out is not None:
        _write_deliverables(answer, out)
    quality = answer.get("quality")  # none from a service older than the gate
    if quality:
        display.report(quality)
    if require_gate is None:
        return ExitCode.COMPLETED
    gate = (quality or {}).get("gate") or {}
    if gate_meets(gate.get("status"), require_gate):
        return ExitCode.COMPLETED
    errors.print(
        f"[red]The release gate is {gate.get('status') or 'not reported'}; --require-gate {require_gate.value} "
        f"asks for {require_gate.value} or better (or a waiver: POST /api/task/{task_id}/waive).[/red]",
        soft_wrap=True,
    )
    return ExitCode.GATE_NOT_MET


def _write_deliverables(answer: dict[str, Any], out: Path) -> None:
    """Each deliverable as `NN-Agent.md`, and the whole answer as result.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(answer, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for number, deliverable in enumerate(answer["deliverables"], start=1):
        (out / f"{number:02d}-{deliverable['agent_name']}.md").write_text(deliverable["content"], encoding="utf-8")
    errors.print(f"Wrote {len(answer['deliverables'])} deliverables and result.json to {out}")


def main() -> None:
    """The console script: the exit codes of the module docstring."""
    try:
        app()
    except (CannotConnect, NoSuchTask, ServiceRefused) as exc:
        errors.print(f"[red]{'The service refused: ' if isinstance(exc, ServiceRefused) else ''}{exc}[/red]")
        sys.exit(ExitCode.CANNOT_CONNECT if isinstance(exc, CannotConnect) else ExitCode.REFUSED)
