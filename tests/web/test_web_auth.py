"""Authentication: Basic users and Bearer API keys from a hashed users file, and `clinrisk user`."""

from __future__ import annotations

import base64
import json
import stat

import pytest
from click.testing import CliRunner
from web_fakes import FakeRegistry, make_app, web_settings
from web_support import PASSWORD, PATIENT

from clinrisk.cli import main
from clinrisk.web import users

PROTECTED = [
    ("post", "/predict", PATIENT),
    ("post", "/feedback", {"prediction_id": "x", "outcome": 1}),
    ("get", "/model", None),
]
OPEN = ["/health", "/ready", "/docs", "/openapi.json", "/metrics"]


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def call(client, method: str, path: str, body, headers: dict | None = None):
    return getattr(client, method)(path, json=body, headers=headers or {})


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("alice", "wrong password"),
        basic("mallory", PASSWORD),
        {"Authorization": "Bearer crk_00000000_nope"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic !!!notbase64"},
        {"Authorization": "Digest abc"},
    ],
    ids=["none", "wrong-password", "unknown-user", "wrong-key", "empty-key", "garbled-basic", "other-scheme"],
)
def test_protected_endpoints_answer_401_with_a_challenge(shared_app, method, path, body, headers):
    """It answers 401 with WWW-Authenticate for missing or wrong credentials."""
    response = call(shared_app.test_client(), method, path, body, headers)
    assert response.status_code == 401
    challenges = response.headers.getlist("WWW-Authenticate")
    assert any(c.startswith("Basic ") for c in challenges) and any(
        c.startswith("Bearer ") for c in challenges
    )
    assert response.json["error"] == "unauthorized"


def test_basic_password_and_api_key_are_both_accepted(shared_app):
    """It accepts the user's password (HTTP Basic) and API key (Bearer)."""
    client = shared_app.test_client()
    assert call(client, "post", "/predict", PATIENT, basic("alice", PASSWORD)).status_code == 200
    bearer = {"Authorization": f"Bearer {shared_app.config['API_KEY']}"}
    assert call(client, "get", "/model", None, bearer).status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_operational_endpoints_stay_open(shared_app, path):
    """It serves health, readiness, docs, OpenAPI and metrics without credentials."""
    assert shared_app.test_client().get(path).status_code == 200


def test_auth_can_be_turned_off_for_local_play(open_app):
    """It serves /predict without credentials when auth_enabled is false."""
    assert open_app.test_client().post("/predict", json=PATIENT).status_code == 200


def test_secrets_are_stored_hashed_in_a_private_file(tmp_path):
    """It never writes a password or an API key in clear, and the file is readable by its owner only."""
    path = tmp_path / "users.json"
    users.add_user(path, "bob", PASSWORD)
    key = users.add_api_key(path, "bob")
    text = path.read_text()
    assert PASSWORD not in text and key not in text
    assert json.loads(text)["users"]["bob"]["password"].startswith("scrypt$")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_new_user_is_accepted_without_restart(tmp_path, logistic_model):
    """It re-reads the users file when it changes, so `clinrisk user add` takes effect at once."""
    settings = web_settings(tmp_path / "home")
    app = make_app(settings, FakeRegistry({"1": logistic_model}, "1"), watch=False)
    client = app.test_client()
    assert client.get("/model", headers=basic("carol", PASSWORD)).status_code == 401
    assert "clinrisk user add" in client.get("/model").json["message"]
    users.add_user(settings.users_file, "carol", PASSWORD)
    assert client.get("/model", headers=basic("carol", PASSWORD)).status_code == 200
    users.remove_user(settings.users_file, "carol")
    assert client.get("/model", headers=basic("carol", PASSWORD)).status_code == 401
    app.extensions["clinrisk"].close()


def test_user_add_reads_the_password_from_stdin_into_clinrisk_home(tmp_path, monkeypatch):
    """It stores the user in CLINRISK_HOME/users.json and prints a new API key on request."""
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["user", "add", "dora", "--api-key"], input=f"{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    store = users.UserStore(tmp_path / "users.json")
    assert store.check_password("dora", PASSWORD) == "dora"
    assert store.check_api_key(printed["api_key"]) == "dora"


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["user", "add", "eve"], "short\n", "at least 12"),
        (["user", "add", "bad name"], f"{PASSWORD}\n", "invalid"),
        (["user", "remove", "nobody"], "", "no user"),
    ],
    ids=["short-password", "bad-name", "unknown-user"],
)
def test_user_commands_fail_clearly(tmp_path, monkeypatch, args, stdin, message):
    """It exits non-zero with a one-line reason for a short password, a bad name or an unknown user."""
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path))
    result = CliRunner().invoke(main, args, input=stdin)
    assert result.exit_code == 1
    assert message in result.output


def test_adding_an_existing_user_needs_replace(tmp_path, monkeypatch):
    """It refuses to overwrite a user unless --replace is given, and keeps the user's API keys."""
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path))
    runner = CliRunner()
    runner.invoke(main, ["user", "add", "finn", "--api-key"], input=f"{PASSWORD}\n")
    assert runner.invoke(main, ["user", "add", "finn"], input="another password\n").exit_code == 1
    assert (
        runner.invoke(main, ["user", "add", "finn", "--replace"], input="another password\n").exit_code == 0
    )
    listed = json.loads(runner.invoke(main, ["user", "list"]).stdout.strip().splitlines()[-1])["users"]
    assert listed[0]["name"] == "finn" and len(listed[0]["api_keys"]) == 1
    assert users.UserStore(tmp_path / "users.json").check_password("finn", "another password") == "finn"
