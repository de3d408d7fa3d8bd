"""The whole retraining loop with a real `mlflow server`, real gunicorn and the CLI, as a user runs it."""

from __future__ import annotations

import json

import pytest
import requests

from clinrisk import registry
from clinrisk.settings import load_settings
from store.conftest import write_batch
from support import PATIENT, mlflow_server, write_fast_spec
from web.web_support import gunicorn_service, run_clinrisk, service_env

NEW_PATIENTS = 30


def predict_and_report_outcomes(url: str) -> list[str]:
    """Score new patients one request each, then post an outcome for each (every third a stroke)."""
    ids = []
    for i in range(NEW_PATIENTS):
        patient = {**PATIENT, "age": 30 + i, "avg_glucose_level": 80.0 + 3 * i}
        answer = requests.post(f"{url}/predict", json=patient, timeout=60)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["prediction_id"])
    for i, prediction_id in enumerate(ids):
        body = {"prediction_id": prediction_id, "outcome": int(i % 3 == 0)}
        assert requests.post(f"{url}/feedback", json=body, timeout=60).status_code == 201
    return ids


@pytest.mark.slow
def test_outcomes_and_a_batch_are_learned_from_and_an_unchanged_store_is_skipped(tmp_path, raw_stroke):
    """Train, serve, predict, post outcomes, add a batch, retrain: the new version learned from the seed
    file, the batch and the feedback, MLflow lists its dataset inputs, and a second retrain is skipped."""
    with mlflow_server(tmp_path / "mlflow") as tracking:
        env = service_env(
            tmp_path / "home", write_fast_spec(tmp_path / "specs"), tracking, auth_enabled="false"
        )
        first = json.loads(run_clinrisk(env, "train"))
        assert first["promoted"] and first["data"]["by_source"] == {"seed": 5110}

        with gunicorn_service(env) as service:
            predict_and_report_outcomes(service.url)

        batch = raw_stroke.sample(40, random_state=3).assign(id=lambda f: f["id"] + 1_000_000)
        added = json.loads(run_clinrisk(env, "data", "add", str(write_batch(batch, tmp_path / "lab.csv"))))
        assert (added["added"], added["rows"]) == (40, 5150)

        second = json.loads(run_clinrisk(env, "train"))
        expected = {"seed": 5110, "batch:lab.csv": 40, "feedback": NEW_PATIENTS}
        assert second["version"] == "2" and second["data"]["by_source"] == expected
        assert second["evaluation"]["rows"] == 40 + NEW_PATIENTS  # only rows version 1 never saw

        settings = load_settings(home=tmp_path / "home", tracking_uri=tracking, registry_uri=tracking)
        tags = registry.version_tags(settings, "stroke", "2")
        assert json.loads(tags["data.by_source"]) == expected and tags["data.rows"] == "5180"
        inputs = {
            i["tags"]["mlflow.data.context"]: i for i in registry.run_inputs(settings, second["run_id"])
        }
        assert set(inputs) == {"training", "evaluation"}
        assert json.loads(inputs["training"]["tags"]["by_source"]) == {"seed": 5110}
        assert json.loads(inputs["evaluation"]["tags"]["by_source"]) == {"batch:lab.csv": 40, "feedback": 30}
        assert inputs["training"]["tags"]["snapshot"] == second["data"]["snapshot"]
        served = registry.load_version(settings, "stroke", "2")  # refit on every row, threshold kept
        assert served.info["refit_rows"] == 5180 and served.threshold == pytest.approx(
            second["threshold"], abs=1e-6
        )

        third = json.loads(run_clinrisk(env, "train"))
        assert third["skipped"].startswith("no new labelled data since version ")
        assert third["version"] is None and registry.latest_version(settings, "stroke") == "2"
        assert third["data"] == second["data"]
