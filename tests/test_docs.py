"""The README's promises: its Python client example works as written, and every setting is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import PROJECT_ROOT, ServerProcess
from delivery_service.settings import Settings

README = (PROJECT_ROOT / "README.md").read_text()


def test_readme_python_client_runs_as_written(fake_service: ServerProcess) -> None:
    section = README[README.index("### Python client") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)],
        env={**os.environ, "SERVICE_URL": fake_service.base_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("task ") and lines[0].endswith(" started")
    assert re.search(r"^#  1 System +start ", result.stdout, re.MULTILINE)
    assert re.search(r"System +end ", result.stdout)
    for title in ("Requirements analysis", "Test plan", "Technical design", "Delivery review"):
        assert f"== {title} (" in result.stdout


def test_every_setting_is_documented() -> None:
    example = (PROJECT_ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        variable = name.upper()
        assert re.search(rf"^{variable}=", example, re.MULTILINE), f"{variable} missing from .env.example"
        assert f"`{variable}`" in README, f"{variable} missing from the README"


def test_ci_runs_the_readme_test_command() -> None:
    assert "./scripts/test" in README
    assert "./scripts/test" in (PROJECT_ROOT / ".ci" / "run").read_text()
