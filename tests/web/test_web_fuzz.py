"""Property-based fuzzing of the served OpenAPI document against real gunicorn.

Schemathesis generates requests that follow the document (positive) and that violate it
(negative); every answer must be documented, match its declared schema and never be a 5xx.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-e2e")]

POSITIVE, NEGATIVE = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
CASES = [
    *[("POST", path, mode) for path in ("/predict", "/feedback") for mode in (POSITIVE, NEGATIVE)],
    ("GET", "/model", POSITIVE),
    ("GET", "/model", NEGATIVE),
    # The per-model routes; the GET's query string is fuzzed like a body (wrong types, extras, gaps).
    *[("GET", "/models/stroke/predict", mode) for mode in (POSITIVE, NEGATIVE)],
    ("POST", "/models/stroke/predict", NEGATIVE),
    ("GET", "/models", POSITIVE),
    ("GET", "/models/stroke", POSITIVE),
    *[("GET", path, POSITIVE) for path in ("/health", "/ready", "/metrics")],
]


# A batch over the row limit is a documented 413, which schemathesis does not count as a rejection.
REJECTIONS = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]


@pytest.fixture(scope="module")
def live_schema(live_service):
    """The document exactly as the running service publishes it (loading validates it)."""
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}
    )
    return schemathesis.openapi.from_url(f"{live_service.url}/openapi.json", config=config)


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=lambda v: getattr(v, "value", v))
def test_generated_requests_get_documented_answers_and_no_5xx(live_schema, live_service, method, path, mode):
    """It answers generated requests as documented, without a server error."""
    operation = live_schema[path][method]
    credentials = {"Authorization": f"Bearer {live_service.api_key}"}

    # An unknown feedback id costs the service a short wait for other workers' log batches.
    examples = 10 if path == "/feedback" else 30

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def answers_as_documented(case):
        case.call_and_validate(base_url=live_service.url, headers=credentials)

    answers_as_documented()
