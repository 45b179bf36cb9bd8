"""The layout holds: the design card's modules alone at the root, the import contracts kept, ruff's format and checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DESIGN_CARD_MODULES = {"main.py", "crew_factory.py", "agents_config.py", "stream_manager.py", "test_import.py"}


def test_only_the_design_cards_modules_sit_at_the_root() -> None:
    assert {path.name for path in PROJECT_ROOT.glob("*.py")} == DESIGN_CARD_MODULES


def test_import_contracts_are_kept() -> None:
    """`.importlinter`: layers import downward only, the package never imports the root, no cycles."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--config", str(PROJECT_ROOT / ".importlinter"), "--no-cache"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 kept, 0 broken" in result.stdout, result.stdout


def test_the_code_is_formatted_and_its_imports_sorted() -> None:
    """`ruff format` and `ruff check` (ruff.toml: pyflakes, bugbear, import sorting) hold on the whole project."""
    ruff = str(Path(sys.executable).parent / "ruff")
    for command in ([ruff, "format", "--check", "--no-cache", "."], [ruff, "check", "--no-cache", "."]):
        result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{' '.join(command[1:])} (run it without --check to fix):\n{result.stdout}"


def test_no_two_modules_share_a_file_name() -> None:
    """A file's name says which thing it is: no `events.py` in three packages for three jobs."""
    names: dict[str, list[str]] = {}
    for path in (PROJECT_ROOT / "delivery_service").rglob("*.py"):
        if path.name not in ("__init__.py", "__main__.py"):
            names.setdefault(path.name, []).append(str(path.relative_to(PROJECT_ROOT)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
