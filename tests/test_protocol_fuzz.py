"""Generated bodies for the two protocol endpoints the OpenAPI schema does not describe fully: `/mcp` (JSON-RPC
messages, tool calls, resource reads) and `POST /api/ag-ui` (RunAgentInput, resumes of a real interrupt).

Most examples are valid messages with one field replaced by arbitrary JSON or odd text (so they reach the
tools and the runs); the rest are arbitrary JSON, bytes, and the bodies that once answered 500 (JSON nested
5,000 deep, invalid UTF-8, a 4,301-digit id). For each: no 5xx; without the key, 401 first (or 422 for an
AG-UI body FastAPI cannot parse); an AG-UI stream that starts ends with RUN_FINISHED or RUN_ERROR; and the
service logs no traceback. (tests/test_schema_fuzz.py does the same for the REST API, from its schema.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ServerProcess, launch_service
from test_mcp_and_ag_ui import MCP_HEADERS, NOT_A_MESSAGE, UNPARSABLE, interrupted_run

pytestmark = [
    pytest.mark.slow,  # a service of its own and a few hundred requests, some of which run tasks
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),  # the 5,000-character strings, when shown
]

EXAMPLES = 60
KEY = "fuzz-key-0123"
KEYED = {"Authorization": f"Bearer {KEY}"}
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))

ODD_TEXT = st.sampled_from(["", " ", "\u200b", "\ufeff", "\u0301", "\x00", "\x07", "\ud800", "9" * 4301, "x" * 5000])
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20) | ODD_TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)
TEXT = st.text(min_size=1, max_size=40) | ODD_TEXT


def nested(depth: int) -> bytes:
    """A tool call whose arguments are objects nested `depth` deep."""
    return b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "get_delivery", "arguments": ' + (
        b'{"a": ' * depth + b"1" + b"}" * depth + b"}}"
    )


ODD_BODIES = [*UNPARSABLE.values(), *NOT_A_MESSAGE.values(), b"", b"\xef\xbb\xbf{}"] + [
    nested(depth) for depth in (500, 990, 5000)
]


def as_json(value: Any) -> bytes:
    return json.dumps(value).encode()


def mutated(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """`valid`'s objects, mostly as they are, or with one field removed or replaced by arbitrary JSON."""

    @st.composite
    def mutate(draw: st.DrawFn) -> dict[str, Any]:
        value = dict(draw(valid))
        if value and draw(st.integers(0, 3)) == 0:
            field = draw(st.sampled_from(sorted(value)))
            if draw(st.booleans()):
                del value[field]
            else:
                value[field] = draw(JSON_VALUES)
        return value

    return mutate()


def bodies(valid: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """Mostly (mutated) valid objects; also arbitrary JSON, bytes and the odd bodies."""
    encoded = mutated(valid).map(as_json)
    return st.one_of(
        encoded, encoded, encoded, JSON_VALUES.map(as_json), st.binary(max_size=100), st.sampled_from(ODD_BODIES)
    )


def test_mcp_never_answers_5xx(keyed_service: ServerProcess) -> None:
    url = f"{keyed_service.base_url}/mcp"
    task_ids = st.just(start_waiting_task(keyed_service)) | TEXT
    arguments = {
        "requirement": TEXT,
        "task_id": task_ids,
        "approved": st.booleans(),
        "feedback": TEXT,
        "priority": st.integers(0, 9),
        "skip_confirmation": st.booleans(),
    }
    tools = ["start_delivery", "get_delivery", "confirm_delivery", "cancel_delivery", "run_delivery"]
    deliverables = st.sampled_from(["QAEngineer"]) | TEXT
    uris = st.builds("delivery://tasks/{}/deliverables/{}".format, task_ids, deliverables)
    ids = st.integers(0, 2**53) | st.text(min_size=1, max_size=10) | ODD_TEXT
    params = {
        "tools/call": st.fixed_dictionaries(
            {"name": st.sampled_from(tools), "arguments": mutated(st.fixed_dictionaries({}, optional=arguments))}
        ),
        "resources/read": st.fixed_dictionaries({"uri": uris}),
        "initialize": st.just(
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "1"}}
        ),
        "tools/list": st.just({}),
        "ping": st.just({}),
        "notifications/initialized": st.just({}),
    }
    messages = st.sampled_from(sorted(params)).flatmap(
        lambda method: st.fixed_dictionaries(
            {"jsonrpc": st.just("2.0"), "id": ids, "method": st.just(method), "params": mutated(params[method])}
        )
    )

    @given(body=bodies(messages))
    @FUZZ
    def check(body: bytes) -> None:
        assert httpx.post(url, content=body, headers=MCP_HEADERS).status_code == 401
        response = httpx.post(url, content=body, headers={**MCP_HEADERS, **KEYED}, timeout=60)
        assert response.status_code < 500, (body[:300], response.status_code, response.text[:500])

    check()


def test_ag_ui_never_answers_5xx_and_every_stream_ends_with_the_runs_outcome(keyed_service: ServerProcess) -> None:
    url = f"{keyed_service.base_url}/api/ag-ui"
    task_id, interrupt = interrupted_run(keyed_service.base_url, KEYED)
    parts = st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), min_size=1, max_size=2)
    user_message = mutated(
        st.fixed_dictionaries({"id": st.just("m1"), "role": st.just("user"), "content": TEXT | parts})
    )
    options = {
        "skip_confirmation": st.booleans(),
        "stream_tokens": st.booleans(),
        "priority": st.integers(0, 9),
        "on_disconnect": st.sampled_from(["continue", "cancel"]),
    }
    interrupt_ids = st.sampled_from([interrupt.id, f"confirm-{task_id}x", "confirm-", "other"]) | TEXT
    payload = mutated(st.fixed_dictionaries({"approved": st.booleans()}, optional={"feedback": TEXT}))
    entry = {"interruptId": interrupt_ids, "status": st.sampled_from(["resolved", "cancelled"])}
    resume = st.lists(mutated(st.fixed_dictionaries(entry, optional={"payload": payload})), min_size=1, max_size=2)
    run_inputs = st.fixed_dictionaries(
        {
            "threadId": st.just("thread-1"),
            "runId": st.text(min_size=1, max_size=8),
            "state": st.just({}),
            "messages": st.lists(user_message, min_size=1, max_size=2),
            "tools": st.just([]),
            "context": st.just([]),
            "forwardedProps": mutated(st.fixed_dictionaries({}, optional=options)),
        },
        optional={"resume": resume},
    )

    @given(body=bodies(run_inputs))
    @FUZZ
    def check(body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        # A REST route: FastAPI reads the body before the key, so one it cannot parse is refused first (422).
        assert httpx.post(url, content=body, headers=headers).status_code in (401, 422)
        with httpx.stream("POST", url, content=body, headers={**headers, **KEYED}, timeout=60) as response:
            assert response.status_code < 500, (body[:300], response.status_code, response.read()[:500])
            if response.status_code == 200:
                kinds = [json.loads(line[6:])["type"] for line in response.iter_lines() if line.startswith("data: ")]
                assert kinds[0] == "RUN_STARTED" and kinds[-1] in ("RUN_FINISHED", "RUN_ERROR"), (body[:300], kinds)

    check()


@pytest.fixture(scope="module")
def keyed_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = launch_service(tmp_path_factory.mktemp("fuzz"), {"API_KEYS": KEY, "MAX_CONCURRENT_TASKS": "8"})
    yield server
    server.stop()
    log = server.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 300 :][:4000]


def start_waiting_task(server: ServerProcess) -> str:
    """A task of the key that will wait for confirmation (the tools' calls confirm, cancel and read it)."""
    body = {"user_requirement": "Build a todo app", "skip_confirmation": False}
    started = httpx.post(f"{server.base_url}/api/run_task", json=body, headers=KEYED)
    assert started.status_code == 202, started.text
    return str(started.json()["task_id"])
