"""The patient page and the model cards on the Flask test client, with a champion from the registry."""

from __future__ import annotations

import re

import pytest
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


@pytest.mark.parametrize(
    ("path", "status"), [("/models/stroke/99/card", 404), ("/models/stroke/x/card", 404)]
)
def test_an_unknown_card_is_a_404_page(page_app, path, status):
    """A version that does not exist gives a 404 page, never a 500."""
    assert _logged_in(page_app).get(path).status_code == status


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
