"""The docs' promises: the README's Python client works as written, every setting is documented, links resolve."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import PROJECT_ROOT, ServerProcess
from delivery_service.settings import Settings

README = (PROJECT_ROOT / "README.md").read_text()
CONFIGURATION = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
MARKDOWN_PAGES = [
    PROJECT_ROOT / "README.md",
    PROJECT_ROOT / "ARCHITECTURE.md",
    *sorted((PROJECT_ROOT / "docs").glob("*.md")),
]


def test_readme_python_client_runs_as_written(fake_service: ServerProcess) -> None:
    section = README[README.index("### Python client") :]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    env = {**os.environ, "SERVICE_URL": fake_service.base_url}
    result = subprocess.run([sys.executable, "-c", code.group(1)], env=env, capture_output=True, text=True, timeout=120)
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
        assert f"`{variable}`" in CONFIGURATION, f"{variable} missing from docs/configuration.md"


def test_ci_runs_the_readme_test_command() -> None:
    assert "./scripts/test" in README
    assert "./scripts/test" in (PROJECT_ROOT / ".ci" / "run").read_text()


def test_links_between_pages_resolve() -> None:
    """Every relative link of the README, ARCHITECTURE.md and docs/ names a file (and heading) that exists."""
    broken = []
    for page in MARKDOWN_PAGES:
        for path, anchor in re.findall(r"\]\(([^)#\s]*)(#[^)\s]*)?\)", page.read_text()):
            if path.startswith(("http://", "https://")):
                continue
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {path}")
            elif anchor and linked.suffix == ".md" and anchor[1:] not in _anchors(linked.read_text()):
                broken.append(f"{page.name}: {path}{anchor}")
    assert not broken, broken


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
