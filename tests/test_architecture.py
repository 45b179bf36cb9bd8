"""The layout holds: the design card's modules alone at the root, and the import contracts kept."""

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
