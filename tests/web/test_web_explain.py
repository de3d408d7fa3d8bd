"""POST /predict?explain=true: reasons that add up, only when asked, documented in OpenAPI."""

from __future__ import annotations

import numpy as np
import pytest
from web_support import PATIENT


def _logit(p: float) -> float:
    return float(np.log(p) - np.log1p(-p))


def test_reasons_add_up_to_the_log_odds_of_the_probability(client):
    """Each result carries every feature's contribution; base + sum = log-odds of `probability`."""
    batch = [PATIENT, {**PATIENT, "age": 30, "bmi": None, "heart_disease": 0}]
    response = client.post("/predict?explain=true", json=batch)
    assert response.status_code == 200
    for result in response.json:
        explanation = result["explanation"]
        total = explanation["base_value"] + sum(r["contribution"] for r in explanation["reasons"])
        assert explanation["scale"] == "log-odds"
        assert total == pytest.approx(_logit(result["probability"]), abs=1e-6)
        assert set(explanation["reasons"][0]) == {"feature", "value", "contribution"}


@pytest.mark.parametrize("query", ["", "?explain=false"])
def test_no_reasons_unless_asked(client, query):
    """Without explain=true the answer has no explanation (it costs time)."""
    response = client.post(f"/predict{query}", json=PATIENT)
    assert response.status_code == 200
    assert "explanation" not in response.json


@pytest.mark.parametrize("value", ["maybe", "2", "yes please", "1", "0", "TRUE", "", "yes"])
def test_a_bad_explain_flag_is_422_naming_it(client, value):
    """An explain value other than the OpenAPI booleans true/false is refused with its name."""
    response = client.post("/predict", query_string={"explain": value}, json=PATIENT)
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "query.explain"


def test_openapi_says_what_the_numbers_mean(shared_app):
    """The document describes the probability as a calibrated risk and the explanation's scale."""
    document = shared_app.test_client().get("/openapi.json").json
    schemas = document["components"]["schemas"]
    assert "Calibrated risk" in schemas["PredictionResult"]["properties"]["probability"]["description"]
    assert "log-odds" in schemas["ExplanationOut"]["properties"]["scale"]["description"]
    parameters = document["paths"]["/predict"]["post"]["parameters"]
    assert parameters[0]["name"] == "explain" and parameters[0]["in"] == "query"
