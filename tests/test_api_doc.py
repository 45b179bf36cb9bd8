"""docs/api.md against the app's own OpenAPI schema: the reference must describe exactly what is served.

Routes are written `METHOD /path` in docs/api.md, with the path as the schema spells it; a page served
outside the schema is listed under "Pages outside the OpenAPI schema".
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import main  # builds the app without starting it: no model is loaded, no store opened
from delivery_service.http.routes.service import STATIC_DIR
from delivery_service.settings import Settings, get_settings
from delivery_service.store.records import TaskStatus
from delivery_service.store.task_event import EventType

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "api.md"
OUTSIDE_HEADING = "Pages outside the OpenAPI schema"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
ROUTE_MENTION = re.compile(r"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^\s`|,;)]*)")
ROUTE_HEADING = re.compile(r"^`(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/\S*)`$")
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$", re.MULTILINE)
SCHEMA_REF = re.compile(r'"#/components/schemas/([^"]+)"')
REQUEST_MODELS = {"RunTaskRequest", "ConfirmRequest", "FollowUpRequest", "WaiveRequest"}
# Another protocol's request models: its own specification documents their fields (AG-UI's RunAgentInput;
# the section names the ones the service reads).
PROTOCOL_REQUEST_MODELS = {"RunAgentInput"}


@cache
def schema() -> dict[str, Any]:
    return main.app.openapi()


@cache
def doc() -> str:
    return DOC_PATH.read_text(encoding="utf-8")


def operations() -> dict[str, dict[str, Any]]:
    """`METHOD /path` of every operation in the schema, with the operation."""
    return {
        f"{method.upper()} {path}": operation
        for path, item in schema()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def mentions(text: str) -> set[str]:
    """Every `METHOD /path` written in `text`, without query strings."""
    return {f"{method} {path.split('?', 1)[0]}" for method, path in ROUTE_MENTION.findall(text)}


def section(title: str) -> str:
    """The text under the heading `title`, up to the next heading of the same or a higher level."""
    headings = list(HEADING.finditer(doc()))
    for index, heading in enumerate(headings):
        if heading.group(2) == title:
            level = len(heading.group(1))
            end = next((h.start() for h in headings[index + 1 :] if len(h.group(1)) <= level), len(doc()))
            return doc()[heading.end() : end]
    raise AssertionError(f"docs/api.md has no heading {title!r}")


def route_sections() -> dict[str, str]:
    """The sections whose heading is a route, by `METHOD /path`."""
    found = {}
    for heading in HEADING.finditer(doc()):
        if match := ROUTE_HEADING.match(heading.group(2)):
            route = f"{match.group(1)} {match.group(2)}"
            assert route not in found, f"two sections for {route}"
            found[route] = section(heading.group(2))
    return found


def tables(text: str) -> list[list[list[str]]]:
    """The markdown tables of `text`: rows of cells, header first, separator row left out."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", cell) for cell in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def first_column(table: list[list[str]]) -> list[str]:
    """The backticked first cells of a table's body rows, without the backticks."""
    return [row[0].strip("`") for row in table[1:] if row[0].startswith("`")]


def table_with_header(text: str, first_header: str) -> list[list[str]]:
    for table in tables(text):
        if table[0][0] == first_header:
            return table
    raise AssertionError(f"no table with a {first_header!r} column in:\n{text[:300]}")


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    return schema()["components"]["schemas"][ref.rsplit("/", 1)[1]] if ref else node


def referenced_models(node: Any) -> set[str]:
    """Names of the component schemas `node` refers to, directly or through other components."""
    names: set[str] = set()
    pending = [node]
    while pending:
        for name in set(SCHEMA_REF.findall(json.dumps(pending.pop()))) - names:
            names.add(name)
            pending.append(schema()["components"]["schemas"][name])
    return names


def test_every_served_operation_has_a_section_and_a_table_row() -> None:
    served = set(operations())
    assert len(served) >= 10, served
    sections = set(route_sections())
    assert served - sections == set(), f"operations without a `### `METHOD /path`` section: {served - sections}"
    assert sections - served == set(), f"sections for routes the schema does not have: {sections - served}"
    cells = {cell.strip("`") for table in tables(doc()) for row in table for cell in row}
    assert served - cells == set(), f"operations missing from the route tables: {served - cells}"


def test_every_documented_route_is_served() -> None:
    outside = mentions(section(OUTSIDE_HEADING))
    assert {"GET /test-ui", "GET /docs", "GET /openapi.json"} <= outside
    assert outside & set(operations()) == set(), "a schema route is listed as outside the schema"
    unserved = mentions(doc()) - set(operations()) - outside
    assert unserved == set(), f"docs/api.md names routes that are not in /openapi.json: {unserved}"

    example_files = {
        "/static/": sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file())[0],
        "/docs-assets/": "swagger-ui-bundle.js",
    }
    client = TestClient(main.app)  # no lifespan: these pages need no service state
    for route in sorted(outside):
        method, path = route.split(" ", 1)
        prefix = next((prefix for prefix in example_files if path.startswith(prefix)), None)
        url = re.sub(r"\{[^}]+\}", example_files[prefix], path) if prefix else path
        assert "{" not in url, f"{route}: only {sorted(example_files)} may have a placeholder"
        # /mcp needs the running service (this client has none: it answers 503 saying so); its protocol is
        # tested against a real server in tests/test_mcp_and_ag_ui.py.
        expected = 503 if route == "POST /mcp" else 200
        assert client.request(method, url).status_code == expected, f"{route} is listed as served but does not answer"


def test_api_paths_named_without_a_method_exist() -> None:
    paths = set(schema()["paths"])
    named = {token.split("?", 1)[0] for token in re.findall(r"`(/api/[^`\s]*)`", doc()) if not token.endswith("*")}
    assert named - paths == set(), f"docs/api.md names /api paths the service does not have: {named - paths}"


@pytest.mark.parametrize("route", sorted(operations()))
def test_section_names_parameters_values_and_status_codes(route: str) -> None:
    operation = operations()[route]
    text = route_sections()[route]
    for parameter in operation.get("parameters", []):
        assert f"`{parameter['name']}`" in text, f"{route}: parameter {parameter['name']} is not named"
        for value in resolve(parameter["schema"]).get("enum", []):
            assert f"`{value}`" in text, f"{route}: {parameter['name']}={value} is not named"
        if "default" in parameter["schema"]:
            assert str(parameter["schema"]["default"]) in text, f"{route}: default of {parameter['name']}"
    for status in operation["responses"]:
        assert re.search(rf"\b{status}\b", text), f"{route}: status {status} is not mentioned"


def test_request_tables_match_the_request_models() -> None:
    checked = set()
    limit_setting_default = str(Settings.model_fields["max_requirement_chars"].default)
    for route, operation in operations().items():
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if body is None:
            continue
        name = body["$ref"].rsplit("/", 1)[1]
        if name in PROTOCOL_REQUEST_MODELS:
            continue
        model = resolve(body)
        table = table_with_header(route_sections()[route], "field")
        assert sorted(first_column(table)) == sorted(model["properties"]), f"{route}: fields of {name}"
        rows = {row[0].strip("`"): " | ".join(row[1:]) for row in table[1:]}
        for field, spec in model["properties"].items():
            row = rows[field]
            variants = spec.get("anyOf", [spec])  # a nullable field: its type, or null
            for variant in variants:
                kind = {"array": "list"}.get(variant["type"], variant["type"])
                assert kind in row, f"{name}.{field}: type {kind} not in {row!r}"
            if field in model.get("required", []):
                assert "required" in row, f"{name}.{field} is required"
            else:
                default = spec.get("default")  # a default of None is left out of the schema
                assert f"`{json.dumps(default)}`" in row, f"{name}.{field}: default {default!r}"
            spec = next(variant for variant in variants if variant["type"] != "null")
            if "minimum" in spec or "maximum" in spec:
                assert f"{spec['minimum']:g} to {spec['maximum']:g}" in row, f"{name}.{field}: range"
            if "maxLength" in spec:
                if "MAX_REQUIREMENT_CHARS" in row:  # a setting: the doc gives its default
                    assert spec["maxLength"] == get_settings().max_requirement_chars
                    assert limit_setting_default in row
                else:
                    assert str(spec["maxLength"]) in row, f"{name}.{field}: maxLength {spec['maxLength']}"
        checked.add(name)
    assert checked == REQUEST_MODELS


def test_every_response_field_is_named() -> None:
    models = referenced_models([operation["responses"] for operation in operations().values()])
    assert {"RunTaskResponse", "TaskStatusResponse", "TaskResultResponse", "TaskEvent"} <= models
    missing = {
        f"{model}.{field}"
        for model in models
        for field in schema()["components"]["schemas"][model].get("properties", {})
        if f"`{field}`" not in doc()
    }
    assert missing == set(), f"response fields docs/api.md does not name: {sorted(missing)}"


def test_event_fields_types_and_task_statuses() -> None:
    components = schema()["components"]["schemas"]
    enum_values = [member.value for member in EventType]
    assert components["EventType"]["enum"] == enum_values

    event_fields = first_column(table_with_header(section("Event stream"), "field"))
    assert sorted(event_fields) == sorted(components["TaskEvent"]["properties"])
    event_types = first_column(table_with_header(section("Event types"), "event_type"))
    assert sorted(event_types) == sorted(enum_values), "the event types table must list exactly EventType"

    statuses = first_column(table_with_header(section("Task lifecycle"), "status"))
    assert sorted(statuses) == sorted(member.value for member in TaskStatus) == sorted(components["TaskStatus"]["enum"])
