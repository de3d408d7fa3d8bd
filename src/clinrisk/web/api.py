"""The prediction API, per model: /models/<name>/predict (POST a body, or GET query parameters)
and /models/<name>/feedback; /predict and /feedback serve the default model (CLINRISK_MODEL_NAME)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from clinrisk.predlog import PredictionLogError
from clinrisk.serving.champion import LoadedModel
from clinrisk.serving.scorer import columns_from_records, probabilities_of_records
from clinrisk.web.auth import requires_auth
from clinrisk.web.errors import ApiError
from clinrisk.web.schemas import (
    EXPLAIN,
    explain_requested,
    json_body,
    record_from_query,
    validate_feedback,
    validate_records,
)

bp = Blueprint("api", __name__)


def score(
    loaded: LoadedModel, records: list[dict[str, Any]], user: str | None = None
) -> tuple[list[dict], list[dict]]:
    """One result per record, in order, and the matching prediction-log rows."""
    if loaded.model.is_regression:
        return score_regression(loaded, records, user)
    proba = probabilities_of_records(loaded.scorer, records, loaded.model.spec)
    decisions = loaded.model.decide_each(proba)
    now = datetime.now(UTC)
    model_ref = {"name": loaded.name, "version": loaded.version}
    results, rows = [], []
    for record, probability, decision in zip(records, proba, decisions, strict=True):
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
        rows.append(log_row(loaded, prediction_id, now, record, probability, decision, user))
    return results, rows


def log_row(
    loaded: LoadedModel,
    prediction_id: str,
    now: datetime,
    record: dict[str, Any],
    probability: float | None,
    prediction: float,
    user: str | None,
) -> dict[str, Any]:
    """One prediction-log row (`clinrisk.predlog`); a regression has no probability."""
    return {
        "prediction_id": prediction_id,
        "created_at": now,
        "model_name": loaded.name,
        "model_version": loaded.version,
        "features": record,
        "probability": probability,
        "prediction": prediction,
        "requested_by": user,
    }


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


def score_regression(loaded: LoadedModel, records: list[dict[str, Any]], user: str | None = None):
    """A regression's answers: the predicted outcome (target units) and the version, no probability.

    Logged like a classification's, with no probability and the value as `prediction`.
    """
    values = probabilities_of_records(loaded.scorer, records, loaded.model.spec)
    now = datetime.now(UTC)
    model_ref = {"name": loaded.name, "version": loaded.version}
    results, rows = [], []
    for record, value in zip(records, values, strict=True):
        prediction_id = str(uuid.uuid4())
        results.append(
            {
                "prediction_id": prediction_id,
                "prediction": value,
                "model_version": loaded.version,
                "model": model_ref,
            }
        )
        rows.append(log_row(loaded, prediction_id, now, record, None, value, user))
    return results, rows


def _runtime():
    return current_app.extensions["clinrisk"]


def served(name: str | None):
    """The model's slot (404 for a name not served), remembered for the request's metrics label."""
    slot = _runtime().slot(name)
    g.model_name = slot.name
    return slot


def champion(name: str | None) -> LoadedModel:
    """The model's champion, read once per request: a swap never changes it under the request."""
    _, loaded = _runtime().serving(name)
    return loaded


def answer(loaded: LoadedModel, payload: Any):
    """Validate `payload` (one patient or an array) against the champion's spec, score, log, answer."""
    runtime = _runtime()
    records, many = validate_records(payload, loaded.record_model, runtime.settings.max_batch_rows)
    results, rows = score(loaded, records, g.get("user"))
    if explain_requested():
        add_explanations(loaded, records, results)
    runtime.writer.submit(rows)
    runtime.metrics.count_predictions(loaded.name, loaded.version, len(results))
    response = jsonify(results if many else results[0])
    response.headers["X-Model-Version"] = loaded.version
    return response


@bp.post("/predict")
@requires_auth
def predict():
    """Score one patient object or an array of them with the default model's champion."""
    served(None)
    payload = json_body()
    return answer(champion(None), payload)


@bp.post("/models/<name>/predict")
@requires_auth
def predict_model(name: str):
    """Score one patient object or an array of them with the named model's champion."""
    served(name)
    payload = json_body()
    return answer(champion(name), payload)


@bp.get("/models/<name>/predict")
@requires_auth
def predict_query(name: str):
    """Score the one patient given as query parameters (`?age=67&...`), named as in the spec.

    The parameters become a record through the champion's spec (aliases, numbers parsed) and are
    then validated exactly as a POSTed object, with the same errors: a parameter given twice, an
    unknown one or a value that is not a number is a 422 naming it.
    """
    served(name)
    loaded = champion(name)
    params = request.args.copy()
    if EXPLAIN not in loaded.model.spec.features:
        params.poplist(EXPLAIN)
    return answer(loaded, record_from_query(loaded.model.spec, params))


def receive_feedback(name: str | None):
    """Store the observed outcome of a prediction the model made: 201, 404 when it made none."""
    runtime = _runtime()
    slot = served(name)
    received = validate_feedback(json_body(), regression=slot.spec.is_regression)
    try:
        receipt = runtime.writer.record_feedback(
            received.prediction_id, received.outcome, g.get("user"), model_name=slot.name
        )
    except PredictionLogError:
        raise ApiError(
            503, "log_unavailable", "the prediction log is unavailable; see the server log"
        ) from None
    if receipt is None:
        message = f"no prediction with id {received.prediction_id} by model {slot.name} in the prediction log"
        raise ApiError(404, "unknown_prediction", message)
    return jsonify(receipt), 201


@bp.post("/feedback")
@requires_auth
def feedback():
    """Store the observed outcome of a prediction of the default model."""
    return receive_feedback(None)


@bp.post("/models/<name>/feedback")
@requires_auth
def feedback_model(name: str):
    """Store the observed outcome of a prediction of the named model (0/1, or a regression's number)."""
    return receive_feedback(name)
