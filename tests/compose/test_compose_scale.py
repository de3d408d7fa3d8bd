"""The stack scaled out with `--scale web=2 --scale prefect-worker=2`: nginx in front of 2 web replicas.

It shows that requests spread over both replicas into the one prediction log, that a login
made on one replica holds on the other, that both workers serve the one pool, that stopping a
replica under a steady load loses no request, that two retrains triggered at once run one
after the other, and that a promotion reaches every replica within two polling intervals.
It scales out the stack of test_compose_stack.py, so it runs last (see conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from compose.conftest import inspect_container, timed, wait_until_healthy
from compose.test_compose_stack import (
    PATIENT,
    TERMINAL_STATES,
    model_versions,
    psql,
    wait_for_ready,
)
from support import prefect_api_call

pytestmark = pytest.mark.compose

SCALE = ("--scale", "web=2", "--scale", "prefect-worker=2")
POOL = "clinrisk-pool"
POLL_SECONDS = 15  # how often each web replica asks the registry for the champion
UPSTREAM = "X-Clinrisk-Upstream"  # the replica nginx passed the request to (several when retried)


@pytest.fixture(scope="module")
def scaled_stack(compose_stack, request):
    """The session's stack scaled out, once every other compose test has run.

    Starting a second stack would train a first champion again; `up --scale` instead adds a
    second web replica and a second worker behind the proxy the stack already has, and reruns
    init (which finds everything in place). The session's `down -v` removes it all.
    """
    started = time.monotonic()
    env = {**compose_stack.env, "CLINRISK_POLL_INTERVAL_SECONDS": str(POLL_SECONDS)}
    stack = dataclasses.replace(compose_stack, env=env)
    timed(stack, "scale: up", lambda: stack.run("up", "--detach", *SCALE, timeout=900))
    timed(stack, "scale: healthy", lambda: wait_until_healthy(stack))
    yield stack
    stack.timings["scale: in all"] = round(time.monotonic() - started, 1)  # what scaling out adds
    if request.session.testsfailed:
        print(f"\n===== proxy logs =====\n{stack.run('logs', '--no-color', '--tail', '60', 'proxy').stdout}")


@pytest.fixture(scope="module")
def scaled_auth(scaled_stack) -> tuple[str, str]:
    wait_for_ready(f"{scaled_stack.url('web')}/ready")
    return "admin", scaled_stack.password


def replica_addresses(stack) -> dict[str, str]:
    """The web replicas' addresses on the stack's network, by container id."""
    addresses = {}
    for container in stack.containers("web"):
        networks = inspect_container(container)["NetworkSettings"]["Networks"]
        addresses[container] = next(iter(networks.values()))["IPAddress"]
    return addresses


def predict(session: requests.Session, url: str, auth) -> tuple[int | str, str, str | None]:
    """One POST /predict: (status or exception name, the upstream(s) nginx used, prediction_id)."""
    try:
        response = session.post(f"{url}/predict", json=PATIENT, auth=auth, timeout=60)
    except requests.RequestException as exc:
        return type(exc).__name__, "", None
    body = response.json() if response.status_code == 200 else {}
    return response.status_code, response.headers.get(UPSTREAM, ""), body.get("prediction_id")


def served_by(upstreams) -> set[str]:
    """The replica addresses (without port) that answered: the last of each retried chain."""
    return {u.split(",")[-1].strip().rsplit(":", 1)[0] for u in upstreams if u}


class SteadyLoad:
    """A few threads posting patients back to back through the proxy until stopped."""

    def __init__(self, url: str, auth, threads: int = 4):
        self.url, self.auth, self.threads = url, auth, threads
        self.results: list[tuple[float, int | str, str]] = []  # (sent at, status, upstream)
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(threads)
        self._futures = []

    def __enter__(self) -> SteadyLoad:
        self._futures = [self._pool.submit(self._loop) for _ in range(self.threads)]
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for future in self._futures:
            future.result()
        self._pool.shutdown()

    def _loop(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                sent = time.monotonic()
                status, upstream, _ = predict(session, self.url, self.auth)
                self.results.append((sent, status, upstream))

    def since(self, moment: float) -> list[tuple[float, int | str, str]]:
        """The answered requests sent at or after `moment`."""
        return [r for r in list(self.results) if r[0] >= moment]

    def wait_for(self, count: int, moment: float) -> None:
        """Wait until at least `count` requests sent after `moment` have their answer."""
        while len(self.since(moment)) < count and not any(f.done() for f in self._futures):
            time.sleep(0.05)


def wait_until(check, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(1)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def test_two_web_replicas_run_behind_the_proxy_which_alone_publishes_the_port(scaled_stack):
    """It runs 2 healthy web replicas with no published port, and publishes the proxy on loopback."""
    replicas = scaled_stack.containers("web")
    assert len(replicas) == 2
    for container in replicas:
        state = inspect_container(container)
        assert state["State"]["Health"]["Status"] == "healthy"
        assert not state["HostConfig"]["PortBindings"]
    bindings = scaled_stack.inspect("proxy")["HostConfig"]["PortBindings"]
    assert bindings == {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(scaled_stack.ports["web"])}]}
    assert scaled_stack.exec("proxy", "id", "-un").strip() == "www-data"


def test_two_workers_serve_the_one_work_pool(scaled_stack, prefect_auth):
    """It registers both worker replicas, under different names, with the pool, both online."""
    assert len(scaled_stack.containers("prefect-worker")) == 2
    api = f"{scaled_stack.url('prefect-server')}/api"

    def online() -> set[str]:
        url = f"{api}/work_pools/{POOL}/workers/filter"
        workers = prefect_api_call("POST", url, prefect_auth, json={}).json()
        names = {w["name"] for w in workers if w["status"] == "ONLINE"}
        return names if len(names) == 2 else set()

    names = wait_until(online, "two online workers")
    workers = scaled_stack.containers("prefect-worker")
    hostnames = {inspect_container(container)["Config"]["Hostname"] for container in workers}
    assert names == {f"clinrisk-worker-{hostname}" for hostname in hostnames}


def test_predictions_answered_by_both_replicas_land_in_the_one_log(scaled_stack, scaled_auth):
    """It spreads POST /predict over both replicas, and every answer is a row of the one prediction log."""
    with requests.Session() as session:
        answers = [predict(session, scaled_stack.url("web"), scaled_auth) for _ in range(20)]
    assert [status for status, _, _ in answers] == [200] * 20
    assert served_by(u for _, u, _ in answers) == set(replica_addresses(scaled_stack).values())
    ids = ",".join(f"'{prediction_id}'" for _, _, prediction_id in answers)
    query = f"SELECT count(*) FROM predictions WHERE prediction_id IN ({ids})"
    wait_until(lambda: psql(scaled_stack, "predictions", query) == "20", "20 logged predictions", 60)


def test_a_login_on_one_replica_holds_on_the_other(scaled_stack, scaled_auth):
    """It accepts the patient page's session cookie and CSRF token on whichever replica a request reaches."""
    url = scaled_stack.url("web")
    with requests.Session() as browser:
        form = browser.get(f"{url}/login", timeout=30)
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        login = browser.post(
            f"{url}/login",
            data={"csrf_token": token, "next": "/", "username": "admin", "password": scaled_auth[1]},
            allow_redirects=False,
            timeout=30,
        )
        assert login.status_code == 302, login.text
        pages = [browser.get(f"{url}/", allow_redirects=False, timeout=30) for _ in range(6)]
    assert [page.status_code for page in pages] == [200] * 6
    upstreams = [form.headers[UPSTREAM], login.headers[UPSTREAM]] + [p.headers[UPSTREAM] for p in pages]
    assert len(served_by(upstreams)) == 2


def test_stopping_a_replica_under_load_loses_no_request(scaled_stack, scaled_auth):
    """It answers every request of a steady load while one replica stops and starts again."""
    before = replica_addresses(scaled_stack)
    stopped = sorted(before)[0]
    survivor = before[sorted(before)[1]]
    logged_before = logged_rows(scaled_stack)
    with SteadyLoad(scaled_stack.url("web"), scaled_auth) as load:
        load.wait_for(40, 0.0)
        stop_at = time.monotonic()
        subprocess.run(["docker", "stop", stopped], check=True, capture_output=True, timeout=60)
        stopped_at = time.monotonic()
        load.wait_for(40, stopped_at)
        while_down = load.since(stopped_at)
        start_at = time.monotonic()
        subprocess.run(["docker", "start", stopped], check=True, capture_output=True, timeout=60)
        restarted = wait_until(lambda: replica_addresses(scaled_stack)[stopped], "an address for the replica")
        wait_until(
            lambda: inspect_container(stopped)["State"]["Health"]["Status"] == "healthy",
            "the restarted replica's health",
            300,
        )
        back_at = time.monotonic()
        wait_until(
            lambda: restarted in served_by(u for _, _, u in load.since(back_at)), "a request served by it"
        )
    failures = Counter(status for _, status, _ in load.results if status != 200)
    retried = sum("," in upstream for _, _, upstream in load.results)
    answered = sum(status == 200 for _, status, _ in load.results)
    # Every answer is logged, the stopped replica's too (it flushes its log on a graceful stop).
    # A POST that nginx replayed after it reached the stopping replica adds one row for an
    # answer nobody received: that is the "extra" count, the price of retrying /predict.
    deadline = time.monotonic() + 60  # the log is written in batches, off the request path
    while logged_rows(scaled_stack) - logged_before < answered and time.monotonic() < deadline:
        time.sleep(1)
    logged = logged_rows(scaled_stack) - logged_before
    summary = {
        "requests": len(load.results),
        "failures": dict(failures),
        "retried_by_nginx": retried,
        "during_stop": len(load.since(stop_at)) - len(load.since(stopped_at)),
        "while_down": len(while_down),
        "extra_log_rows": logged - answered,
        # When each failure was sent, and which replica(s) nginx tried: what a flaky run shows.
        "failed": [
            {
                "phase": phase_of(
                    sent,
                    [("stopping", stop_at), ("down", stopped_at), ("starting", start_at), ("back", back_at)],
                ),
                "seconds_after_stop": round(sent - stop_at, 2),
                "status": status,
                "upstream": upstream,
            }
            for sent, status, upstream in load.results
            if status != 200
        ],
    }
    print(f"\nscale-out under a stopping replica: {json.dumps(summary)}")
    assert not failures, summary
    assert logged >= answered, summary
    assert served_by(u for _, _, u in while_down) == {survivor}
    assert served_by(u for _, _, u in load.results) == {before[stopped], survivor, restarted}


def phase_of(moment: float, phases: list[tuple[str, float]]) -> str:
    """The name of the last phase that began at or before `moment` ("before" if none had)."""
    began = [name for name, start in phases if start <= moment]
    return began[-1] if began else "before"


def logged_rows(stack) -> int:
    return int(psql(stack, "predictions", "SELECT count(*) FROM predictions"))


@pytest.fixture(scope="module")
def two_retrains(scaled_stack, prefect_auth) -> list[dict]:
    """Two runs of the retrain deployment created at once: both flow runs, finished.

    No new labels since test_compose_stack.py's retrain: each run finds the store unchanged and
    skips training, which keeps this short; the deployment's limit applies to the whole run.
    """
    api = f"{scaled_stack.url('prefect-server')}/api"
    deployment = prefect_api_call("GET", f"{api}/deployments/name/retrain/stroke", prefect_auth).json()
    created = [
        prefect_api_call(
            "POST", f"{api}/deployments/{deployment['id']}/create_flow_run", prefect_auth, json={}
        ).json()
        for _ in range(2)
    ]

    def finished() -> list[dict]:
        urls = [f"{api}/flow_runs/{run['id']}" for run in created]
        runs = [prefect_api_call("GET", url, prefect_auth).json() for url in urls]
        return runs if all(run["state"]["type"] in TERMINAL_STATES for run in runs) else []

    return wait_until(finished, "both retrain runs", 900)


def test_two_retrains_triggered_at_once_run_one_after_the_other(scaled_stack, two_retrains, prefect_auth):
    """It runs each of two simultaneous retrains once, never both at a time (concurrency limit 1)."""
    assert [run["state"]["type"] for run in two_retrains] == ["COMPLETED", "COMPLETED"], two_retrains
    assert [run["run_count"] for run in two_retrains] == [1, 1]
    first, second = sorted(two_retrains, key=lambda run: run["start_time"])
    assert first["end_time"] <= second["start_time"], (first["end_time"], second["start_time"])
    api = f"{scaled_stack.url('prefect-server')}/api"
    for run in (first, second):
        query = {"flow_run_id": run["id"]}
        states = prefect_api_call("GET", f"{api}/flow_run_states/", prefect_auth, params=query).json()
        history = " > ".join(state["name"] for state in sorted(states, key=lambda state: state["timestamp"]))
        print(f"\nretrain {run['start_time']} to {run['end_time']}: {history}")


def test_a_promotion_reaches_every_replica_within_two_polling_intervals(scaled_stack, two_retrains):
    """It serves a newly promoted version from both replicas within two of their registry polls."""
    replicas = replica_addresses(scaled_stack).values()

    def served() -> set[str]:
        versions = set()
        for address in replicas:
            ready = scaled_stack.exec("proxy", "curl", "-fsS", f"http://{address}:8000/ready")
            versions.add(json.loads(ready)["model"]["version"])
        return versions

    (current,) = wait_until(lambda: served() if len(served()) == 1 else None, "one champion on every replica")
    # test_compose_stack.py's retrain registered version 2 (whether or not the gate promoted it).
    target = "1" if current != "1" else max(model_versions(scaled_stack), key=int)
    scaled_stack.exec("prefect-worker", "clinrisk", "promote", target, "--reason", "compose scale test")
    promoted_at = time.monotonic()
    wait_until(lambda: served() == {target}, f"version {target} on every replica", 2 * POLL_SECONDS)
    delay = time.monotonic() - promoted_at
    print(f"\npromotion of version {target}: on every replica after {delay:.1f} s")
