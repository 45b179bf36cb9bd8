"""`python test_import.py` prints the five lines an installation check expects; the first setup says what it does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT


def test_import_script_reports_success() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LLM_", "DASHSCOPE_"))}
    result = subprocess.run(
        [sys.executable, "test_import.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "[OK] Module Imports",
        "[OK] Agent Creation",
        "[OK] Stream Manager",
        "[OK] API Endpoints",
        "[SUCCESS] All tests passed! System is ready.",
    ]


def test_import_script_fails_loudly_on_a_broken_setting() -> None:
    env = {**os.environ, "LLM_PROVIDER": "not-a-provider"}
    result = subprocess.run(
        [sys.executable, "test_import.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1].startswith("[FAIL] ")


@pytest.mark.slow
def test_first_setup_says_what_it_is_doing(tmp_path: Path) -> None:
    """scripts/setup-env.sh (behind ./scripts/serve and ./scripts/test) reports each step of a first install,
    and nothing on a run that has nothing to install. Run on empty requirement files and an empty project in a copy."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(PROJECT_ROOT / "scripts" / "setup-env.sh", tmp_path / "scripts")
    for name in ("requirements.txt", "requirements-model.txt"):
        (tmp_path / name).write_text("# nothing to install\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "empty"\nversion = "0"\n[tool.setuptools]\npy-modules = []\n'
    )
    command = ["bash", "-c", "source scripts/setup-env.sh requirements.txt"]
    env = {**os.environ, "PYTHON": sys.executable}
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    steps = [line for line in first.stderr.splitlines() if line.startswith("setup: ")]
    assert [step.split(" ")[1] for step in steps] == ["creating", "installing", "installing", "installing", "done;"], (
        first.stderr
    )
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "setup: " not in again.stderr
