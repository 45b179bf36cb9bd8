"""schemathesis against the service's own /openapi.json: every operation, a bounded number of generated
requests each; no 5xx, and every response matches the documented status codes, types and schemas."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from conftest import ServerProcess

pytestmark = pytest.mark.slow

EXAMPLES_PER_OPERATION = 30


def test_every_operation_keeps_its_contract(fake_service: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{fake_service.base_url}/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(timeout=30)

        check()
        checked.append(operation.label)
    assert len(checked) >= 10, checked
