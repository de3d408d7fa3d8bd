"""One service, every model: routes per model, GET query parameters, 503 per model, per-model log and metrics.

The app runs on fake registries (one per model) holding models fitted on the real data files.
"""

from __future__ import annotations

import re
import time
from urllib.parse import urlencode

import pandas as pd
import pytest
from web_fakes import FakeRegistry, as_version, fitted_from_file, web_settings
from web_support import DIABETIC, PATIENT

from clinrisk import predlog
from clinrisk.data import load_training_data
from clinrisk.spec import load_spec
from clinrisk.web import create_app
from clinrisk.web.runtime import spec_names
from support import REPO

# Patients as a client sends them, by API name.
DIABETES_QUERY = (
    "pregnancies=3&glucose=200&bp=100&skin_thickness=50&insulin=200&bmi=40"
    "&diabetes_pedigree_function=0.5&age=55"
)


@pytest.fixture(scope="module")
def diabetes_model():
    return fitted_from_file("diabetes", "logistic_regression")


@pytest.fixture(scope="module")
def progression_model():
    return fitted_from_file("diabetes_progression", "ridge")


@pytest.fixture(scope="module")
def progression_row() -> dict:
    spec = load_spec(REPO / "models" / "diabetes_progression.yaml")
    row = load_training_data(spec, REPO / spec.data.path)[spec.feature_names].iloc[0]
    return {k: float(v) for k, v in row.items()}


@pytest.fixture
def sources(logistic_model, diabetes_model, progression_model) -> dict[str, FakeRegistry]:
    """Stroke, diabetes and the regression with a champion; anemia with none yet."""
    return {
        "stroke": FakeRegistry({"1": logistic_model}, "1"),
        "diabetes": FakeRegistry({"1": diabetes_model, "2": as_version(diabetes_model, "2", 1.01)}, "1"),
        "anemia": FakeRegistry({}, None),
        "diabetes_progression": FakeRegistry({"7": progression_model}, "7"),
    }


def sourced_app(home, sources: dict[str, FakeRegistry], *, watch: bool = False, **overrides):
    """An app (auth off) serving each model from its fake registry."""
    settings = web_settings(home, auth_enabled=False, **overrides)
    for source in sources.values():
        source.settings = settings
    app = create_app(settings, model_source=sources, watch=watch)
    app.config["TESTING"] = True
    return app


def wait_for(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture
def app(tmp_path, sources):
    app = sourced_app(tmp_path / "home", sources)
    yield app
    app.extensions["clinrisk"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def test_every_model_answers_by_post_and_by_get_the_same(client, progression_row):
    """Each model with a champion answers a POSTed object and the same patient as query parameters alike."""
    cases = {
        "stroke": (PATIENT, urlencode(PATIENT)),
        "diabetes": (DIABETIC, DIABETES_QUERY),
        "diabetes_progression": (
            progression_row,
            urlencode({k: repr(v) for k, v in progression_row.items()}),
        ),
    }
    for name, (body, query) in cases.items():
        posted = client.post(f"/models/{name}/predict", json=body)
        got = client.get(f"/models/{name}/predict?{query}")
        assert posted.status_code == got.status_code == 200, (name, posted.json, got.json)
        assert got.json["model"]["name"] == posted.json["model"]["name"] == name
        assert got.json["prediction"] == pytest.approx(posted.json["prediction"], rel=1e-12)
        assert got.headers["X-Model-Version"] == posted.json["model"]["version"]
        if name != "diabetes_progression":
            assert got.json["probability"] == pytest.approx(posted.json["probability"], abs=1e-12)


def test_post_predict_keeps_serving_the_default_model(client):
    """POST /predict and /models/stroke/predict are the same model: the default one."""
    default = client.post("/predict", json=PATIENT).json
    named = client.post("/models/stroke/predict", json=PATIENT).json
    assert default["model"] == named["model"] == {"name": "stroke", "version": "1"}
    assert default["probability"] == named["probability"]


def test_a_regression_answers_a_value_and_a_version_and_is_logged(client, app, progression_row):
    """The regression's answer is `prediction` in target units and `model_version`, and it is logged."""
    answers = client.post(
        "/models/diabetes_progression/predict", json=[progression_row, progression_row]
    ).json
    assert all(set(a) == {"prediction_id", "prediction", "model_version", "model"} for a in answers)
    assert 25 <= answers[0]["prediction"] <= 346 and answers[0]["model_version"] == "7"
    writer = app.extensions["clinrisk"].writer
    assert writer.flush()
    window = predlog.read_window(writer.engine, "diabetes_progression").set_index("prediction_id")
    logged = window.loc[answers[0]["prediction_id"]]
    assert logged["prediction"] == pytest.approx(answers[0]["prediction"]) and pd.isna(logged["probability"])


def test_a_model_without_champion_answers_503_while_the_others_answer(client):
    """Anemia has no champion: its routes answer 503 naming it, every other model answers 200."""
    for response in (
        client.post(
            "/models/anemia/predict",
            json={"red_pixel_pct": 43, "green_pixel_pct": 30, "blue_pixel_pct": 27, "hemoglobin": 9},
        ),
        client.get("/models/anemia/predict?red=43&green=30&blue=27&hb=9"),
        client.get("/models/anemia"),
    ):
        assert response.status_code == 503 and "anemia" in response.json["message"]
        assert response.headers["Retry-After"]
    assert client.post("/models/diabetes/predict", json=DIABETIC).status_code == 200
    assert client.post("/predict", json=PATIENT).status_code == 200
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["status"] == "ready"
    assert ready.json["models"]["anemia"]["status"] == "unavailable"
    assert ready.json["models"]["diabetes"] == {"status": "ready", "reason": None, "version": "1"}


def test_ready_follows_the_default_model(tmp_path, sources):
    """Without a champion of the default model /ready is 503, even while other models answer."""
    sources["stroke"].champion = None
    app = sourced_app(tmp_path / "home", sources)
    client = app.test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json["models"]["diabetes"]["status"] == "ready"
    assert client.post("/models/diabetes/predict", json=DIABETIC).status_code == 200
    app.extensions["clinrisk"].close()


def test_models_lists_kind_version_threshold_and_state(client):
    """GET /models lists every model with its kind, champion version, threshold and state."""
    body = client.get("/models").json
    listed = {m["name"]: m for m in body["models"]}
    assert body["default"] == "stroke" and next(iter(listed)) == "stroke"
    assert set(listed) == {"stroke", "diabetes", "anemia", "diabetes_progression"}
    assert listed["diabetes_progression"]["kind"] == "regression"
    assert (
        listed["diabetes_progression"]["threshold"] is None
        and listed["diabetes_progression"]["version"] == "7"
    )
    assert listed["diabetes"]["kind"] == "classification" and listed["diabetes"]["threshold"] == 0.5
    assert listed["anemia"]["version"] is None and listed["anemia"]["status"] == "unavailable"
    described = client.get("/models/diabetes").json
    assert described["name"] == "diabetes" and described["version"] == "1"


@pytest.mark.parametrize(
    "name", ["kidney", "STROKE", "stroke.yaml", "..", "%2e%2e%2fstroke", "..%2Fmodels%2Fstroke", "x" * 300]
)
def test_an_unknown_model_is_404_naming_the_served_models(client, name):
    """A name that is not a served model's is 404 listing the models; it is never used as a path."""
    for response in (
        client.post(f"/models/{name}/predict", json=PATIENT),
        client.get(f"/models/{name}/predict?age=3"),
        client.post(f"/models/{name}/feedback", json={"prediction_id": "x", "outcome": 1}),
    ):
        assert response.status_code == 404, (name, response.status_code)
        if response.json["error"] == "unknown_model":
            assert "stroke, anemia, diabetes, diabetes_progression" in response.json["message"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (DIABETES_QUERY + "&ssn=123", "ssn"),
        (DIABETES_QUERY.replace("glucose=200", "glucose=high"), "glucose"),
        (DIABETES_QUERY.replace("glucose=200", "glucose=1e999"), "glucose"),
        (DIABETES_QUERY.replace("glucose=200", "glucose=nan"), "glucose"),
        (DIABETES_QUERY.replace("glucose=200", "glucose=9000"), "glucose"),
        (DIABETES_QUERY.replace("&age=55", ""), "age"),
        (DIABETES_QUERY + "&age=56", "age"),
        (DIABETES_QUERY + "&blood_pressure=90", "blood_pressure"),
        (DIABETES_QUERY.replace("pregnancies=3", "pregnancies=%00%ff"), "pregnancies"),
        (DIABETES_QUERY + "&explain=maybe", "query.explain"),
        ("", "age"),
    ],
    ids=[
        "unknown-param",
        "bad-number",
        "overflowing-number",
        "nan",
        "out-of-range",
        "missing-field",
        "repeated-param",
        "alias-and-name",
        "control-bytes",
        "bad-explain",
        "no-params",
    ],
)
def test_a_bad_query_string_is_422_naming_the_field(client, query, field):
    """Query parameters get the POST's validation and errors: a 422 naming each offending field."""
    response = client.get(f"/models/diabetes/predict?{query}")
    assert response.status_code == 422, response.json
    assert response.json["error"] == "validation_error"
    assert field in [p["field"] for p in response.json["errors"]]


@pytest.mark.parametrize(
    ("extra", "field", "keys"),
    [
        ("&age=56", "age", "age, age"),
        ("&blood_pressure=90", "blood_pressure", "bp, blood_pressure"),
        ("&age=", "age", "age, age"),
    ],
)
def test_a_parameter_given_twice_is_named_as_such(client, extra, field, keys):
    """A feature given twice, under its name or an alias, is a 422 saying so, not a type error."""
    response = client.get(f"/models/diabetes/predict?{DIABETES_QUERY}{extra}")
    assert response.status_code == 422
    (found,) = [p for p in response.json["errors"] if p["field"] == field]
    assert found["msg"] == f"given 2 times ({keys}): give it once"


def test_a_missing_optional_value_may_be_left_empty_or_out(client):
    """A nullable feature (glucose) may be empty or absent in the query, as null or absent in a body."""
    empty = client.get(f"/models/diabetes/predict?{DIABETES_QUERY.replace('glucose=200', 'glucose=')}")
    absent = client.get(f"/models/diabetes/predict?{DIABETES_QUERY.replace('glucose=200&', '')}")
    posted = client.post("/models/diabetes/predict", json={**DIABETIC, "glucose": None})
    assert empty.status_code == absent.status_code == posted.status_code == 200
    assert empty.json["probability"] == absent.json["probability"] == posted.json["probability"]


def test_feedback_of_a_regression_takes_a_number(client, app, progression_row):
    """A regression's outcome is a number, stored whole; a 0/1-only or non-number outcome is refused."""
    answer = client.post("/models/diabetes_progression/predict", json=progression_row).json
    stored = client.post(
        "/models/diabetes_progression/feedback",
        json={"prediction_id": answer["prediction_id"], "outcome": 172.5},
    )
    assert stored.status_code == 201 and stored.json["outcome"] == 172.5
    window = predlog.read_window(app.extensions["clinrisk"].writer.engine, "diabetes_progression")
    assert window.set_index("prediction_id").loc[answer["prediction_id"], "outcome"] == 172.5
    for outcome in ("172", True, None, [1], "inf"):
        body = {"prediction_id": answer["prediction_id"], "outcome": outcome}
        refused = client.post("/models/diabetes_progression/feedback", json=body)
        assert refused.status_code == 422 and refused.json["errors"][0]["field"] == "outcome", outcome


def test_feedback_of_a_classification_stays_0_or_1_and_belongs_to_its_model(client, progression_row):
    """A classification refuses 0.5; an id the named model did not make is 404, whichever route."""
    stroke_id = client.post("/predict", json=PATIENT).json["prediction_id"]
    half = client.post("/models/stroke/feedback", json={"prediction_id": stroke_id, "outcome": 0.5})
    assert half.status_code == 422 and half.json["errors"][0]["field"] == "outcome"
    other = client.post("/models/diabetes/feedback", json={"prediction_id": stroke_id, "outcome": 1})
    assert other.status_code == 404 and "diabetes" in other.json["message"]
    regression_id = client.post("/models/diabetes_progression/predict", json=progression_row).json[
        "prediction_id"
    ]
    assert client.post("/feedback", json={"prediction_id": regression_id, "outcome": 1}).status_code == 404
    assert client.post("/feedback", json={"prediction_id": stroke_id, "outcome": 1}).status_code == 201


def test_metrics_are_labelled_per_model(client, app):
    """Requests and predictions are counted per model; an unknown name gets no label of its own."""
    client.post("/models/diabetes/predict", json=[DIABETIC] * 3)
    client.get(f"/models/diabetes/predict?{DIABETES_QUERY}")
    client.get("/models/anemia/predict?red=1")
    client.get("/models/made-up/predict?age=1")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert re.search(r'clinrisk_predictions_total\{model="diabetes",version="1"\} 4\.0', text)
    assert re.search(
        r'clinrisk_http_requests_total\{endpoint="/models/<name>/predict",method="GET",'
        r'model="diabetes",status="200"\} 1\.0',
        text,
    )
    assert 'model="anemia",status="503"' in text and "made-up" not in text


def test_each_model_swaps_its_champion_on_its_own(tmp_path, sources):
    """The watcher swaps diabetes to version 2 while stroke keeps version 1 and loads nothing again."""
    app = sourced_app(tmp_path / "home", sources, poll_interval_seconds=0.05, watch=True)
    client = app.test_client()
    wait_for(lambda: client.get("/ready").json["models"]["diabetes"]["version"] == "1")
    assert client.post("/models/diabetes/predict", json=DIABETIC).json["prediction"] == 1
    sources["diabetes"].champion = "2"  # threshold 1.01: flags no one
    wait_for(lambda: client.get("/ready").json["models"]["diabetes"]["version"] == "2")
    answer = client.post("/models/diabetes/predict", json=DIABETIC).json
    assert answer["model"]["version"] == "2" and answer["prediction"] == 0
    assert client.post("/predict", json=PATIENT).json["model"]["version"] == "1"
    assert sources["stroke"].loads == ["1"] and client.get("/models/anemia").status_code == 503
    app.extensions["clinrisk"].close()


def test_openapi_documents_every_models_routes_from_its_spec(client):
    """Each model has POST and GET predict, feedback and a description; a regression has no probability."""
    document = client.get("/openapi.json").json
    paths, schemas = document["paths"], document["components"]["schemas"]
    for name in ("stroke", "diabetes", "anemia", "diabetes_progression"):
        assert {"post", "get"} <= set(paths[f"/models/{name}/predict"])
        assert f"/models/{name}/feedback" in paths and f"/models/{name}" in paths
    parameters = {p["name"]: p for p in paths["/models/diabetes/predict"]["get"]["parameters"]}
    assert parameters["age"]["required"] and not parameters["glucose"]["required"]
    assert (
        parameters["glucose"]["schema"]["anyOf"][0]["maximum"] == 400
        and "bp" in parameters["blood_pressure"]["description"]
    )
    anemia = {p["name"] for p in paths["/models/anemia/predict"]["get"]["parameters"]}
    assert {"red_pixel_pct", "hemoglobin"} <= anemia and "%Red Pixel" not in anemia
    answer = paths["/models/diabetes_progression/predict"]["get"]["responses"]["200"]["content"]
    regression = schemas[answer["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert set(regression["properties"]) == {"prediction_id", "prediction", "model_version", "model"}
    feedback = paths["/models/diabetes_progression/feedback"]["post"]["requestBody"]["content"]
    assert feedback["application/json"]["schema"]["$ref"].endswith("/RegressionFeedbackIn")
    assert "/models" in paths and "/predict" in paths


@pytest.mark.parametrize("query", ["&glucose=", "&glucose=&bmi=", "&bmi=&insulin="])
def test_an_empty_value_of_an_optional_feature_is_missing_as_documented(client, query):
    """`glucose=` means not measured: answered like an omitted parameter, and the document says so
    (its schema takes a number in range or an empty value, nothing else)."""
    import jsonschema

    base = DIABETES_QUERY.replace("&glucose=200", "").replace("&insulin=200", "").replace("&bmi=40", "")
    emptied = client.get(f"/models/diabetes/predict?{base}{query}")
    assert emptied.status_code == 200, emptied.json
    omitted = client.get(f"/models/diabetes/predict?{base}")
    assert emptied.json["probability"] == omitted.json["probability"]
    document = client.get("/openapi.json").json
    parameters = {p["name"]: p for p in document["paths"]["/models/diabetes/predict"]["get"]["parameters"]}
    schema = parameters["glucose"]["schema"]
    for accepted in ("", 120.0):
        jsonschema.validate(accepted, schema)
    for refused in (" ", "high", 9000.0):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(refused, schema)
    assert "anyOf" not in parameters["age"]["schema"]  # a required feature may not be left empty


def test_a_broken_spec_of_another_model_does_not_stop_the_service(tmp_path, logistic_model):
    """A spec file that does not load is listed as unavailable; the default model still serves."""
    import shutil

    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(REPO / "models" / "stroke.yaml", specs / "stroke.yaml")
    (specs / "broken.yaml").write_text("name: broken\nfeatures: {}\n")
    settings = web_settings(tmp_path / "home", auth_enabled=False, spec_dir=specs)
    assert spec_names(settings) == ["stroke", "broken"]
    source = FakeRegistry({"1": logistic_model}, "1")
    runtime_sources = {"stroke": source, "broken": FakeRegistry({}, None)}
    source.settings = settings
    app = create_app(settings, model_source=runtime_sources, watch=False)
    client = app.test_client()
    assert client.post("/predict", json=PATIENT).status_code == 200
    broken = client.get("/models/broken/predict?age=1")
    assert broken.status_code == 503 and "spec file is invalid" in broken.json["message"]
    assert client.get("/ready").json["models"]["broken"]["status"] == "unavailable"
    app.extensions["clinrisk"].close()


def test_every_cached_champion_is_served_at_start_without_the_registry(
    tmp_path, sources, logistic_model, diabetes_model
):
    """A worker starts on each model's cached champion at once, with nothing downloaded."""
    from web_fakes import signed_bundle

    from clinrisk.serving import cache

    settings = web_settings(tmp_path / "home", auth_enabled=False)
    for name, model in (("stroke", logistic_model), ("diabetes", diabetes_model)):
        cache.save(cache.cache_dir(settings, name), signed_bundle(model, settings, "1"))
    for source in sources.values():
        source.down = True
    app = sourced_app(tmp_path / "home", sources, watch=True, poll_interval_seconds=3600)
    client = app.test_client()
    models = client.get("/ready").json["models"]
    assert models["stroke"]["status"] == models["diabetes"]["status"] == "degraded"
    assert client.post("/models/diabetes/predict", json=DIABETIC).json["model"]["version"] == "1"
    assert client.get("/models/anemia/predict?red=43&green=30&blue=27&hb=9").status_code == 503
    assert all(source.loads == [] for source in sources.values())
    app.extensions["clinrisk"].close()
