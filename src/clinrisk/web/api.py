"""The prediction API: POST /predict and POST /feedback."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, g, jsonify

from clinrisk.predlog import PredictionLogError
from clinrisk.serving.champion import LoadedModel
from clinrisk.serving.scorer import columns_from_records
from clinrisk.web.auth import requires_auth
from clinrisk.web.errors import ApiError
from clinrisk.web.schemas import explain_requested, json_body, validate_feedback, validate_records

bp = Blueprint("api", __name__)


def score(
    loaded: LoadedModel, records: list[dict[str, Any]], user: str | None = None
) -> tuple[list[dict], list[dict]]:
    """One result per record, in order, and the matching prediction-log rows."""
    if loaded.model.is_regression:
        return score_regression(loaded, records)
    proba = loaded.scorer.proba(columns_from_records(records, loaded.model.spec))
    decisions = loaded.model.decide(proba)
    now = datetime.now(UTC)
    model_ref = {"name": loaded.name, "version": loaded.version}
    results, rows = [], []
    for record, probability, decision in zip(records, proba.tolist(), decisions.tolist(), strict=True):
        prediction_id = str(uuid.uuid4())
        results.append(
            {
                "prediction_id": prediction_id,
                "probability": probability,
                "prediction": decision,
                "threshold": loaded.model.threshold,
                "model": model_ref,
            }
        )
        rows.append(
            {
                "prediction_id": prediction_id,
                "created_at": now,
                "model_name": loaded.name,
                "model_version": loaded.version,
                "features": record,
                "probability": probability,
                "prediction": decision,
                "requested_by": user,
            }
        )
    return results, rows


def explanations_for(loaded: LoadedModel, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each record's reasons, with the values as the client sent them; 501 if no exact method exists."""
    import pandas as pd

    from clinrisk.bundle import BundleError
    from clinrisk.errors import ExplanationUnavailable
    from clinrisk.explain import explain

    if loaded.model.is_regression:
        raise ApiError(501, "explanation_unavailable", "explanations are given for classifications only")
    frame = pd.DataFrame(columns_from_records(records, loaded.model.spec))
    try:
        explanations = explain(loaded.model.explainable, frame)
    except (ExplanationUnavailable, BundleError) as exc:
        raise ApiError(501, "explanation_unavailable", str(exc)) from None
    out = []
    for record, explanation in zip(records, explanations, strict=True):
        found = explanation.as_dict()
        found["reasons"] = [{**r, "value": record.get(r["feature"])} for r in found["reasons"]]
        out.append(found)
    return out


def add_explanations(loaded: LoadedModel, records: list[dict[str, Any]], results: list[dict]) -> None:
    """Attach each record's reasons to its result (computed only when asked: it costs time)."""
    for result, explanation in zip(results, explanations_for(loaded, records), strict=True):
        result["explanation"] = explanation


def score_regression(loaded: LoadedModel, records: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """A regression's answers: the predicted outcome (target units) and the version, no probability.

    Not written to the prediction log yet: its table holds a probability and a 0/1 decision,
    and a numeric outcome needs its own columns (issue #16, per-model logs).
    """
    values = loaded.scorer.proba(columns_from_records(records, loaded.model.spec))
    model_ref = {"name": loaded.name, "version": loaded.version}
    results = [
        {
            "prediction_id": str(uuid.uuid4()),
            "prediction": value,
            "model_version": loaded.version,
            "model": model_ref,
        }
        for value in values.tolist()
    ]
    return results, []


@bp.post("/predict")
@requires_auth
def predict():
    """Score one patient object or an array of them with the champion."""
    runtime = current_app.extensions["clinrisk"]
    payload = json_body()
    _, loaded = runtime.serving()
    records, many = validate_records(payload, loaded.record_model, runtime.settings.max_batch_rows)
    results, rows = score(loaded, records, g.get("user"))
    if explain_requested():
        add_explanations(loaded, records, results)
    if rows:
        runtime.writer.submit(rows)
    runtime.metrics.count_predictions(loaded.name, loaded.version, len(results))
    response = jsonify(results if many else results[0])
    response.headers["X-Model-Version"] = loaded.version
    return response


@bp.post("/feedback")
@requires_auth
def feedback():
    """Store the observed outcome of a logged prediction."""
    runtime = current_app.extensions["clinrisk"]
    received = validate_feedback(json_body())
    try:
        receipt = runtime.writer.record_feedback(received.prediction_id, received.outcome, g.get("user"))
    except PredictionLogError:
        raise ApiError(
            503, "log_unavailable", "the prediction log is unavailable; see the server log"
        ) from None
    if receipt is None:
        message = f"no prediction with id {received.prediction_id} in the prediction log"
        raise ApiError(404, "unknown_prediction", message)
    return jsonify(receipt), 201
