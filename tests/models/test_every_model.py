"""Model tier for every declared model, and a made-up fifth one: train, gate, register, score, serve.

Real MLflow (SQLite store) and the real Flask app reading the registry; no code knows the models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clinrisk import registry
from clinrisk.predict import score_file
from clinrisk.retraining import retrain
from clinrisk.settings import load_settings
from clinrisk.spec import load_spec
from clinrisk.web import create_app
from support import REPO, first_api_record, write_fifth_model

pytestmark = pytest.mark.slow

NEW_MODELS = ["diabetes", "anemia", "diabetes_progression"]


def served_answer(settings, body: dict) -> tuple[dict, dict]:
    """POST one record to the app serving `settings.model_name` from the registry; also GET /model."""
    app = create_app(settings, watch=False)
    app.config["TESTING"] = True
    try:
        client = app.test_client()
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.get_json()
        return response.get_json(), client.get("/model").get_json()
    finally:
        app.extensions["clinrisk"].close()


@pytest.mark.parametrize("name", NEW_MODELS)
def test_model_trains_gates_registers_scores_and_serves(tmp_path, name):
    """Each spec alone gives a promoted champion that scores its raw file and answers a POST."""
    settings = load_settings(
        home=tmp_path / "home", spec_dir=REPO / "models", model_name=name, auth_enabled=False
    )
    summary = retrain(settings, name)
    assert summary["promoted"] and summary["model"] == name, summary
    model = registry.load_alias(settings, name)
    spec = model.spec
    raw = REPO / spec.data.path
    report = score_file(model, model.info["version"], raw, tmp_path / "scored.csv")
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert report.rows_scored == len(scored) == len(pd.read_csv(raw))
    answer, described = served_answer(settings, first_api_record(spec, raw))
    assert answer["model"] == {"name": name, "version": summary["version"]}
    if spec.is_regression:
        assert summary["threshold"] is None and summary["metrics"]["r2"] >= spec.objective.floor
        assert "probability" not in scored and scored["prediction"].between(0, 500).all()
        assert set(answer) == {"prediction_id", "prediction", "model_version", "model"}
        assert answer["prediction"] == pytest.approx(scored["prediction"].iloc[0], rel=1e-9)
    else:
        assert summary["metrics"]["precision"] >= spec.objective.precision_floor - 0.1
        assert set(scored["prediction"]) <= {0, 1} and scored["probability"].between(0, 1).all()
        assert answer["probability"] == pytest.approx(scored["probability"].iloc[0], abs=1e-6)
        assert answer["threshold"] == model.threshold
    assert described["scoring_path"]["active"] == "onnx", described["scoring_path"]


def test_anemia_scores_the_same_from_either_column_naming(tmp_path):
    """A file with the data's names (`%Red Pixel`) and one with API names get identical probabilities."""
    settings = load_settings(home=tmp_path / "home", spec_dir=REPO / "models")
    retrain(settings, "anemia")
    model = registry.load_alias(settings, "anemia")
    raw = pd.read_csv(REPO / model.spec.data.path)
    raw.rename(columns={v: k for k, v in model.spec.column_map.items()}).to_csv(
        tmp_path / "api.csv", index=False
    )
    score_file(model, "1", REPO / model.spec.data.path, tmp_path / "out-data.csv")
    score_file(model, "1", tmp_path / "api.csv", tmp_path / "out-api.csv")
    one, two = pd.read_csv(tmp_path / "out-data.csv"), pd.read_csv(tmp_path / "out-api.csv")
    assert one["probability"].tolist() == two["probability"].tolist()
    assert "red_pixel_pct" in one.columns


def test_a_made_up_fifth_model_needs_no_code(tmp_path):
    """A spec and a data file in a temporary directory train, gate, register and serve."""
    specs = tmp_path / "specs"
    specs.mkdir()
    write_fifth_model(specs)
    settings = load_settings(home=tmp_path / "home", spec_dir=specs, model_name="kidney", auth_enabled=False)
    summary = retrain(settings, "kidney")
    assert summary["promoted"] and summary["metrics"]["precision"] >= 0.25, summary
    spec = load_spec(specs / "kidney.yaml")
    query = spec.record_from_query({"age": "71", "creatinine": "2.4", "dm": "1", "sex": "M"})
    answer, _ = served_answer(settings, query)
    assert 0 <= answer["probability"] <= 1 and answer["model"]["name"] == "kidney"


DRIFTS = {
    "diabetes": {"glucose": 1.4, "bmi": 1.3},
    "anemia": {"hemoglobin": 0.7, "red_pixel_pct": 1.1},
    "diabetes_progression": {"bmi": 1.3, "log_triglycerides": 1.15},
}


@pytest.mark.parametrize("name", NEW_MODELS)
def test_a_drifted_sample_is_reported_with_the_models_own_quality(tmp_path, name):
    """`clinrisk monitor` on a shifted copy of the data finds the drift and judges quality by the spec."""
    from clinrisk.data import load_training_data
    from clinrisk.monitoring.monitor import cli_result, run_once

    settings = load_settings(home=tmp_path / "home", spec_dir=REPO / "models", min_outcome_rows=20)
    retrain(settings, name)
    spec = load_spec(REPO / "models" / f"{name}.yaml")
    frame = load_training_data(spec, REPO / spec.data.path)
    for column, factor in DRIFTS[name].items():
        frame[column] = (frame[column] * factor).clip(spec.features[column].min, spec.features[column].max)
    frame.to_csv(tmp_path / "drifted.csv", index=False)
    result = cli_result(run_once(settings, name, tmp_path / "drifted.csv", None, tmp_path / "reports", 30))
    assert result["drift_detected"] and set(DRIFTS[name]) <= set(result["drifted_columns"]), result
    assert result["retrain_recommended"] and Path(result["report"]).exists()
    if spec.is_regression:
        assert "recall" not in result and result["r2"] < 0.9
    else:
        assert 0 <= result["recall"] <= 1


def test_the_retrain_comparison_report_works_for_a_regression(tmp_path):
    """The retrain flow's Evidently comparison of challenger and champion reports R² for a regression."""
    import json

    from clinrisk.monitoring.comparison import compare_on_holdout
    from clinrisk.retraining import apply_gate_for, load_and_validate
    from clinrisk.train import train_model

    settings = load_settings(home=tmp_path / "home", spec_dir=REPO / "models")
    # The champion is trained on the file (no refit on every row): both models then score the
    # same holdout, which neither saw, the same way.
    first = retrain(settings, "diabetes_progression", REPO / "data/raw/diabetes-progression.csv")
    spec, frame, sha = load_and_validate(settings, "diabetes_progression", None)
    result = train_model(spec, frame, data_sha256=sha)
    version = registry.log_and_register(settings, result)
    champion = registry.load_alias(settings, "diabetes_progression")
    decision = apply_gate_for(settings, version.version, result.model, result.holdout, champion)
    html = compare_on_holdout(
        settings, result.model, version.version, result.holdout, decision, first["version"], "test", "raw"
    )
    summary = json.loads((html.parent / "summary.json").read_text())
    assert summary["challenger_metrics"]["r2"] == summary["champion_metrics"]["r2"] >= 0.4
    assert "R2" in html.read_text() or "R²" in html.read_text()


def test_cli_trains_and_scores_a_regression(tmp_path, monkeypatch):
    """`clinrisk train/predict/models --model diabetes_progression`: R², prediction and model_version."""
    import json

    from click.testing import CliRunner

    from clinrisk.cli import main

    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "home"))

    def run(*args):
        result = CliRunner().invoke(main, [*args, "--model", "diabetes_progression"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    trained = json.loads(run("train").splitlines()[-1])
    assert trained["threshold"] is None and trained["metrics"]["r2"] >= 0.4
    raw = REPO / "data/raw/diabetes-progression.csv"
    scored_line = json.loads(
        run("predict", "--input", str(raw), "--output", str(tmp_path / "out.csv")).splitlines()[-1]
    )
    assert scored_line["rows_scored"] == 442 and scored_line["scoring_path"] == "onnx"
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns[-2:]) == ["prediction", "model_version"] and "probability" not in out
    listed = json.loads(run("models", "--json").splitlines()[-1])["versions"][0]
    assert listed["r2"] == pytest.approx(trained["metrics"]["r2"], abs=1e-4) and listed["recall"] is None


def test_a_regressions_logged_predictions_and_numeric_outcomes_are_monitored(tmp_path):
    """The monitor reads a regression's prediction log (no probability, numeric outcomes) and
    judges R² on the served predictions: near the holdout's when they are right, low when not."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from clinrisk import predlog
    from clinrisk.data import load_training_data
    from clinrisk.monitoring import monitor

    name = "diabetes_progression"
    log_url = f"sqlite:///{tmp_path / 'log.db'}"
    settings = load_settings(
        home=tmp_path / "home", spec_dir=REPO / "models", min_outcome_rows=20, prediction_log_url=log_url
    )
    retrain(settings, name)
    model = registry.load_alias(settings, name, "champion")
    spec = load_spec(REPO / "models" / f"{name}.yaml")
    rows = load_training_data(spec, REPO / spec.data.path).sample(120, random_state=3)
    served = model.predict(rows)["prediction"].to_numpy(dtype=float)
    engine = predlog.connect(log_url)
    now = datetime.now(UTC)

    def summary_for(predictions: np.ndarray, hours_ago: float) -> dict:
        ids = [str(uuid.uuid4()) for _ in predictions]
        records = rows[spec.feature_names].astype(object).to_dict("records")
        at = now - timedelta(hours=hours_ago)
        predlog.write_predictions(
            engine,
            [
                {
                    "prediction_id": i,
                    "created_at": at,
                    "model_name": name,
                    "model_version": "1",
                    "features": r,
                    "probability": None,
                    "prediction": float(p),
                }
                for i, r, p in zip(ids, records, predictions, strict=True)
            ],
        )
        outcomes = rows[spec.target.column].to_numpy(dtype=float)
        predlog.write_feedback(
            engine,
            [
                {"prediction_id": i, "outcome": float(o), "received_at": at}
                for i, o in zip(ids, outcomes, strict=True)
            ],
        )
        window = monitor.Window(at - timedelta(minutes=1), at + timedelta(minutes=1), "prediction log")
        frame, window = monitor.read_current(settings, name, spec, window, None)
        current = monitor.prepare(frame, spec, model)
        assert current["prediction"].tolist() == pytest.approx(predictions.tolist())
        reference, label = monitor.reference_for(settings, model, spec, None)
        _, summary = monitor.evaluate(
            settings, spec, current, monitor.prepare(reference, spec, model), "1", window, label, now
        )
        return summary

    right = summary_for(served, hours_ago=3)
    assert right["labelled_rows"] == 120 and right["recall"] is None and right["r2"] > 0.3, right
    wrong = summary_for(served[::-1].copy(), hours_ago=1)
    assert wrong["r2"] < 0 and any(
        "r2" in cause.lower() or "r²" in cause.lower() for cause in wrong["retrain"]["causes"]
    ), wrong
