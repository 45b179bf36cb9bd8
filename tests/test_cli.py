"""The command-line client against a real uvicorn with the scripted model.

Without a terminal it prints one line per event (`sequence agent event_type text`); in a pseudo-terminal
(pexpect) it draws the live view and prompts.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pexpect
import pytest
from rich.console import Console

from conftest import PROJECT_ROOT, ServerProcess, read_stream, start_task, status, wait_until
from delivery_service.agents import AGENTS as AGENT_SPECS
from delivery_service.cli.app import ExitCode, Gate, gate_meets
from delivery_service.cli.display import LiveDisplay
from delivery_service.llm.fake import scripted_answer

CONSOLE_SCRIPT = Path(sys.executable).parent / "delivery"
AGENTS = ["ProductManager", "QAEngineer", "SoftwareDeveloper", "Coordinator"]
# The release gates of the scripted model's deliverables for these requirements (tests/test_release_gate.py).
PASSES, CONCERNS, FAILS = (
    "Build a todo app to track chores",
    "Build a fast todo app",
    "Build a todo app; the scale is TBD",
)
HEADINGS = {"error": "Errors", "warning": "Warnings", "info": "Notes"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "delivery_service.cli", *args]


def run_cli(*args: str, timeout: int = 60, **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout, **options)  # type: ignore[call-overload]


def spawn(*args: str, dimensions: tuple[int, int] = (40, 160)) -> pexpect.spawn:
    return pexpect.spawn(
        sys.executable, cli(*args)[1:], cwd=str(PROJECT_ROOT), encoding="utf-8", timeout=120, dimensions=dimensions
    )


def printed_sequences(output: str) -> list[int]:
    return [int(line.split()[0]) for line in output.splitlines() if line.strip() and line.split()[0].isdigit()]


# ./scripts/test installs the project (pyproject.toml) into .venv; the Docker image does not (its users
# run `python -m delivery_service.cli`), and tests/test_containers.py runs the quick tests there too.
@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the project is not installed here (python -m only)")
def test_the_console_script_is_installed_with_the_project(tmp_path: Path) -> None:
    done = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and "follow-up" in done.stdout and "SERVICE_URL" in done.stdout


def test_run_writes_the_four_deliverables_and_exits_0(
    start_service: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start_service()
    out = tmp_path / "todo"
    done = run_cli(
        "--url", server.base_url, "run", "Build a todo app", "--out", str(out), timeout=120, cwd=PROJECT_ROOT
    )
    assert done.returncode == 0, done.stderr
    assert sorted(path.name for path in out.iterdir()) == [f"0{n}-{agent}.md" for n, agent in enumerate(AGENTS, 1)] + [
        "result.json"
    ]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed"
    assert (out / "02-QAEngineer.md").read_text() == result["deliverables"][1]["content"]
    lines = done.stdout.splitlines()  # not a terminal: one plain line per event
    assert printed_sequences(done.stdout) == list(range(1, len(lines) + 1))
    assert lines[-1].split()[1:3] == ["System", "end"] and "Wrote 4 deliverables" in done.stderr
    assert [line.split()[1] for line in lines if line.split()[2] == "step_end"] == AGENTS


def test_json_output_and_the_other_commands(start_service: Callable[..., ServerProcess]) -> None:
    server = start_service()
    task_id = start_task(server.base_url)
    watched = run_cli("--url", server.base_url, "--json", "watch", task_id, timeout=120)
    assert watched.returncode == 0, watched.stderr
    assert [json.loads(line) for line in watched.stdout.splitlines()] == read_stream(server.base_url, task_id)

    listed = run_cli("--url", server.base_url, "--json", "list")
    assert json.loads(listed.stdout)["tasks"][0]["task_id"] == task_id, "newest first"
    shown = run_cli("--url", server.base_url, "status", task_id)
    assert "completed" in shown.stdout
    document = run_cli("--url", server.base_url, "result", task_id)
    assert document.stdout.startswith(f"# Delivery for task {task_id}")
    revised = run_cli("--url", server.base_url, "follow-up", task_id, "Add sign-in with email", timeout=120)
    assert revised.returncode == 0 and revised.stdout.splitlines()[-1].split()[2] == "end"


def test_errors_have_their_exit_codes_and_say_what_to_do(start_service: Callable[..., ServerProcess]) -> None:
    nowhere = run_cli("--url", "http://127.0.0.1:9", "list")
    assert nowhere.returncode == 4 and "Cannot reach the service at http://127.0.0.1:9" in nowhere.stderr
    server = start_service(API_KEYS="alice-key-0123")
    refused = run_cli("--url", server.base_url, "list")
    assert refused.returncode == 5 and "401" in refused.stderr and "API_KEYS" in refused.stderr
    unknown = run_cli("--url", server.base_url, "--api-key", "alice-key-0123", "result", "no-such-task")
    assert unknown.returncode == 5 and "No task of yours has an id starting with 'no-such-task'" in unknown.stderr
    usage = run_cli("run")
    assert usage.returncode == 2 and "Missing argument" in usage.stderr


def test_global_options_after_the_command_whole_ids_and_id_prefixes(
    start_service: Callable[..., ServerProcess],
) -> None:
    base = start_service().base_url
    done = run_cli("run", "Build a todo app", "--url", base, "--plain", timeout=120)
    assert done.returncode == 0, done.stderr
    root = httpx.get(f"{base}/api/tasks").json()["tasks"][0]["task_id"]
    revised = run_cli("follow-up", root[:8], "Add sign-in", "--url", base, timeout=120)
    assert revised.returncode == 0, revised.stderr
    tasks = httpx.get(f"{base}/api/tasks").json()["tasks"]
    child = tasks[0]["task_id"]

    for options in (["--plain"], []):  # not a terminal: tab-separated lines either way
        listed = run_cli("list", "--url", base, *options)
        rows = [line.split("\t") for line in listed.stdout.splitlines()]
        assert [row[0] for row in rows] == [child, root], "whole ids, newest first"
        assert rows[0][3:] == [root, "2", "Add sign-in"] and rows[1][3:] == [root, "1", "Build a todo app"]
    terminal = spawn("list", "--url", base, dimensions=(24, 80))
    terminal.expect(pexpect.EOF)
    assert child in terminal.before and root in terminal.before, "an 80-column table keeps ids whole"

    shown = run_cli("status", child[:6], "--url", base)
    assert shown.returncode == 0 and child in shown.stdout, "a unique prefix names the task"
    ambiguous = run_cli("status", "", "--url", base)
    assert ambiguous.returncode == 2 and "matches 2 tasks" in ambiguous.stderr, ambiguous.stderr
    unknown = run_cli("cancel", "zz", "--url", base)
    assert unknown.returncode == 5 and "No task" in unknown.stderr, unknown.stderr

    helped = run_cli("list", "--help", env={**os.environ, "COLUMNS": "120"})
    assert "--url" in helped.stdout and "--plain" in helped.stdout and "<bool>" not in helped.stdout


@pytest.mark.slow  # a process killed, or a client that goes away: not the image's packages
def test_watch_resumes_across_a_kill_and_restart_and_prints_each_event_once(
    start_service: Callable[..., ServerProcess],
) -> None:
    server = start_service(FAKE_LLM_DELAY_MS="20")
    task_id = start_task(server.base_url)
    watcher = subprocess.Popen(
        cli("--url", server.base_url, "watch", task_id), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    wait_until(lambda: any(" QAEngineer " in line for line in lines), 60, "the watcher to show the second agent")
    server.kill()
    restarted = start_service(port=server.port, FAKE_LLM_DELAY_MS="20")
    assert watcher.wait(timeout=120) == 1, "the task ended with the restart's error"
    reader.join(timeout=10)
    history = read_stream(restarted.base_url, task_id)
    assert printed_sequences("".join(lines)) == [event["sequence"] for event in history], "each event once, none missed"
    assert history[-1]["metadata"]["error_type"] == "server_restarted"
    assert "resuming after event" in watcher.stderr.read()  # type: ignore[union-attr]


def test_the_live_view_shows_a_deliverable_being_written_as_its_document() -> None:
    console = Console(file=io.StringIO(), width=100)
    display = LiveDisplay(console, "task-1")
    answer = scripted_answer(AGENT_SPECS[0].role, "<requirement>开发一个待办事项应用</requirement>")
    cut = answer.index('"acceptance_criteria"') + 40
    events = [
        ("System", "start", "", {"language": "zh"}),
        ("ProductManager", "agent_start", "", {}),
        *(("ProductManager", "delta", answer[n : n + 7], {}) for n in range(0, cut, 7)),
    ]
    for sequence, (agent, kind, content, metadata) in enumerate(events, 1):
        display.show(
            {
                "sequence": sequence,
                "agent_name": agent,
                "event_type": kind,
                "content": content,
                "metadata": metadata,
                "timestamp": "2026-12-04T10:00:00.000000Z",
            }
        )
    console.print(display.renderable())
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "## 验收标准" in shown and "- **US-2 (Should)" not in shown and "- **US-2 (应该):**" in shown
    assert '"user_stories"' not in shown and "{" not in shown, "the document, not its JSON"


def run_to_the_end(base_url: str, requirement: str, out: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`delivery run` piped (plain lines), writing the result to `out` so the test knows the task."""
    return run_cli("--url", base_url, "run", requirement, "--out", str(out), *options, timeout=120)


def test_a_completed_run_prints_its_release_gate_and_findings_by_severity(
    fake_service: ServerProcess, tmp_path: Path
) -> None:
    done = run_to_the_end(fake_service.base_url, CONCERNS, tmp_path)
    assert done.returncode == 0, done.stderr
    quality = json.loads((tmp_path / "result.json").read_text())["quality"]
    assert quality["gate"]["status"] == "concerns" and {"warning", "info"} <= {
        f["severity"] for f in quality["findings"]
    }
    lines = done.stdout.splitlines()
    assert printed_sequences(done.stdout) == list(range(1, len(lines) + 1)), "stdout stays one line per event"

    report = done.stderr.splitlines()  # whole lines: not wrapped at the 80 columns of a pipe
    assert "Release gate: concerns  (0 errors, 1 warning, 1 note; minimum coverage 80%)" in report
    assert [f"  - {reason}" for reason in quality["gate"]["reasons"]] == [line for line in report if line[:4] == "  - "]
    heading_of: dict[str, str] = {}
    for number, line in enumerate(report):
        if line in HEADINGS.values():
            heading = line
        for finding in quality["findings"]:
            if line == f"  {finding['id']}  {finding['rule']}  {finding['target']}  {finding['message']}":
                heading_of[finding["id"]] = heading
                assert report[number + 1] == f"      → {finding['suggestion']}"
    assert heading_of == {finding["id"]: HEADINGS[finding["severity"]] for finding in quality["findings"]}
    assert report.index("Warnings") < report.index("Notes"), "errors, then warnings, then notes"


def test_require_gate_exits_6_when_the_completed_tasks_gate_is_worse(
    fake_service: ServerProcess, tmp_path: Path
) -> None:
    base = fake_service.base_url
    concerns = run_to_the_end(base, CONCERNS, tmp_path / "concerns", "--require-gate", "pass")
    assert concerns.returncode == ExitCode.GATE_NOT_MET == 6, concerns.stderr
    assert concerns.stdout.splitlines()[-1].split()[2] == "end", "the task completed; only its gate falls short"
    assert "The release gate is concerns; --require-gate pass asks for pass or better" in concerns.stderr
    accepted = run_to_the_end(base, CONCERNS, tmp_path / "accepted", "--require-gate", "concerns")
    assert accepted.returncode == 0, accepted.stderr
    assert "Release gate: concerns" in accepted.stderr

    failed = run_to_the_end(base, FAILS, tmp_path / "fail", "--require-gate", "pass")
    assert failed.returncode == 6, failed.stderr
    assert "Release gate: fail" in failed.stderr and "The release gate is fail; --require-gate pass" in failed.stderr
    task_id = json.loads((tmp_path / "fail" / "result.json").read_text())["task_id"]
    watched = run_cli("--url", base, "watch", task_id, "--require-gate", "concerns", timeout=120)
    assert watched.returncode == 6 and "The release gate is fail" in watched.stderr, "fail is worse than concerns"
    unrequired = run_cli("--url", base, "watch", task_id, timeout=120)
    assert unrequired.returncode == 0 and "Release gate: fail" in unrequired.stderr, "without the option: exit 0"

    passed = run_to_the_end(base, PASSES, tmp_path / "pass", "--require-gate", "pass")
    assert passed.returncode == 0 and "Release gate: pass" in passed.stderr, passed.stderr


def test_the_gate_order_and_a_waiver() -> None:
    statuses = ("pass", "concerns", "fail", "waived", None, "unknown")
    assert [gate_meets(status, Gate.PASS) for status in statuses] == [True, False, False, True, False, False]
    assert [gate_meets(status, Gate.CONCERNS) for status in statuses] == [True, True, False, True, False, False]


def test_the_live_view_notes_the_quality_event_and_prints_the_gate_after_the_task() -> None:
    console = Console(file=io.StringIO(), width=100)
    display = LiveDisplay(console, "task-1")
    finding = {"id": "Q-1", "rule": "unmeasurable-nfr", "severity": "error", "target": "NFR-3", "field": "target"}
    finding |= {"message": "target “TBD” is not measurable", "suggestion": "Give a number with a unit."}
    quality = {
        "findings": [finding],
        "counts": {"error": 1, "warning": 0, "info": 0},
        "gate": {"status": "fail", "reasons": ["Error findings: NFR-3 (unmeasurable-nfr)."], "waiver": None},
    }
    event = {"sequence": 20, "agent_name": "System", "event_type": "action", "content": "Quality: ..."}
    display.show({**event, "metadata": {"kind": "quality", **quality}, "timestamp": "2026-12-04T10:00:00Z"})
    console.print(display.renderable())
    assert "Quality: release gate fail; 1 error, 0 warnings, 0 notes." in console.file.getvalue()  # type: ignore[attr-defined]

    waiver = {"reason": "NFR-3 is agreed with ops", "at": "2026-12-04T11:00:00Z", "by": "alice"}
    display.report({**quality, "gate": {**quality["gate"], "status": "waived", "waiver": waiver}})
    shown = console.file.getvalue().split("Quality: release gate fail")[-1]  # type: ignore[attr-defined]
    assert "Release gate: waived  (1 error, 0 warnings, 0 notes)" in shown
    assert "Waived by alice at 2026-12-04T11:00:00Z: NFR-3 is agreed with ops" in shown
    assert shown.index("Errors") < shown.index("Q-1  unmeasurable-nfr  NFR-3  target “TBD” is not measurable")
    assert "→ Give a number with a unit." in shown


def test_the_confirmation_is_asked_in_a_terminal(start_service: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server = start_service()
    out = tmp_path / "wiki"
    terminal = spawn("--url", server.base_url, "run", "Build a wiki", "--confirm", "--out", str(out))
    terminal.expect("Approve the requirements analysis")
    terminal.sendline("n")
    terminal.expect("What should change")
    terminal.sendline("Add page history")
    terminal.expect("Approve the requirements analysis")
    terminal.sendline("y")
    terminal.expect(pexpect.EOF)
    terminal.close()
    assert terminal.exitstatus == 0
    task_id = json.loads((out / "result.json").read_text())["task_id"]
    events = read_stream(server.base_url, task_id)
    assert [e["event_type"] for e in events].count("confirmation_required") == 2
    assert any("Add page history" in json.dumps(e) for e in events if e["event_type"] == "action")


def interrupted_watch(server: ServerProcess, task_id: str, answer: str) -> int:
    """`delivery watch` in a terminal, Ctrl-C once the task is under way, `answer` to the question; its exit status."""
    terminal = spawn("--url", server.base_url, "watch", task_id)
    terminal.expect("QAEngineer|ProductManager")
    terminal.sendintr()
    terminal.expect("Cancel the task, or stop watching it")
    terminal.sendline(answer)
    terminal.expect(pexpect.EOF)
    terminal.close()
    return int(terminal.exitstatus)


def test_ctrl_c_asks_whether_to_cancel_or_stop_watching(start_service: Callable[..., ServerProcess]) -> None:
    server = start_service(FAKE_LLM_DELAY_MS="50")
    watched = start_task(server.base_url)
    assert interrupted_watch(server, watched, "stop") == 130
    assert status(server.base_url, watched)["status"] in ("running", "completed"), "stopping to watch left it alone"
    cancelled = start_task(server.base_url)
    assert interrupted_watch(server, cancelled, "cancel") == 3
    assert httpx.get(f"{server.base_url}/api/task/{cancelled}/status").json()["status"] == "cancelled"
