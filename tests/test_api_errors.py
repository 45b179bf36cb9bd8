"""Bad input gets a clear 422, unknown tasks a JSON 404, unfinished results a 409."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError

from conftest import ServerProcess, start_task, status, wait_until
from delivery_service.http.api_models import ConfirmRequest, FollowUpRequest, RunTaskRequest
from delivery_service.http.visible_text import is_visible, visible_text_pattern

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"user_requirement": ""}, "user_requirement has no visible character: it is empty"),
        ({"user_requirement": "   \n\t "}, "user_requirement has no visible character: it is empty"),
        ({"user_requirement": "\u0085\u3000"}, "user_requirement has no visible character: it is empty"),
        (
            {"user_requirement": "\u200b"},
            "user_requirement has no visible character: it contains only U+200B ZERO WIDTH SPACE.",
        ),
        ({"user_requirement": "\ufeff\u200b\ufeff"}, "only U+FEFF ZERO WIDTH NO-BREAK SPACE, U+200B ZERO WIDTH SPACE."),
        (
            {"user_requirement": "\u0301\u20dd"},
            "only U+0301 COMBINING ACUTE ACCENT, U+20DD COMBINING ENCLOSING CIRCLE.",
        ),
        ({"user_requirement": "\x01\x7f"}, "only U+0001 (a control character), U+007F (a control character)."),
        ({"user_requirement": "x" * 20001}, "at most 20000 characters. The limit is MAX_REQUIREMENT_CHARS."),
        ({"user_requirement": "ok\x00"}, "NUL characters"),
        ({"user_requirement": "\x00"}, "NUL characters"),
        ({"user_requirement": "a\x00b"}, "NUL characters"),
        ({}, "The field user_requirement is required"),
        ({"user_requirement": 42}, "The field user_requirement must be a string"),
        ({"user_requirement": ["a"]}, "The field user_requirement must be a string"),
        ({"user_requirement": "ok", "skip_confirmation": "yes"}, "skip_confirmation must be true or false"),
        ({"user_requirement": "ok", "stream_tokens": 1}, "stream_tokens must be true or false"),
        ({"user_requirement": "ok", "priority": 10}, "The field priority must be at most 9."),
        ({"user_requirement": "ok", "priority": -1}, "The field priority must be at least 0."),
        ({"user_requirement": "ok", "priority": "1"}, "priority must be a whole number"),
        ({"user_requirement": "ok", "priority": 1.5}, "priority"),
        ({"user_requirement": "ok", "unexpected": 1}, "Unknown field unexpected"),
        (["user_requirement"], "must be a JSON object"),
    ],
)
def test_bad_bodies_get_422_with_a_readable_message(slow_service: ServerProcess, body: Any, message: str) -> None:
    before = httpx.get(f"{slow_service.base_url}/api/tasks").json()["total"]
    response = httpx.post(f"{slow_service.base_url}/api/run_task", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(message in error["msg"] for error in detail), detail
    assert all("input" not in error for error in detail), "the rejected input is not echoed back"
    assert httpx.get(f"{slow_service.base_url}/api/tasks").json()["total"] == before, "no task was created"


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"{not json", "application/json", "not valid JSON"),
        (b"", "application/json", "The request body is empty"),
        (b"user_requirement=hi", "application/x-www-form-urlencoded", "must be a JSON object"),
        (b"\xff\xfe{}", "application/json", "not valid JSON"),
    ],
)
def test_non_json_bodies_get_422(slow_service: ServerProcess, content: bytes, content_type: str, message: str) -> None:
    response = httpx.post(
        f"{slow_service.base_url}/api/run_task", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code == 422
    assert any(message in error["msg"] for error in response.json()["detail"])


def test_accepted_task_answers_202_with_location(slow_service: ServerProcess) -> None:
    response = httpx.post(
        f"{slow_service.base_url}/api/run_task", json={"user_requirement": "  padded requirement  ", "priority": 9}
    )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] in {"started", "queued"}
    assert response.headers["location"] == body["status_url"] == f"/api/task/{body['task_id']}/status"
    assert body["stream_url"] == f"/api/stream/{body['task_id']}"
    tasks = httpx.get(f"{slow_service.base_url}/api/tasks").json()["tasks"]
    assert next(t for t in tasks if t["task_id"] == body["task_id"])["requirement"] == "padded requirement"


def test_the_requirement_is_counted_after_trimming(slow_service: ServerProcess) -> None:
    """MAX_REQUIREMENT_CHARS (20000 here) applies to the trimmed text: surrounding blanks do not count."""
    longest = "x" * 20000
    response = httpx.post(f"{slow_service.base_url}/api/run_task", json={"user_requirement": f"  \n{longest}\t  "})
    assert response.status_code == 202, response.text
    httpx.post(f"{slow_service.base_url}/api/task/{response.json()['task_id']}/cancel")
    too_long = httpx.post(f"{slow_service.base_url}/api/run_task", json={"user_requirement": f"  {longest}y  "})
    assert too_long.status_code == 422


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_max_body_bytes_gets_json_413(slow_service: ServerProcess, chunked: bool) -> None:
    """Announced by Content-Length or only counted as it arrives: the same JSON error and headers."""
    body = b'{"user_requirement": "' + b"x" * 300_000 + b'"}'
    content = iter([body[:1000], body[1000:]]) if chunked else body
    response = httpx.post(
        f"{slow_service.base_url}/api/run_task", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert "MAX_BODY_BYTES (262144 bytes)" in response.json()["detail"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/stream/{UNKNOWN_ID}",
        f"/api/task/{UNKNOWN_ID}/status",
        f"/api/task/{UNKNOWN_ID}/result",
        "/api/task/..%2F..%2Fetc%2Fpasswd/status",
        "/api/stream/not-a-task",
    ],
)
def test_unknown_task_ids_get_json_404(slow_service: ServerProcess, path: str) -> None:
    response = httpx.get(f"{slow_service.base_url}{path}")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert "not found" in response.json()["detail"].lower()


def test_result_is_409_until_the_task_finishes(slow_service: ServerProcess) -> None:
    base = slow_service.base_url
    task_id = start_task(base)
    response = httpx.get(f"{base}/api/task/{task_id}/result")
    assert response.status_code == 409
    assert "ready when it has finished" in response.json()["detail"]
    wait_until(lambda: status(base, task_id)["status"] == "completed", 120, "the task")
    assert httpx.get(f"{base}/api/task/{task_id}/result").status_code == 200


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Last-Event-ID": "abc"}, None),
        ({"Last-Event-ID": "-1"}, None),
        (None, {"last_event_id": "-3"}),
        (None, {"last_event_id": "x"}),
    ],
)
def test_bad_resume_positions_get_422(slow_service: ServerProcess, headers: Any, params: Any) -> None:
    task_id = start_task(slow_service.base_url)
    response = httpx.get(f"{slow_service.base_url}/api/stream/{task_id}", headers=headers, params=params)
    assert response.status_code == 422


def test_list_parameters_are_validated(slow_service: ServerProcess) -> None:
    assert httpx.get(f"{slow_service.base_url}/api/tasks", params={"limit": 0}).status_code == 422
    assert httpx.get(f"{slow_service.base_url}/api/tasks", params={"offset": -1}).status_code == 422
    page = httpx.get(f"{slow_service.base_url}/api/tasks", params={"limit": 2, "offset": 0}).json()
    assert len(page["tasks"]) <= 2


def test_service_endpoints(slow_service: ServerProcess) -> None:
    base = slow_service.base_url
    health = httpx.get(f"{base}/healthz").json()
    assert health["status"] == "ok" and health["model"]["provider"] == "fake"
    assert httpx.get(f"{base}/readyz").json() == {"ready": True, "checks": {"store": "ok", "tasks": "ok"}}
    schema = httpx.get(f"{base}/openapi.json").json()
    paths = {"/api/run_task", "/api/stream/{task_id}", "/api/task/{task_id}/status", "/api/task/{task_id}/result"}
    assert paths <= set(schema["paths"])
    stream_200 = schema["paths"]["/api/stream/{task_id}"]["get"]["responses"]["200"]["content"]
    assert stream_200 == {"text/event-stream": {"schema": {"$ref": "#/components/schemas/TaskEvent"}}}
    event_fields = {"task_id", "sequence", "agent_name", "event_type", "content", "timestamp", "agent", "type"}
    assert event_fields | {"metadata"} == set(schema["components"]["schemas"]["TaskEvent"]["properties"])
    assert "text/html" in httpx.get(f"{base}/docs").headers["content-type"]
    ui = httpx.get(f"{base}/test-ui")
    assert ui.status_code == 200 and "EventSource" in httpx.get(f"{base}/static/test_ui.js").text


VISIBLE_OR_NOT = [
    ("a\x00b", False),
    ("\x00", False),
    (" \x00 ", False),
    ("", False),
    ("  ", False),
    ("\u0085", False),
    ("\u2028\u3000", False),
    ("\ufeff", False),
    ("\u200b\u200c\u200d\u2060", False),
    ("\u0301\u20dd", False),
    ("\x01\x1b", False),
    ("\U000e0041\U0001d167", False),
    ("x", True),
    (" 待办 ", True),
    ("😀", True),
    ("\u200bx\u200b", True),
    ("e\u0301", True),
    ("\U0001f468\u200d\U0001f469", True),
    ("\ue000", True),
]


@pytest.mark.parametrize(("text", "valid"), VISIBLE_OR_NOT)
@pytest.mark.parametrize(
    ("model", "field", "others"),
    [
        (RunTaskRequest, "user_requirement", {}),
        (FollowUpRequest, "request", {}),
        (ConfirmRequest, "feedback", {"approved": False}),
    ],
)
def test_every_text_field_needs_a_visible_character(
    model: type[BaseModel], field: str, others: dict[str, Any], text: str, valid: bool
) -> None:
    """The one rule (`require_visible`) in every request model that takes text, and in its schema."""
    schema = model.model_json_schema()
    properties = schema.get("then", schema)["properties"]
    matches = re.search(properties[field]["pattern"], text) is not None
    assert matches is valid, "a client checking the schema is not misled"
    try:
        model(**{field: text, **others})
    except ValidationError as exc:
        assert not valid
        assert str(exc.errors()[0]["msg"]).startswith(f"Value error, {field} "), exc.errors()
    else:
        assert valid


def test_the_schema_pattern_is_the_visible_character_rule_for_every_code_point() -> None:
    pattern = re.compile(visible_text_pattern())
    disagree = [code for code in range(1, 0x110000) if (pattern.search(chr(code)) is not None) != is_visible(chr(code))]
    assert disagree == []
    assert pattern.search("\x00") is None


def test_follow_ups_and_rejections_refuse_invisible_text_with_422(slow_service: ServerProcess) -> None:
    base = slow_service.base_url
    task_id = start_task(base)
    follow_up = httpx.post(f"{base}/api/task/{task_id}/follow_up", json={"request": "\u200b\u200b"})
    assert follow_up.status_code == 422
    assert "request has no visible character: it contains only U+200B ZERO WIDTH SPACE." in follow_up.text
    confirm = httpx.post(f"{base}/api/task/{task_id}/confirm", json={"approved": False, "feedback": "\ufeff"})
    assert confirm.status_code == 422
    assert "feedback has no visible character: it contains only U+FEFF ZERO WIDTH NO-BREAK SPACE." in confirm.text
