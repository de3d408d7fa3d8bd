"""Login hardening: failed-auth limits (429 + Retry-After), the audit log, and safe users-file edits."""

from __future__ import annotations

import base64
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from web_fakes import FakeRegistry, make_app, web_settings
from web_support import PASSWORD, PATIENT

from clinrisk.web import users
from clinrisk.web.ratelimit import FailureLimiter


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


@pytest.fixture
def limited_app(tmp_path, logistic_model):
    """Auth on, users alice and bob, and at most 3 failures per client or user a minute."""
    settings = web_settings(tmp_path / "home", auth_failure_limit=3, auth_failure_window_seconds=60)
    users.add_user(settings.users_file, "alice", PASSWORD)
    users.add_user(settings.users_file, "bob", PASSWORD)
    app = make_app(settings, FakeRegistry({"1": logistic_model}, "1"), watch=False)
    app.config["API_KEY"] = users.add_api_key(settings.users_file, "alice")
    yield app
    app.extensions["clinrisk"].close()


def from_client(app, address: str):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_a_wrong_password_flood_gets_429_while_real_users_are_served(limited_app):
    """It answers 429 with Retry-After to the flood, and 200 to alice's key and known password."""
    alice = from_client(limited_app, "10.0.0.1")
    assert alice.post("/predict", json=PATIENT, headers=basic("alice", PASSWORD)).status_code == 200
    attacker = from_client(limited_app, "10.6.6.6")
    codes = [
        attacker.post("/predict", json=PATIENT, headers=basic("alice", f"guess {i}")).status_code
        for i in range(8)
    ]
    assert codes == [401] * 3 + [429] * 5
    refused = attacker.post("/predict", json=PATIENT, headers=basic("bob", "another guess"))
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json["error"] == "too_many_failures"
    for headers in (basic("alice", PASSWORD), {"Authorization": f"Bearer {limited_app.config['API_KEY']}"}):
        assert alice.post("/predict", json=PATIENT, headers=headers).status_code == 200
    assert (
        from_client(limited_app, "10.0.0.2").get("/model", headers=basic("bob", PASSWORD)).status_code == 200
    )


def test_a_user_under_attack_from_many_addresses_is_limited_per_user(limited_app):
    """It counts failures per user name too, so rotating addresses does not help."""
    codes = [
        from_client(limited_app, f"10.1.0.{i}").get("/model", headers=basic("bob", f"guess {i}")).status_code
        for i in range(5)
    ]
    assert codes == [401, 401, 401, 429, 429]


def test_the_window_lets_a_client_try_again():
    """It forgets failures older than the window."""
    now = [0.0]
    limiter = FailureLimiter(limit=2, window=10, clock=lambda: now[0])
    limiter.failed("client:a")
    limiter.failed("client:a")
    assert limiter.retry_after("client:a") == 10 and limiter.retry_after("client:b") is None
    now[0] = 10.5
    assert limiter.retry_after("client:a") is None


def test_auth_outcomes_go_to_the_audit_log_without_secrets(limited_app, caplog):
    """It logs who succeeded or failed, from where, and never the password or key."""
    client = from_client(limited_app, "10.0.0.9")
    with caplog.at_level(logging.INFO, logger="clinrisk.audit"):
        client.get("/model", headers=basic("alice", PASSWORD))
        client.get("/model", headers=basic("alice", "a wrong secret"))
        client.get("/model", headers={"Authorization": f"Bearer {limited_app.config['API_KEY']}"})
    audit = [r.getMessage() for r in caplog.records if r.name == "clinrisk.audit"]
    assert any("auth ok user='alice'" in m and "10.0.0.9" in m for m in audit)
    assert any("auth failed user='alice'" in m for m in audit)
    text = "\n".join(audit)
    assert PASSWORD not in text and "a wrong secret" not in text
    assert limited_app.config["API_KEY"] not in text


def test_a_caller_is_audited_once_not_on_every_request(limited_app, caplog):
    """A key or password accepted once is not logged again on each request (one line per caller
    until the users file changes); every failure still is."""
    client = from_client(limited_app, "10.0.0.7")
    key = {"Authorization": f"Bearer {limited_app.config['API_KEY']}"}
    with caplog.at_level(logging.INFO, logger="clinrisk.audit"):
        for _ in range(5):
            assert client.get("/model", headers=key).status_code == 200
            assert client.get("/model", headers=basic("alice", PASSWORD)).status_code == 200
        for _ in range(2):
            assert client.get("/model", headers={"Authorization": "Bearer crk_nope_nope"}).status_code == 401
    audit = [r.getMessage() for r in caplog.records if r.name == "clinrisk.audit"]
    key_id = limited_app.config["API_KEY"].split("_")[1]
    assert sum(f"key='{key_id}'" in m and "auth ok" in m for m in audit) == 1
    assert sum("auth ok user='alice' key=''" in m for m in audit) == 1
    assert sum("auth failed" in m and "key='nope'" in m for m in audit) == 2


@pytest.mark.parametrize("password", ["", "short", "elevenchars"])
def test_passwords_need_twelve_characters(tmp_path, password):
    """It refuses passwords shorter than 12 characters (ASVS 2.1.1)."""
    with pytest.raises(users.UserError, match="at least 12"):
        users.add_user(tmp_path / "users.json", "carol", password)


def test_concurrent_user_edits_lose_nothing(tmp_path, monkeypatch):
    """It keeps every user when many `user add` and `user remove` run at once (each its own lock handle)."""
    monkeypatch.setattr(users, "SCRYPT_N", 2**4)  # the race is in the file, not in scrypt
    path = tmp_path / "users.json"
    for i in range(8):
        users.add_user(path, f"old{i}", "a long enough password")
    edits = [lambda i=i: users.add_user(path, f"new{i}", "a long enough password") for i in range(8)]
    edits += [lambda i=i: users.remove_user(path, f"old{i}") for i in range(8)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        for future in [pool.submit(edit) for edit in edits]:
            future.result()
    assert sorted(users.read_users(path)) == [f"new{i}" for i in range(8)]


@pytest.mark.parametrize(("proxy_hops", "second_client"), [(1, 401), (0, 429)])
def test_failures_behind_a_proxy_count_per_forwarded_client_only_when_the_proxy_is_trusted(
    tmp_path, logistic_model, proxy_hops, second_client
):
    """It counts failures per X-Forwarded-For client with CLINRISK_PROXY_HOPS=1, and ignores it with 0."""
    settings = web_settings(
        tmp_path / "home", auth_failure_limit=3, auth_failure_window_seconds=60, proxy_hops=proxy_hops
    )
    app = make_app(settings, FakeRegistry({"1": logistic_model}, "1"), watch=False)
    proxy = from_client(app, "172.18.0.9")  # every request arrives from nginx's address

    def attempt(client: str, name: str) -> int:
        headers = basic(name, "a wrong password") | {"X-Forwarded-For": client}
        return proxy.get("/model", headers=headers).status_code

    assert [attempt("10.6.6.6", f"guess{i}") for i in range(4)] == [401, 401, 401, 429]
    assert attempt("10.0.0.7", "carol") == second_client
    app.extensions["clinrisk"].close()
