"""Property-based fuzzing of the served OpenAPI document against real gunicorn: no 5xx, ever."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-e2e")]


@pytest.fixture
def live_schema(live_service):
    """The document as the running service publishes it, with its base URL."""
    return schemathesis.openapi.from_url(f"{live_service.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_generated_requests_never_get_a_server_error(case, live_service):
    """It answers schema-valid and schema-violating requests without a 5xx, as documented."""
    case.call_and_validate(headers={"Authorization": f"Bearer {live_service.api_key}"})
