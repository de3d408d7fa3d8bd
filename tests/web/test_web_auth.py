"""Authentication: Basic users and Bearer API keys from a hashed users file, and `clinrisk user`."""

from __future__ import annotations

import base64
import json
import stat
import time
from pathlib import Path

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


def status_within(client, headers: dict, wanted: int, seconds: float) -> tuple[int, float]:
    """Ask GET /model until it answers `wanted` or `seconds` pass: (last status, seconds waited)."""
    started = time.monotonic()
    while True:
        status = client.get("/model", headers=headers).status_code
        waited = time.monotonic() - started
        if status == wanted or waited > seconds:
            return status, waited
        time.sleep(0.05)


def test_a_new_user_is_accepted_without_restart(tmp_path, logistic_model):
    """It re-reads the users file when it changes, so `clinrisk user add` and `user remove` take
    effect within RECHECK_SECONDS, without a restart, and not before the file is read again."""
    settings = web_settings(tmp_path / "home")
    app = make_app(settings, FakeRegistry({"1": logistic_model}, "1"), watch=False)
    client = app.test_client()
    assert client.get("/model", headers=basic("carol", PASSWORD)).status_code == 401
    assert "clinrisk user add" in client.get("/model").json["message"]
    users.add_user(settings.users_file, "carol", PASSWORD)
    assert status_within(client, basic("carol", PASSWORD), 200, 3 * users.RECHECK_SECONDS)[0] == 200
    users.remove_user(settings.users_file, "carol")
    assert status_within(client, basic("carol", PASSWORD), 401, 3 * users.RECHECK_SECONDS)[0] == 401
    app.extensions["clinrisk"].close()


def test_the_users_file_is_read_at_most_once_per_recheck_interval(tmp_path, monkeypatch):
    """It answers many checks from one read of the file, and reads it again once the interval ends."""
    path = tmp_path / "users.json"
    users.add_user(path, "erin", PASSWORD)
    key = users.add_api_key(path, "erin")
    reads = []
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or real_read(self))
    clock = [100.0]
    monkeypatch.setattr(users.time, "monotonic", lambda: clock[0])
    store = users.UserStore(path, recheck_seconds=1.0)
    assert [store.check_api_key(key) for _ in range(50)] == ["erin"] * 50
    assert len(reads) == 1
    users.remove_user(path, "erin")
    clock[0] += 0.5
    assert store.check_api_key(key) == "erin" and len(reads) == 1  # not yet read again
    clock[0] += 0.6
    assert store.check_api_key(key) is None and len(reads) == 2


def test_an_unreadable_users_file_fails_every_check_until_it_is_fixed(tmp_path, monkeypatch):
    """A users file that turns malformed is refused on every check, not hidden by the last good copy."""
    path = tmp_path / "users.json"
    users.add_user(path, "erin", PASSWORD)
    key = users.add_api_key(path, "erin")
    clock = [100.0]
    monkeypatch.setattr(users.time, "monotonic", lambda: clock[0])
    store = users.UserStore(path, recheck_seconds=1.0)
    assert store.check_api_key(key) == "erin"
    good = path.read_text()
    path.write_text("{not json")
    clock[0] += 1.5
    for _ in range(3):  # the same instant: an error is not cached as a good read
        with pytest.raises(users.UserError):
            store.check_api_key(key)
    path.write_text(good)
    assert store.check_api_key(key) == "erin"


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
