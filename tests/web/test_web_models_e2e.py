"""End to end, every model: `clinrisk serve` (real gunicorn) on a real `mlflow server` holding a
champion of stroke, diabetes, anemia and diabetes_progression from `clinrisk train`, plus a
made-up fifth model (a YAML spec and a CSV in a temporary directory) trained while it runs."""

from __future__ import annotations

import sqlite3
import time
from urllib.parse import urlencode

import pandas as pd
import pytest
import requests
import yaml
from web_support import PASSWORD, alices_service, run_clinrisk, service_env

from clinrisk.spec import load_spec
from support import REPO, first_api_record, mlflow_server, write_fast_spec, write_fifth_model

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("web-models-e2e")]

TRAINED = ["stroke", "diabetes", "anemia", "diabetes_progression"]
FIFTH = "kidney"
# The issue's "Done when" request, as a clinician's system would send it.
DIABETES_QUERY = (
    "pregnancies=3&glucose=200&blood_pressure=100&skin_thickness=50&insulin=200&bmi=40"
    "&diabetes_pedigree_function=0.5&age=55"
)


def write_fast_specs(directory) -> None:
    """Copies of the repository's specs with one quick candidate and 3 folds, data paths absolute."""
    write_fast_spec(directory)
    for name in TRAINED[1:]:
        raw = yaml.safe_load((REPO / "models" / f"{name}.yaml").read_text())
        raw["data"]["path"] = str(REPO / raw["data"]["path"])
        keep = "ridge" if raw["objective"].get("kind") == "regression" else "logistic_regression"
        raw["candidates"] = [c for c in raw["candidates"] if c["name"] == keep]
        raw["training"].update(cv_folds=3, cv_repeats=1)
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> dict:
    """A real `mlflow server` with a champion of each of the four models; the fifth is not trained yet."""
    root = tmp_path_factory.mktemp("web-models")
    specs = root / "specs"
    specs.mkdir()
    write_fast_specs(specs)
    write_fifth_model(specs)
    with mlflow_server(root / "mlflow") as url:
        trainer = service_env(root / "trainer", specs, url)
        for name in TRAINED:
            run_clinrisk(trainer, "train", "--model", name)
        yield {"url": url, "specs": specs, "root": root, "trainer": trainer}


def served_versions(service) -> dict:
    models = requests.get(f"{service.url}/ready", timeout=30).json()["models"]
    return {name: state["version"] for name, state in models.items()}


@pytest.fixture(scope="module")
def service(registry, tmp_path_factory):
    """`clinrisk serve` (2 workers, auth on, user alice) on the registry, polling it every second."""
    home = tmp_path_factory.mktemp("models-home")
    with alices_service(home, registry["specs"], registry["url"], poll_interval_seconds="1") as running:
        running.wait_until_every_worker_serves(TRAINED)
        yield running


def bearer(service) -> dict[str, str]:
    return {"Authorization": f"Bearer {service.api_key}"}


def first_record(registry, name: str) -> dict:
    spec = load_spec(registry["specs"] / f"{name}.yaml")
    return first_api_record(spec, spec.data.path)


@pytest.mark.parametrize("name", TRAINED)
def test_every_model_is_served_by_post_and_by_get(service, registry, name):
    """Each model answers the first patient of its data POSTed and as query parameters, identically."""
    record = first_record(registry, name)
    posted = requests.post(
        f"{service.url}/models/{name}/predict", json=record, headers=bearer(service), timeout=60
    )
    query = urlencode(
        {k: "" if v is None else repr(v) if isinstance(v, float) else v for k, v in record.items()}
    )
    got = requests.get(f"{service.url}/models/{name}/predict?{query}", headers=bearer(service), timeout=60)
    assert posted.status_code == got.status_code == 200, (posted.text, got.text)
    one, two = posted.json(), got.json()
    assert one["model"] == two["model"] and one["model"]["name"] == name
    assert one["prediction"] == pytest.approx(two["prediction"], rel=1e-12)
    if load_spec(registry["specs"] / f"{name}.yaml").is_regression:
        assert set(two) == {"prediction_id", "prediction", "model_version", "model"}
    else:
        assert two["probability"] == pytest.approx(one["probability"], abs=1e-12)
        assert two["prediction"] == int(two["probability"] >= two["threshold"])


def test_the_issues_diabetes_request_answers_probability_decision_and_version(service):
    """The GET of the issue's 'Done when', with credentials: a probability, a decision and a version."""
    url = f"{service.url}/models/diabetes/predict?{DIABETES_QUERY}"
    answer = requests.get(url, auth=("alice", PASSWORD), timeout=60)
    assert answer.status_code == 200
    body = answer.json()
    assert 0 <= body["probability"] <= 1 and body["prediction"] in (0, 1) and body["model"]["version"]
    assert requests.get(url, timeout=60).status_code == 401


def test_post_predict_still_serves_the_default_model(service, registry):
    """POST /predict answers with stroke, the default model, as before."""
    record = first_record(registry, "stroke")
    body = requests.post(f"{service.url}/predict", json=record, headers=bearer(service), timeout=60).json()
    assert body["model"]["name"] == "stroke" and 0 <= body["probability"] <= 1


def test_anemia_field_mapping_holds_both_ways_through_the_api(service, registry, tmp_path):
    """Data names -> API: the data file's row scored by `clinrisk predict` equals the API's answer for it
    under API names and under query aliases. API -> data: the logged record maps back to the data's row."""
    spec = load_spec(registry["specs"] / "anemia.yaml")
    raw = pd.read_csv(spec.data.path)
    run_clinrisk(
        registry["trainer"],
        "predict",
        "--model",
        "anemia",
        "--input",
        spec.data.path,
        "--output",
        str(tmp_path / "o.csv"),
    )
    from_file = pd.read_csv(tmp_path / "o.csv")["probability"].iloc[0]
    row = raw.iloc[0]
    by_api_name = {api: float(row[column]) for column, api in spec.column_map.items()}
    assert set(by_api_name) == {"red_pixel_pct", "green_pixel_pct", "blue_pixel_pct", "hemoglobin"}
    posted = requests.post(
        f"{service.url}/models/anemia/predict", json=by_api_name, headers=bearer(service), timeout=60
    )
    aliases = {
        "red": row["%Red Pixel"],
        "green": row["%Green pixel"],
        "blue": row["%Blue pixel"],
        "hb": row["Hb"],
    }
    got = requests.get(
        f"{service.url}/models/anemia/predict?{urlencode(aliases)}", headers=bearer(service), timeout=60
    )
    assert posted.json()["probability"] == pytest.approx(from_file, abs=1e-6)
    assert got.json()["probability"] == pytest.approx(from_file, abs=1e-6)
    logged = logged_features(service, posted.json()["prediction_id"])
    back = spec.to_data_columns(pd.DataFrame([logged]))
    assert back.iloc[0].to_dict() == pytest.approx(row[list(back.columns)].astype(float).to_dict())
    data_names = {column: float(row[column]) for column in spec.column_map}
    refused = requests.post(
        f"{service.url}/models/anemia/predict", json=data_names, headers=bearer(service), timeout=60
    )
    assert refused.status_code == 422 and "%Red Pixel" in [p["field"] for p in refused.json()["errors"]]


def logged_features(service, prediction_id: str, timeout: float = 30) -> dict:
    """A prediction's features as the service logged them (the log is written off the request path)."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(service.home / "predictions.db") as db:
            found = db.execute(
                "select features from predictions where prediction_id = ?", (prediction_id,)
            ).fetchall()
        if found:
            return json.loads(found[0][0])
        time.sleep(0.2)
    raise TimeoutError(f"prediction {prediction_id} was not logged within {timeout} s")


def test_a_regression_is_logged_and_takes_a_numeric_outcome(service, registry):
    """The regression's prediction is logged with no probability; its feedback is a number, stored whole."""
    record = first_record(registry, "diabetes_progression")
    url = f"{service.url}/models/diabetes_progression"
    answer = requests.post(f"{url}/predict", json=record, headers=bearer(service), timeout=60).json()
    stored = requests.post(
        f"{url}/feedback",
        json={"prediction_id": answer["prediction_id"], "outcome": 151.5},
        headers=bearer(service),
        timeout=60,
    )
    assert stored.status_code == 201
    refused = requests.post(
        f"{url}/feedback",
        json={"prediction_id": answer["prediction_id"], "outcome": "high"},
        headers=bearer(service),
        timeout=60,
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "outcome"
    with sqlite3.connect(service.home / "predictions.db") as db:
        logged = db.execute(
            "select p.probability, p.prediction, f.outcome from predictions p"
            " join feedback f using (prediction_id) where prediction_id = ?",
            (answer["prediction_id"],),
        ).fetchall()
    assert logged == [(None, pytest.approx(answer["prediction"]), 151.5)]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (DIABETES_QUERY + "&cholesterol=5", "cholesterol"),
        (DIABETES_QUERY.replace("bmi=40", "bmi=forty"), "bmi"),
        (DIABETES_QUERY.replace("&age=55", ""), "age"),
        (DIABETES_QUERY + "&age=60", "age"),
        (DIABETES_QUERY.replace("age=55", "age=%ff%fe"), "age"),
        (DIABETES_QUERY.replace("age=55", "age=" + "9" * 400), "age"),
    ],
    ids=["unknown-param", "bad-number", "missing-field", "repeated-param", "bad-bytes", "huge-number"],
)
def test_a_bad_query_string_is_a_4xx_naming_the_field(service, query, field):
    """Real gunicorn answers malformed query strings with the POST's 422 naming the field, never a 5xx."""
    response = requests.get(
        f"{service.url}/models/diabetes/predict?{query}", headers=bearer(service), timeout=60
    )
    assert response.status_code == 422, response.text
    assert field in [problem["field"] for problem in response.json()["errors"]]


def test_a_model_without_champion_is_503_alone_then_its_first_champion_is_served(service, registry):
    """The made-up fifth model has a spec but no champion: 503 on its routes while the others answer;
    once `clinrisk train --model kidney` promotes one, it is served with no code change and no restart."""
    patient = "age=71&creatinine=2.4&dm=1&sex=M"
    waiting = requests.get(
        f"{service.url}/models/{FIFTH}/predict?{patient}", headers=bearer(service), timeout=60
    )
    assert waiting.status_code == 503 and FIFTH in waiting.json()["message"]
    diabetes = requests.get(
        f"{service.url}/models/diabetes/predict?{DIABETES_QUERY}", headers=bearer(service), timeout=60
    )
    assert diabetes.status_code == 200
    ready = requests.get(f"{service.url}/ready", timeout=30)
    assert ready.status_code == 200 and ready.json()["models"][FIFTH]["status"] == "unavailable"
    listed = requests.get(f"{service.url}/models", headers=bearer(service), timeout=30).json()
    assert {m["name"] for m in listed["models"]} == {*TRAINED, FIFTH}
    run_clinrisk(registry["trainer"], "train", "--model", FIFTH)
    service.wait_until_every_worker_serves([FIFTH])
    answer = requests.get(
        f"{service.url}/models/{FIFTH}/predict?{patient}", headers=bearer(service), timeout=60
    )
    assert answer.status_code == 200 and 0 <= answer.json()["probability"] <= 1
    assert answer.json()["model"]["name"] == FIFTH
    assert served_versions(service)["diabetes"] == diabetes.json()["model"]["version"]


def test_an_unknown_model_is_404_naming_the_served_ones(service):
    """A model name with no spec is a 404 that lists the served models."""
    response = requests.get(f"{service.url}/models/heart/predict?age=3", headers=bearer(service), timeout=60)
    assert response.status_code == 404 and "diabetes_progression" in response.json()["message"]
