"""The patient pages and the model cards on the Flask test client: the stroke page with a champion
from the registry, and every other served model's page on fake registries."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits
from web_fakes import FakeRegistry, fitted_from_file, web_settings
from web_support import DIABETIC as API_DIABETIC
from web_support import PASSWORD, PATIENT

from clinrisk import predlog
from clinrisk.settings import load_settings
from clinrisk.web import create_app
from clinrisk.web.patient_form import one_in
from clinrisk.web.users import add_user

FORM = {name: str(value) for name, value in PATIENT.items()}


@pytest.fixture(scope="module")
def page_app(trained_settings, tmp_path_factory):
    """The service on the trained registry (its champion), auth on, user alice, its own log."""
    home = tmp_path_factory.mktemp("pages")
    settings = load_settings(
        home=trained_settings.home,
        spec_dir=trained_settings.spec_dir,
        users_file=home / "users.json",
        prediction_log_url=f"sqlite:///{home / 'predictions.db'}",
        poll_interval_seconds=3600,
        fast_path=False,
    )
    add_user(settings.users_file, "alice", PASSWORD)
    add_user(settings.users_file, "bob", PASSWORD)
    app = create_app(settings, watch=False)
    yield app
    app.extensions["clinrisk"].close()


def _token(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _logged_in(app, user: str = "alice"):
    client = app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post(
        "/login", data={"username": user, "password": PASSWORD, "csrf_token": token, "next": "/"}
    )
    assert response.status_code == 302
    return client


def _assess(client, **changes):
    token = _token(client.get("/").get_data(as_text=True))
    return client.post("/", data={**FORM, **changes, "csrf_token": token})


def test_the_page_asks_for_a_login_first(page_app):
    """Without a session, / redirects to a login form that carries a CSRF token."""
    client = page_app.test_client()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert 'name="csrf_token"' in client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize(("user", "password"), [("alice", "wrong"), ("nobody", PASSWORD), ("", "")])
def test_wrong_credentials_are_refused(page_app, user, password):
    """A wrong password or unknown user stays on the login form with a message."""
    client = page_app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": user, "password": password, "csrf_token": token})
    assert response.status_code == 401
    assert "Wrong user name or password" in response.get_data(as_text=True)


def test_the_session_cookie_is_httponly_and_samesite_lax(page_app):
    """The signed session cookie cannot be read by scripts and is not sent cross-site."""
    client = page_app.test_client()
    token = _token(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_form_without_a_valid_csrf_token_is_refused(page_app):
    """A post with a missing or forged token is a 400 and scores nothing."""
    client = _logged_in(page_app)
    assert client.post("/", data={**FORM, "csrf_token": "forged"}).status_code == 400
    assert client.post("/", data=FORM).status_code == 400


def test_the_form_is_generated_from_the_spec(page_app, stroke_spec):
    """One input per feature, with categories as options, the age range and the unit text."""
    page = _logged_in(page_app).get("/").get_data(as_text=True)
    for name in stroke_spec.feature_names:
        assert f'name="{name}"' in page
    assert '<option value="formerly smoked"' in page
    assert 'min="0.0"' in page and 'max="120.0"' in page
    assert "Average blood glucose in mg/dL" in page
    bmi = re.search(r'<input[^>]*name="bmi"[^>]*>', page).group(0)
    assert "required" not in bmi and "leave empty if unknown" in page  # bmi may be missing


def test_a_patient_gets_risk_decision_terms_version_and_reasons(page_app):
    """The answer shows the calibrated risk in %, the decision, holdout terms, the card link and reasons."""
    response = _assess(_logged_in(page_app))
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    risk = float(re.search(r'id="risk">([\d.]+) %', page).group(1))
    assert 0 < risk < 100
    assert re.search(r'id="decision" class="(flagged|not-flagged)"', page)
    assert "Among patients flagged by this model, about 1 in" in page
    assert 'href="/models/stroke/1/card"' in page
    assert page.count('class="reason"') == 5 and 'data-feature="age"' in page


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("age", "200", "less than or equal to 120"),
        ("age", "old", "valid number"),
        ("age", "", "Field required"),
        ("gender", "Robot", "Input should be 'Female', 'Male' or 'Other'"),
        ("hypertension", "3", "0 or 1"),
    ],
)
def test_errors_show_next_to_their_field(page_app, field, value, message):
    """A bad value is a 422 page with the API's message beside that field, and the values kept."""
    response = _assess(_logged_in(page_app), **{field: value})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    error = re.search(rf'id="{field}-error">([^<]+)<', page).group(1)
    assert message in error.replace("&#39;", "'")
    assert 'id="answer"' not in page


def test_a_missing_bmi_is_allowed(page_app):
    """bmi is nullable in the spec: an empty box still gives an answer."""
    assert _assess(_logged_in(page_app), bmi="").status_code == 200


def test_page_predictions_are_logged_and_take_an_outcome(page_app):
    """A prediction from the page is in the log; its outcome can be recorded from the page."""
    client = _logged_in(page_app)
    page = _assess(client).get_data(as_text=True)
    prediction_id = re.search(r'name="prediction_id" value="([^"]+)"', page).group(1)
    response = client.post(
        "/outcome", data={"prediction_id": prediction_id, "outcome": "1", "csrf_token": _token(page)}
    )
    assert response.status_code == 200 and 'id="outcome-recorded"' in response.get_data(as_text=True)
    runtime = page_app.extensions["clinrisk"]
    row = predlog.read_window(runtime.writer.engine, "stroke").set_index("prediction_id").loc[prediction_id]
    assert row["model_version"] == "1" and row["outcome"] == 1 and row["age"] == 67


def test_nobody_records_an_outcome_for_another_users_prediction(page_app):
    """Bob cannot record an outcome for a prediction Alice made."""
    page = _assess(_logged_in(page_app, "alice")).get_data(as_text=True)
    prediction_id = re.search(r'name="prediction_id" value="([^"]+)"', page).group(1)
    bob = _logged_in(page_app, "bob")
    token = _token(bob.get("/").get_data(as_text=True))
    response = bob.post(
        "/outcome", data={"prediction_id": prediction_id, "outcome": "0", "csrf_token": token}
    )
    assert response.status_code == 404


def test_the_champion_card_shows_the_slices(page_app):
    """/model/card leads to the champion's card, with the sex and age-band tables and the gate."""
    client = _logged_in(page_app)
    response = client.get("/model/card", follow_redirects=True)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-slice="sex"' in page and 'data-slice="age band"' in page
    assert "≥65" in page and "promoted" in page


def test_a_models_card_leads_to_its_champions_card(page_app):
    """/models/stroke/card redirects to the champion's version card, after a login."""
    assert page_app.test_client().get("/models/stroke/card").headers["Location"].startswith("/login")
    client = _logged_in(page_app)
    response = client.get("/models/stroke/card")
    assert response.status_code == 302 and response.headers["Location"] == "/models/stroke/1/card"
    card = client.get("/models/stroke/card", follow_redirects=True)
    assert card.status_code == 200 and 'data-slice="sex"' in card.get_data(as_text=True)


@pytest.mark.parametrize(
    "path", ["/models/stroke/99/card", "/models/stroke/x/card", "/models/stroke/1.0/card"]
)
def test_an_unknown_card_is_a_404_page(page_app, path):
    """A version that does not exist, or is not a number, gives the HTML 404 page, never a 500."""
    response = _logged_in(page_app).get(path)
    assert response.status_code == 404
    assert response.mimetype == "text/html" and "No model card" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("rate", "text"), [(0.1652, "1 in 6"), (0.8, "4 in 5"), (0.75, "3 in 4"), (0.0, "none")]
)
def test_rates_read_as_one_in_n(rate, text):
    """Holdout rates are said as small fractions a clinician can picture."""
    assert one_in(rate) == text


def test_the_api_needs_no_csrf_token(page_app):
    """The JSON API keeps its own auth and is not subject to the page's CSRF check."""
    client = page_app.test_client()
    response = client.post("/predict", json=PATIENT, auth=("alice", PASSWORD))
    assert response.status_code == 200


def test_workers_share_one_generated_session_secret(tmp_path):
    """Without CLINRISK_SESSION_SECRET, the first worker creates a secret the others read."""
    from clinrisk.web.pages import session_secret

    settings = load_settings(home=tmp_path / "home")
    first, second = session_secret(settings), session_secret(settings)
    assert first == second and len(first) == 64
    assert (tmp_path / "home" / "session-secret").stat().st_mode & 0o777 == 0o600
    configured = load_settings(home=tmp_path / "other", session_secret="x" * 40)
    assert session_secret(configured) == "x" * 40


# ---- every served model's page: stroke, diabetes and the regression with a champion, anemia without

DIABETIC = {name: str(value) for name, value in API_DIABETIC.items()}  # as the form posts it
PROGRESSION = {
    "age": "59",
    "sex": "2",
    "bmi": "32.1",
    "blood_pressure": "101",
    "total_cholesterol": "157",
    "ldl": "93.2",
    "hdl": "38",
    "cholesterol_hdl_ratio": "4",
    "log_triglycerides": "4.86",
    "glucose": "87",
}


@pytest.fixture(scope="module")
def models_app(tmp_path_factory, logistic_model):
    """Every model in models/ served from its own fake registry, auth on, users alice and bob."""
    with threadpool_limits(limits=1):
        diabetes = fitted_from_file("diabetes", "logistic_regression")
        progression = fitted_from_file("diabetes_progression", "ridge")
    sources = {
        "stroke": FakeRegistry({"1": logistic_model}, "1"),
        "diabetes": FakeRegistry({"3": diabetes}, "3"),
        "anemia": FakeRegistry({}, None),
        "diabetes_progression": FakeRegistry({"7": progression}, "7"),
    }
    settings = web_settings(tmp_path_factory.mktemp("model-pages"), fast_path=False)
    for source in sources.values():
        source.settings = settings
    add_user(settings.users_file, "alice", PASSWORD)
    add_user(settings.users_file, "bob", PASSWORD)
    app = create_app(settings, model_source=sources, watch=False)
    yield app
    app.extensions["clinrisk"].close()


def _assess_with(client, name: str, form: dict):
    token = _token(client.get(f"/models/{name}/page").get_data(as_text=True))
    return client.post(f"/models/{name}/page", data={**form, "csrf_token": token})


def _record(client, name: str, page: str, outcome: str):
    prediction_id = re.search(r'name="prediction_id" value="([^"]+)"', page).group(1)
    data = {"prediction_id": prediction_id, "outcome": outcome, "csrf_token": _token(page)}
    return prediction_id, client.post(f"/models/{name}/outcome", data=data)


def _logged(app, name: str, prediction_id: str):
    """The prediction's row in the log, once the writer has written its queue."""
    writer = app.extensions["clinrisk"].writer
    writer.flush()
    return predlog.read_window(writer.engine, name).set_index("prediction_id").loc[prediction_id]


def test_a_second_models_page_has_its_own_form_and_lists_every_model(models_app):
    """/models/diabetes/page draws the diabetes spec's fields, posts to itself and links every model."""
    response = _logged_in(models_app).get("/models/diabetes/page")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    for name in DIABETIC:
        assert f'name="{name}"' in page
    assert 'name="gender"' not in page and 'action="/models/diabetes/page"' in page
    assert 'action="/models/diabetes/outcome"' not in page  # no answer yet, no outcome form
    assert "Plasma glucose 2 h into an oral glucose tolerance test" in page and 'max="400.0"' in page
    links = dict(re.findall(r'<a href="([^"]+)" data-model="([^"]+)"', page))
    assert links == {
        "/": "stroke",
        "/models/anemia/page": "anemia",
        "/models/diabetes/page": "diabetes",
        "/models/diabetes_progression/page": "diabetes_progression",
    }
    assert re.search(r'data-model="diabetes" aria-current="page"', page)


def test_the_stroke_page_lists_the_models_and_keeps_its_addresses(models_app):
    """/ still serves stroke, posting to / and /outcome, with the list of served models."""
    client = _logged_in(models_app)
    page = client.get("/").get_data(as_text=True)
    assert 'name="gender"' in page and 'action="/"' in page and 'data-model="diabetes"' in page
    answered = _assess(client).get_data(as_text=True)
    assert 'action="/outcome"' in answered and 'id="risk"' in answered


def test_a_second_model_assesses_logs_and_records_an_outcome(models_app):
    """A diabetes assessment shows risk, decision, card and reasons, is logged, and takes an outcome."""
    client = _logged_in(models_app)
    response = _assess_with(client, "diabetes", DIABETIC)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 0 < float(re.search(r'id="risk">([\d.]+) %', page).group(1)) < 100
    assert re.search(r'id="decision" class="(flagged|not-flagged)"', page)
    assert "Risk of diabetes onset" in page and 'href="/models/diabetes/3/card"' in page
    assert page.count('class="reason"') == 5 and 'data-feature="glucose"' in page
    prediction_id, recorded = _record(client, "diabetes", page, "1")
    assert recorded.status_code == 200
    assert "recorded: had diabetes onset" in recorded.get_data(as_text=True)
    row = _logged(models_app, "diabetes", prediction_id)
    assert row["model_version"] == "3" and row["outcome"] == 1 and row["glucose"] == 200
    assert row["requested_by"] == "alice"
    metrics = models_app.test_client().get("/metrics").get_data(as_text=True)
    assert 'endpoint="/models/<name>/page",method="POST",model="diabetes",status="200"' in metrics
    assert 'clinrisk_predictions_total{model="diabetes",version="3"}' in metrics


def test_an_outcome_goes_only_to_the_model_and_session_that_predicted(models_app):
    """A stroke prediction cannot be recorded through diabetes, nor Alice's diabetes one by Bob."""
    alice = _logged_in(models_app, "alice")
    stroke_page = _assess(alice).get_data(as_text=True)
    _, crossed = _record(alice, "diabetes", stroke_page, "1")
    assert crossed.status_code == 404
    diabetes_page = _assess_with(alice, "diabetes", DIABETIC).get_data(as_text=True)
    bob = _logged_in(models_app, "bob")
    bobs_page = bob.get("/models/diabetes/page").get_data(as_text=True)
    prediction_id = re.search(r'name="prediction_id" value="([^"]+)"', diabetes_page).group(1)
    response = bob.post(
        "/models/diabetes/outcome",
        data={"prediction_id": prediction_id, "outcome": "0", "csrf_token": _token(bobs_page)},
    )
    assert response.status_code == 404


def test_a_models_page_needs_a_login_and_a_csrf_token_and_sends_the_security_headers(models_app):
    """Anonymous visitors go to the login form; a forged token is a 400; headers as on every page."""
    anonymous = models_app.test_client().get("/models/diabetes/page")
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"] == "/login?next=/models/diabetes/page"
    client = _logged_in(models_app)
    for data in ({**DIABETIC, "csrf_token": "forged"}, DIABETIC):
        assert client.post("/models/diabetes/page", data=data).status_code == 400
    response = client.get("/models/diabetes/page")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_bad_values_on_a_second_models_page_show_beside_their_field(models_app):
    """A diabetes value out of its spec's range is a 422 with the API's message beside the field."""
    response = _assess_with(_logged_in(models_app), "diabetes", {**DIABETIC, "glucose": "900"})
    page = response.get_data(as_text=True)
    assert response.status_code == 422 and 'id="answer"' not in page
    assert "less than or equal to 400" in re.search(r'id="glucose-error">([^<]+)<', page).group(1)


@pytest.mark.parametrize("name", ["nope", "stroke.yaml", "..", "x" * 300, "Stroke"])
def test_an_unknown_model_is_a_404_page_naming_the_served_models(models_app, name):
    """An unknown name is an HTML 404 naming the served models, never a file path, for GET and POST."""
    client = _logged_in(models_app)
    response = client.get(f"/models/{name}/page")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Unknown model" in page and 'data-model="anemia"' in page
    assert "this service serves stroke, anemia, diabetes, diabetes_progression" in page
    assert str(models_app.extensions["clinrisk"].settings.spec_dir) not in page
    token = _token(client.get("/").get_data(as_text=True))
    assert client.post(f"/models/{name}/page", data={**DIABETIC, "csrf_token": token}).status_code == 404


@pytest.mark.parametrize(("name", "version"), [("diabetes", "3"), ("diabetes_progression", "7")])
def test_each_models_card_redirects_to_its_own_champions_card(models_app, name, version):
    """/models/<name>/card goes to that model's champion, not the default model's."""
    response = _logged_in(models_app).get(f"/models/{name}/card")
    assert response.status_code == 302 and response.headers["Location"] == f"/models/{name}/{version}/card"


@pytest.mark.parametrize("name", ["nope", "stroke.yaml", "Stroke", "x" * 300])
def test_the_card_of_an_unknown_model_is_a_404_page_naming_the_served_models(models_app, name):
    """An unknown name is the same HTML 404 as its page: the served models, no file path."""
    response = _logged_in(models_app).get(f"/models/{name}/card")
    page = response.get_data(as_text=True)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "Unknown model" in page
    assert "this service serves stroke, anemia, diabetes, diabetes_progression" in page
    assert str(models_app.extensions["clinrisk"].settings.spec_dir) not in page


def test_the_card_of_a_model_without_a_champion_is_the_pages_503(models_app):
    """anemia has no champion: its card is the 503 page its patient page gives."""
    response = _logged_in(models_app).get("/models/anemia/card")
    page = response.get_data(as_text=True)
    assert response.status_code == 503 and response.headers["Retry-After"] == "3600"
    assert "Cannot answer now" in page and "no champion model is loaded for anemia" in page


def test_a_model_without_a_champion_says_so_like_the_stroke_page(models_app, tmp_path):
    """anemia has no champion: its page is the same 503 message the stroke page gives without one."""
    client = _logged_in(models_app)
    response = client.get("/models/anemia/page")
    page = response.get_data(as_text=True)
    assert response.status_code == 503 and response.headers["Retry-After"] == "3600"
    assert "Cannot answer now" in page and "no champion model is loaded for anemia" in page
    token = _token(client.get("/").get_data(as_text=True))
    assert client.post("/models/anemia/page", data={"csrf_token": token}).status_code == 503
    settings = web_settings(tmp_path / "home", auth_enabled=False)
    empty = FakeRegistry({}, None, settings)
    stroke_app = create_app(settings, model_source=empty, watch=False)
    stroke_page = stroke_app.test_client().get("/")
    assert stroke_page.status_code == 503
    assert "Cannot answer now" in stroke_page.get_data(as_text=True)
    assert "no champion model is loaded for stroke" in stroke_page.get_data(as_text=True)
    stroke_app.extensions["clinrisk"].close()


def test_a_regression_shows_its_predicted_value_and_takes_the_observed_one(models_app):
    """diabetes_progression answers a number (no risk, threshold or flag), logged, with a numeric outcome."""
    client = _logged_in(models_app)
    form_page = client.get("/models/diabetes_progression/page").get_data(as_text=True)
    assert "no risk, no threshold" in form_page and 'name="total_cholesterol"' in form_page
    response = _assess_with(client, "diabetes_progression", PROGRESSION)
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    value = float(re.search(r'id="predicted-value">([-\d.]+)<', page).group(1))
    assert 25 < value < 346  # inside the range of the training targets
    assert 'id="risk"' not in page and 'id="decision"' not in page and "classifications only" in page
    prediction_id, recorded = _record(client, "diabetes_progression", page, "152.5")
    assert recorded.status_code == 200 and "observed progression 152.5" in recorded.get_data(as_text=True)
    row = _logged(models_app, "diabetes_progression", prediction_id)
    assert row["model_version"] == "7" and row["outcome"] == 152.5
    assert row["prediction"] == pytest.approx(value, abs=0.05) and pd.isna(row["probability"])


@pytest.mark.parametrize("outcome", ["", "much", "nan", "inf", "1e999"])
def test_a_regression_outcome_must_be_a_finite_number(models_app, outcome):
    """A regression's observed value that is not a finite number is a 422 page, and nothing is recorded."""
    client = _logged_in(models_app)
    page = _assess_with(client, "diabetes_progression", PROGRESSION).get_data(as_text=True)
    prediction_id, response = _record(client, "diabetes_progression", page, outcome)
    assert response.status_code == 422
    assert "must be a number" in response.get_data(as_text=True)
    assert pd.isna(_logged(models_app, "diabetes_progression", prediction_id)["outcome"])
