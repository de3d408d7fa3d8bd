"""The API on the Flask test client: results, ordering, model endpoints, feedback, docs and metrics."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid

import pandas as pd
import pytest
from web_support import PATIENT

from clinrisk import predlog

RESULT_KEYS = {"prediction_id", "probability", "prediction", "threshold", "model"}


def test_one_patient_gives_probability_decision_threshold_and_version(client, logistic_model):
    """It answers one object with probability, decision, threshold and the model version."""
    response = client.post("/predict", json=PATIENT)
    assert response.status_code == 200
    body = response.json
    assert set(body) == RESULT_KEYS
    assert uuid.UUID(body["prediction_id"]).version == 4
    assert body["model"] == {"name": "stroke", "version": "1"}
    assert response.headers["X-Model-Version"] == "1"
    assert body["threshold"] == logistic_model.threshold
    assert body["prediction"] == int(body["probability"] >= body["threshold"])
    expected = logistic_model.predict_proba(pd.DataFrame([PATIENT]))[0]
    assert body["probability"] == pytest.approx(expected, abs=1e-9)


def test_an_array_gives_an_array_in_the_same_order(client, logistic_model):
    """It answers an array with one result per patient, in the order sent."""
    batch = [{**PATIENT, "age": age, "bmi": None if age % 20 else 30.0} for age in range(5, 95, 5)]
    response = client.post("/predict", json=batch)
    assert response.status_code == 200
    expected = logistic_model.predict_proba(pd.DataFrame(batch).astype({"bmi": float}))
    assert [r["probability"] for r in response.json] == pytest.approx(list(expected), abs=1e-9)
    assert len({r["prediction_id"] for r in response.json}) == len(batch)


def test_an_array_of_one_gives_an_array_of_one(client):
    """It keeps the shape: an array in gives an array out, even with one element."""
    response = client.post("/predict", json=[PATIENT])
    assert isinstance(response.json, list) and len(response.json) == 1


def test_each_prediction_is_logged_with_its_features(client, shared_app):
    """It writes every prediction (id, version, features, probability, decision) to the log."""
    ids = [r["prediction_id"] for r in client.post("/predict", json=[PATIENT, {**PATIENT, "bmi": None}]).json]
    runtime = shared_app.extensions["clinrisk"]
    assert runtime.writer.flush()
    window = predlog.read_window(runtime.writer.engine, "stroke").set_index("prediction_id").loc[ids]
    assert list(window["model_version"]) == ["1", "1"]
    assert window["age"].tolist() == [67, 67]
    assert window["bmi"].isna().tolist() == [False, True]


def test_feedback_is_stored_and_read_back_with_the_prediction(client, shared_app):
    """It stores an outcome for a known prediction and the monitor's window joins it."""
    prediction_id = client.post("/predict", json=PATIENT).json["prediction_id"]
    response = client.post("/feedback", json={"prediction_id": prediction_id, "outcome": 1})
    assert response.status_code == 201
    assert response.json["prediction_id"] == prediction_id
    window = predlog.read_window(shared_app.extensions["clinrisk"].writer.engine, "stroke")
    assert window.set_index("prediction_id").loc[prediction_id, "outcome"] == 1


def test_feedback_for_an_unknown_prediction_is_404(client):
    """It answers 404 when the prediction id is not in the log."""
    response = client.post("/feedback", json={"prediction_id": str(uuid.uuid4()), "outcome": 0})
    assert response.status_code == 404


SPELLINGS = {
    "upper case": str.upper,
    "braces": lambda i: "{" + i + "}",
    "upper case in braces": lambda i: "{" + i.upper() + "}",
    "urn": lambda i: "urn:uuid:" + i,
    "upper-case urn": lambda i: ("urn:uuid:" + i).upper(),
    "no hyphens": lambda i: i.replace("-", ""),
}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_feedback_finds_a_prediction_by_any_accepted_spelling_of_its_id(client, shared_app, spelling):
    """Every spelling the schema accepts is stored and compared as the lower-case hyphenated id."""
    prediction_id = client.post("/predict", json=PATIENT).json["prediction_id"]
    response = client.post(
        "/feedback", json={"prediction_id": SPELLINGS[spelling](prediction_id), "outcome": 1}
    )
    assert response.status_code == 201, response.json
    assert response.json["prediction_id"] == prediction_id
    window = predlog.read_window(shared_app.extensions["clinrisk"].writer.engine, "stroke")
    assert window.set_index("prediction_id").loc[prediction_id, "outcome"] == 1


@pytest.mark.parametrize(
    "spelled",
    ["{%s", "%s}", "urn:%s", "{{%s}}", " %s", "%s-"],
    ids=[
        "open-brace",
        "close-brace",
        "urn-without-uuid",
        "double-braces",
        "leading-space",
        "trailing-hyphen",
    ],
)
def test_other_spellings_of_an_id_are_422_not_404(client, spelled):
    """A malformed id is a validation error naming the field, never 'unknown prediction'."""
    body = {"prediction_id": spelled % uuid.uuid4(), "outcome": 1}
    response = client.post("/feedback", json=body)
    assert response.status_code == 422 and response.json["errors"][0]["field"] == "prediction_id"


@pytest.mark.parametrize(
    "given", ["nope", "{%s", "%s-", "12345", ""], ids=["word", "brace", "hyphen", "digits", "empty"]
)
def test_a_malformed_id_is_explained_not_quoted_as_a_regex(client, given):
    """The 422 says a prediction id is the UUID a predict route returned, with an example; no pattern."""
    body = {"prediction_id": given.replace("%s", str(uuid.uuid4())), "outcome": 1}
    (found,) = client.post("/feedback", json=body).json["errors"]
    assert found["field"] == "prediction_id" and found["msg"].startswith("not a prediction id: send back")
    assert "UUID such as '" in found["msg"] and "[0-9a-fA-F]" not in found["msg"] and "^" not in found["msg"]


def test_the_openapi_document_still_gives_the_ids_pattern(shared_app):
    """Clients (and the fuzzer) still read the accepted spellings of an id from the schema."""
    from clinrisk.web.schemas import UUID_PATTERN

    schemas = shared_app.test_client().get("/openapi.json").json["components"]["schemas"]
    feedback = [s for s in schemas.values() if s.get("title") in ("Feedback", "RegressionFeedback")]
    assert feedback and all(s["properties"]["prediction_id"]["pattern"] == UUID_PATTERN for s in feedback)


@pytest.mark.parametrize(
    "body",
    [
        {"prediction_id": "nope", "outcome": 1},
        {"prediction_id": str(uuid.uuid4()), "outcome": 2},
        {"prediction_id": str(uuid.uuid4())},
        {"prediction_id": str(uuid.uuid4()), "outcome": 1, "x": 1},
    ],
    ids=["bad-id", "bad-outcome", "missing-outcome", "extra-field"],
)
def test_invalid_feedback_is_422(client, body):
    """It validates feedback like predictions: 422 with the field named."""
    response = client.post("/feedback", json=body)
    assert response.status_code == 422
    assert response.json["errors"]


def test_model_describes_the_champion_and_its_scoring_path(client):
    """It shows version, threshold, metrics, provenance and the lean scorer verified at registration."""
    body = client.get("/model").json
    assert body["version"] == "1" and body["status"] == "ready"
    assert {"threshold", "holdout_metrics", "trained_at", "data_sha256"} <= set(body)
    assert body["scoring_path"]["active"] == "numpy"  # logistic regression
    assert body["scoring_path"]["verified_rows"] == 5110
    assert body["scoring_path"]["max_abs_diff"] <= 1e-5


def test_health_and_ready_are_open(shared_app):
    """It answers /health and /ready without credentials."""
    client = shared_app.test_client()
    assert client.get("/health").json == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json["model"] == {"name": "stroke", "version": "1"}


def test_metrics_count_requests_and_predictions_by_version(client, shared_app):
    """It exposes request counts and latency by endpoint, status and model, predictions by version."""
    client.post("/predict", json=[PATIENT, PATIENT])
    client.post("/predict", json={})
    text = shared_app.test_client().get("/metrics").get_data(as_text=True)
    assert re.search(
        r'clinrisk_http_requests_total\{endpoint="/predict",method="POST",'
        r'model="stroke",status="422"\} [1-9]',
        text,
    )
    assert 'clinrisk_http_request_duration_seconds_bucket{endpoint="/predict"' in text
    assert re.search(r'clinrisk_predictions_total\{model="stroke",version="1"\} [2-9]', text)


def test_openapi_request_schema_comes_from_the_spec(shared_app, stroke_spec):
    """It publishes the spec's categories, ranges and the batch limit in the OpenAPI document."""
    document = shared_app.test_client().get("/openapi.json").json
    record = document["components"]["schemas"]["StrokeRecord"]
    assert record["properties"]["work_type"]["enum"] == stroke_spec.features["work_type"].categories
    assert record["properties"]["age"]["maximum"] == stroke_spec.features["age"].max
    assert record["additionalProperties"] is False
    body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["anyOf"][1]["maxItems"] == shared_app.extensions["clinrisk"].settings.max_batch_rows
    assert document["paths"]["/predict"]["post"]["security"]


def test_docs_page_loads_every_asset_from_the_service(shared_app):
    """It serves Swagger UI and its assets itself: no CDN."""
    client = shared_app.test_client()
    page = client.get("/docs").get_data(as_text=True)
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources and all(s.startswith("/docs/") for s in sources)
    assert all(client.get(s).status_code == 200 for s in sources)
    assert "/openapi.json" in page


def test_the_web_layer_never_imports_training_code_flows_or_evidently():
    """It imports every web and serving module without training code, flows, monitoring or Evidently."""
    script = (
        "import sys, clinrisk.web as w, clinrisk.web.api, clinrisk.web.ops, clinrisk.web.docs,"
        " clinrisk.web.runtime, clinrisk.web.commands, clinrisk.serving.onnx_scorer;"
        "print(' '.join(sorted(sys.modules)))"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    forbidden = {
        "clinrisk.train",
        "clinrisk.features",
        "clinrisk.retraining",
        "clinrisk.promotion",
        "evidently",
    }
    assert not forbidden & loaded
    assert not {m for m in loaded if m.startswith(("clinrisk.flows", "clinrisk.monitoring", "prefect"))}
