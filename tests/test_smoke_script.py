"""`python test_import.py` prints the five lines an installation check expects."""

from __future__ import annotations

import os
import subprocess
import sys

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
