"""The champion a worker serves: loading, swapping, the local cache and degraded states."""

from __future__ import annotations

import threading
import time

import pytest
from web_fakes import FakeRegistry, as_version, make_app, signed_bundle, web_settings
from web_support import PATIENT

from clinrisk import signing
from clinrisk.serving import cache
from clinrisk.serving.champion import DEGRADED, READY, UNAVAILABLE, ChampionHolder
from clinrisk.serving.watcher import ChampionWatcher


@pytest.fixture
def holder_settings(tmp_path):
    return web_settings(tmp_path / "home", fast_path=False)


def test_a_new_champion_is_swapped_in_and_cached(holder_settings, logistic_model):
    """It loads the version the alias names, swaps it in whole and keeps it in the local cache."""
    source = FakeRegistry({"1": logistic_model, "2": logistic_model}, "1", holder_settings)
    holder = ChampionHolder(holder_settings, source)
    first = holder.refresh().loaded
    source.champion = "2"
    second = holder.refresh().loaded
    assert (first.version, second.version) == ("1", "2")
    assert first.model.info["version"] == "1"  # the old object is untouched for requests still using it
    assert cache.load(holder.cache_dir, signing.load_key(holder_settings), "stroke").info["version"] == "2"


def test_an_unchanged_alias_loads_nothing(holder_settings, logistic_model):
    """It polls cheaply: the same champion version is not downloaded again."""
    source = FakeRegistry({"1": logistic_model}, "1", holder_settings)
    holder = ChampionHolder(holder_settings, source)
    loaded = holder.refresh().loaded
    assert holder.refresh().loaded is loaded
    assert source.loads == ["1"]


def test_registry_down_at_start_serves_the_cached_champion_degraded(holder_settings, logistic_model):
    """It serves the last cached champion and reports degraded when the registry is unreachable."""
    cache.save(
        cache.cache_dir(holder_settings, "stroke"), signed_bundle(logistic_model, holder_settings, "4")
    )
    source = FakeRegistry({}, None, holder_settings)
    source.down = True
    state = ChampionHolder(holder_settings, source).refresh()
    assert state.status == DEGRADED
    assert state.loaded.version == "4" and state.loaded.origin == "cache"
    assert "unreachable" in state.reason


def test_registry_down_without_cache_is_unavailable(holder_settings):
    """It reports unavailable, naming the registry problem and the missing cache."""
    source = FakeRegistry({}, None, holder_settings)
    source.down = True
    state = ChampionHolder(holder_settings, source).refresh()
    assert state.status == UNAVAILABLE and state.loaded is None
    assert "unreachable" in state.reason and "no cached champion" in state.reason


def test_recovering_registry_turns_degraded_into_ready(holder_settings, logistic_model):
    """It reports ready again once the registry answers with the version already served."""
    cache.save(
        cache.cache_dir(holder_settings, "stroke"), signed_bundle(logistic_model, holder_settings, "1")
    )
    source = FakeRegistry({"1": logistic_model}, "1", holder_settings)
    source.down = True
    holder = ChampionHolder(holder_settings, source)
    assert holder.refresh().status == DEGRADED
    source.down = False
    state = holder.refresh()
    assert state.status == READY and state.loaded.origin == "registry"
    assert source.loads == []  # the cached object was the champion already


def test_a_broken_version_keeps_the_current_champion(holder_settings, logistic_model):
    """It keeps serving the current version when a new one cannot be loaded."""
    source = FakeRegistry({"1": logistic_model}, "1", holder_settings)
    holder = ChampionHolder(holder_settings, source)
    holder.refresh()
    source.champion = "2"  # not loadable: KeyError inside the source
    state = holder.refresh()
    assert state.status == DEGRADED and state.loaded.version == "1"
    assert "KeyError" in state.reason


def test_without_champion_ready_and_predict_answer_503(tmp_path):
    """It answers 503 with the reason on /ready and /predict when nothing can be served."""
    source = FakeRegistry({}, None)
    source.down = True
    app = make_app(web_settings(tmp_path / "home", auth_enabled=False), source, watch=False)
    client = app.test_client()
    ready = client.get("/ready")
    assert ready.status_code == 503 and ready.json["status"] == "unavailable"
    predict = client.post("/predict", json=PATIENT)
    assert predict.status_code == 503
    assert "no champion model is loaded" in predict.json["message"]
    assert predict.headers["Retry-After"]
    app.extensions["clinrisk"].close()


def test_ready_reports_degraded_with_a_cached_champion(tmp_path, logistic_model):
    """It answers /ready 200 with status degraded, and /predict names the cached version."""
    settings = web_settings(tmp_path / "home", auth_enabled=False, fast_path=False)
    cache.save(cache.cache_dir(settings, "stroke"), signed_bundle(logistic_model, settings, "3"))
    source = FakeRegistry({}, None)
    source.down = True
    app = make_app(settings, source, watch=False)
    client = app.test_client()
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json["status"] == "degraded"
    assert client.post("/predict", json=PATIENT).json["model"]["version"] == "3"
    app.extensions["clinrisk"].close()


def test_watcher_swaps_versions_under_concurrent_requests(tmp_path, logistic_model):
    """It swaps champions while requests run: none fails and each names the version that scored it."""
    thresholds = {"1": 0.0, "2": 1.01}  # version 1 flags everyone, version 2 no one
    models = {v: as_version(logistic_model, v, threshold=t) for v, t in thresholds.items()}
    source = FakeRegistry(models, "1")
    app = make_app(
        web_settings(tmp_path / "home", auth_enabled=False, fast_path=False, poll_interval_seconds=0.05),
        source,
    )
    app.test_client().get("/health")  # starts the watcher
    failures, seen = [], []

    def hammer(stop: threading.Event) -> None:
        client = app.test_client()
        while not stop.is_set():
            response = client.post("/predict", json=[PATIENT] * 3)
            if response.status_code != 200:
                failures.append(response.status_code)
                continue
            versions = {r["model"]["version"] for r in response.json}
            decisions = {r["prediction"] for r in response.json}
            seen.append((versions, decisions))

    stop = threading.Event()
    threads = [threading.Thread(target=hammer, args=(stop,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    source.champion = "2"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(v == {"2"} for v, _ in seen[-3:]):
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    app.extensions["clinrisk"].close()
    assert failures == []
    assert all(len(versions) == 1 for versions, _ in seen)  # one model per request
    assert all(decisions == ({1} if versions == {"1"} else {0}) for versions, decisions in seen)
    assert seen[0][0] == {"1"} and seen[-1][0] == {"2"}


def test_watcher_polls_until_stopped(holder_settings, logistic_model):
    """It calls the registry every interval and stops when asked."""
    source = FakeRegistry({"1": logistic_model}, "1", holder_settings)
    watcher = ChampionWatcher(ChampionHolder(holder_settings, source), interval=0.02)
    watcher.start()
    time.sleep(0.3)
    watcher.stop()
    assert source.loads == ["1"]
    assert watcher.holder.state.status == READY


def test_a_worker_starts_from_its_cache_then_confirms_with_the_registry(holder_settings, logistic_model):
    """It serves the cached champion at start without downloading, then confirms it off the start-up path."""
    cache.save(
        cache.cache_dir(holder_settings, "stroke"), signed_bundle(logistic_model, holder_settings, "3")
    )
    source = FakeRegistry({"3": logistic_model}, "3", holder_settings)
    holder = ChampionHolder(holder_settings, source)
    assert holder.start_from_cache()
    assert holder.state.status == DEGRADED and holder.state.loaded.origin == "cache"
    assert source.loads == []  # nothing downloaded to become ready
    confirmed = holder.refresh()
    assert confirmed.status == READY and confirmed.loaded.origin == "registry"
    assert source.loads == []  # the registry named the cached version: still nothing downloaded


def test_a_cached_champion_the_registry_replaced_is_swapped_at_first_check(holder_settings, logistic_model):
    """It swaps in the registry's champion when the cache held an older one."""
    cache.save(
        cache.cache_dir(holder_settings, "stroke"), signed_bundle(logistic_model, holder_settings, "3")
    )
    source = FakeRegistry({"3": logistic_model, "4": logistic_model}, "4", holder_settings)
    holder = ChampionHolder(holder_settings, source)
    assert holder.start_from_cache() and holder.state.loaded.version == "3"
    assert holder.refresh().loaded.version == "4"


def test_no_training_data_is_read_when_a_worker_starts(holder_settings, logistic_model, monkeypatch):
    """It loads and serves the champion without reading any data file (no data/raw beside the service)."""
    import pandas as pd

    source = FakeRegistry({"1": logistic_model}, "1", holder_settings)
    signed_bundle(logistic_model, holder_settings, "1")  # built (and verified) before the worker starts

    def refuse(*args, **kwargs):
        raise AssertionError("a data file was read at start-up")

    for name in ("read_csv", "read_parquet"):
        monkeypatch.setattr(pd, name, refuse)
    app = make_app(holder_settings.model_copy(update={"auth_enabled": False}), source, watch=False)
    client = app.test_client()
    assert client.get("/ready").status_code == 200
    assert client.post("/predict", json=PATIENT).status_code == 200
    app.extensions["clinrisk"].close()


def test_a_cache_it_cannot_read_is_logged_once_per_reason(tmp_path, caplog):
    """No champion and no signing key: polled again and again, it says why once per reason."""
    settings = web_settings(tmp_path / "home")
    holder = ChampionHolder(settings, FakeRegistry({}, None, settings))
    with caplog.at_level("WARNING", logger="clinrisk.serving.champion"):
        states = [holder.refresh() for _ in range(5)]
        signing.key_path(settings).parent.mkdir(parents=True, exist_ok=True)
        signing.key_path(settings).write_text("not hex")
        states += [holder.refresh() for _ in range(3)]
    refusals = [r.getMessage() for r in caplog.records if "not reading the cached champion" in r.getMessage()]
    assert refusals == [
        "stroke: not reading the cached champion: no model signing key: "
        "set CLINRISK_SIGNING_KEY_FILE or run `clinrisk models keygen`",
        "stroke: not reading the cached champion: CLINRISK_SIGNING_KEY_FILE does not hold a hex key",
    ]
    assert {state.status for state in states} == {UNAVAILABLE}
