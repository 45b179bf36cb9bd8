"""Draw the command-line client's live view of a task, from its events, as an SVG (docs/cli.svg).

    delivery --json run "Build a todo app" | .venv/bin/python scripts/cli_screenshot.py docs/cli.svg

The view is the one `delivery run` draws in a terminal (cli/display.py), after the task's last event.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from delivery_service.cli.display import LiveDisplay  # noqa: E402


def main() -> None:
    events = [json.loads(line) for line in sys.stdin if line.strip()]
    console = Console(record=True, width=100, file=io.StringIO())
    display = LiveDisplay(console, events[0]["task_id"])
    for event in events:
        display.show(event)
    console.print(display.renderable())
    console.save_svg(sys.argv[1], title=f"delivery run  ({len(events)} events)")


if __name__ == "__main__":
    main()
