"""Request validation: every class of bad input is a 4xx listing each problem with its path."""

from __future__ import annotations

import json

import pytest
from web_support import PATIENT


def without(record: dict, field: str) -> dict:
    return {k: v for k, v in record.items() if k != field}


INVALID_RECORDS = [
    pytest.param({**PATIENT, "age": "sixty"}, "age", "float_type", id="wrong-type"),
    pytest.param({**PATIENT, "hypertension": "yes"}, "hypertension", "literal_error", id="wrong-binary"),
    pytest.param(without(PATIENT, "gender"), "gender", "missing", id="missing-field"),
    pytest.param({**PATIENT, "work_type": "Astronaut"}, "work_type", "literal_error", id="unknown-category"),
    pytest.param({**PATIENT, "age": 130}, "age", "less_than_equal", id="above-range"),
    pytest.param(
        {**PATIENT, "avg_glucose_level": 5}, "avg_glucose_level", "greater_than_equal", id="below-range"
    ),
    pytest.param({**PATIENT, "shoe_size": 42}, "shoe_size", "extra_forbidden", id="unknown-field"),
    pytest.param({**PATIENT, "bmi": "N/A"}, "bmi", "float_type", id="text-for-nullable-number"),
]


@pytest.mark.parametrize(("record", "field", "kind"), INVALID_RECORDS)
def test_invalid_record_is_422_naming_the_field(client, record, field, kind):
    """It answers 422 naming the offending field and the kind of error."""
    response = client.post("/predict", json=record)
    assert response.status_code == 422
    assert {"field": field, "loc": [field], "type": kind} == {
        k: response.json["errors"][0][k] for k in ("field", "loc", "type")
    }


def test_every_problem_of_a_batch_is_listed_with_its_index(client):
    """It lists every problem of every record, each with its position in the array."""
    batch = [PATIENT, {**PATIENT, "age": -1, "gender": "X"}, {**PATIENT, "extra": 1}, "not an object"]
    response = client.post("/predict", json=batch)
    assert response.status_code == 422
    fields = sorted(problem["field"] for problem in response.json["errors"])
    assert fields == ["[1].age", "[1].gender", "[2].extra", "[3]"]


@pytest.mark.parametrize("body", ["{not json", "", '{"age": 1', "[" * 50_000 + "]" * 50_000])
def test_malformed_json_is_400(client, body):
    """It answers 400 with a JSON error for a body that is not JSON (even deeply nested)."""
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json["error"] == "malformed_json"
    assert response.json["errors"][0]["field"] == "body"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_415(client, content_type):
    """It answers 415 when the body is not declared as JSON."""
    response = client.post("/predict", data=json.dumps(PATIENT), content_type=content_type)
    assert response.status_code == 415
    assert response.json["error"] == "unsupported_media_type"


def test_array_over_the_limit_is_413(client, shared_app):
    """It answers 413 for more records than max_batch_rows."""
    limit = shared_app.extensions["clinrisk"].settings.max_batch_rows
    response = client.post("/predict", json=[PATIENT] * (limit + 1))
    assert response.status_code == 413
    assert response.json["error"] == "too_many_records"


def test_body_over_the_size_limit_is_413(client, shared_app):
    """It answers 413 with a JSON body when the body exceeds max_body_bytes."""
    limit = shared_app.extensions["clinrisk"].settings.max_body_bytes
    response = client.post("/predict", data=b" " * (limit + 1), content_type="application/json")
    assert response.status_code == 413
    assert response.json["error"] == "payload_too_large"


@pytest.mark.parametrize(
    "body", ["[]", "42", '"patient"', "null"], ids=["empty-array", "number", "string", "null"]
)
def test_body_that_is_neither_object_nor_array_of_objects_is_422(client, body):
    """It answers 422 for an empty array or a scalar body."""
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "body"


def test_non_finite_number_is_422(client):
    """It rejects NaN and Infinity, which Python's JSON parser would otherwise accept."""
    body = json.dumps(PATIENT).replace("228.69", "NaN")
    response = client.post("/predict", data=body, content_type="application/json")
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "avg_glucose_level"


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({**PATIENT, "bmi": None}, id="bmi-null"),
        pytest.param(without(PATIENT, "bmi"), id="bmi-absent"),
        pytest.param({**without(PATIENT, "Residence_type"), "residence_type": "Rural"}, id="lowercase-alias"),
        pytest.param({**PATIENT, "age": 0.08}, id="infant-age"),
    ],
)
def test_accepted_variants_score(client, record):
    """It scores a missing bmi, the residence_type alias and fractional ages."""
    response = client.post("/predict", json=record)
    assert response.status_code == 200, response.json
    assert 0.0 <= response.json["probability"] <= 1.0


def test_unknown_route_and_method_answer_json(client):
    """It answers 404 and 405 as JSON, not HTML."""
    assert client.get("/nowhere").json["error"] == "not_found"
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
