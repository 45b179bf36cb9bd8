"""What a first-time user meets: where the service listens, what the README's commands do, its pointers.

`python main.py` and `./scripts/serve` listen on this machine only unless `HOST` says otherwise (the
image sets `HOST=0.0.0.0` itself); the README's quick start shows `HOST` and `PORT` beside the command,
and says what `./scripts/test` installs and starts; the quick loop (`-m "not slow"`) starts no Docker
engine and runs no docker-compose.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT, TEST_DEFAULTS, free_port, wait_until

README = (PROJECT_ROOT / "README.md").read_text()
QUICK_START = README[README.index("## Quick start") : README.index("### With Docker")]
# A test that starts the Docker engine depends on this fixture (tests/test_containers.py)...
ENGINE_FIXTURE = "engine"
# ... and one that runs the docker or docker-compose command names it as a command line.
DOCKER_COMMAND = re.compile(r"\[\s*\"docker(-compose)?\"")


def test_python_main_py_listens_on_loopback_unless_host_says_otherwise(tmp_path: Path) -> None:
    port = free_port()
    environment = {key: value for key, value in os.environ.items() if key != "HOST"}
    log_path = tmp_path / "main.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "main.py")],
            cwd=tmp_path,
            env={**environment, **TEST_DEFAULTS, "LOG_LEVEL": "info", "PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        running = wait_until(
            lambda: re.search(r"Uvicorn running on (\S+)", log_path.read_text()) or process.poll() is not None,
            60,
            "python main.py to start",
        )
        assert running is not True, f"python main.py exited:\n{log_path.read_text()}"
        assert running.group(1) == f"http://127.0.0.1:{port}", "only this machine reaches a service with no key"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_quick_start_shows_host_and_port_and_what_the_test_script_installs() -> None:
    assert re.search(r"HOST=\S+ PORT=\d+ \./scripts/serve", QUICK_START), "HOST and PORT beside the command"
    assert "127.0.0.1:8000" in QUICK_START
    for installed in ("docker.io", "docker-compose", "debootstrap", "dockerd"):
        assert installed in QUICK_START, f"the quick start says that ./scripts/test installs or starts {installed}"
    assert '-m "not slow"' in QUICK_START


def test_requirement_files_point_at_sections_that_exist() -> None:
    for requirements in sorted(PROJECT_ROOT.glob("requirements*.txt")):
        for page, heading in re.findall(r"\(see ([\w./-]+), \"([^\"]+)\"\)", requirements.read_text()):
            assert (PROJECT_ROOT / page).is_file(), f"{requirements.name} points at {page}, which does not exist"
            text = (PROJECT_ROOT / page).read_text()
            assert re.search(rf"^#+ {re.escape(heading)}$", text, re.MULTILINE), (
                f"{requirements.name}: {page} has no {heading!r}"
            )


# Collecting the whole suite takes half a minute.
@pytest.mark.slow
def test_the_quick_loop_starts_no_docker_engine_and_runs_no_docker_compose(tmp_path: Path) -> None:
    collected = tmp_path / "quick.json"
    result = subprocess.run(
        [sys.executable, "-c", _COLLECT_QUICK_TESTS, str(collected)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    quick = json.loads(collected.read_text())
    assert len(quick) > 100, "the quick loop was collected"
    docker_tests = [
        test["nodeid"] for test in quick if ENGINE_FIXTURE in test["fixtures"] or DOCKER_COMMAND.search(test["source"])
    ]
    assert docker_tests == [], "tests that start Docker or run docker-compose must be marked slow"


# The quick loop's tests, as `./scripts/test -m "not slow"` collects them, with their fixtures and source.
_COLLECT_QUICK_TESTS = """
import inspect, json, sys
import pytest

class Quick:
    def pytest_collection_finish(self, session):
        self.tests = [
            {"nodeid": item.nodeid, "fixtures": list(item.fixturenames), "source": inspect.getsource(item.function)}
            for item in session.items
        ]

quick = Quick()
code = pytest.main(["--collect-only", "-q", "-m", "not slow", "-p", "no:cacheprovider"], plugins=[quick])
json.dump(quick.tests, open(sys.argv[1], "w"))
sys.exit(code)
"""
