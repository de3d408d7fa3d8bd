"""`clinrisk predict` takes the champion's bundle from the local cache, but only the registry's champion."""

from __future__ import annotations

import json

import pytest

from clinrisk import registry
from clinrisk.bundle import META_FILE
from clinrisk.serving import cache
from clinrisk.settings import load_settings
from support import RAW_STROKE


@pytest.fixture
def predict(run, tmp_path):
    """Score the real file; returns the JSON report and the scored file's bytes."""

    def score() -> tuple[dict, bytes]:
        output = tmp_path / "scored.csv"
        code, text, report = run("predict", "--input", str(RAW_STROKE), "--output", str(output))
        assert code == 0, text
        return report, output.read_bytes()

    return score


def test_the_second_run_uses_the_cached_champion_and_scores_the_same(run, predict, fast_settings):
    """The first run loads from the registry and caches the bundle; the next scores the same from it."""
    run("train")
    first, scored = predict()
    assert first["loaded_from"] == "registry" and first["model_version"] == "1"
    assert (cache.cache_dir(fast_settings, "stroke") / META_FILE).is_file()
    second, again = predict()
    assert second["loaded_from"] == "cache" and second["model_version"] == "1"
    assert again == scored


def test_a_moved_alias_is_noticed(run, predict):
    """After a promotion or a rollback the new champion is loaded from the registry, never the cached one."""
    run("train")
    run("train", "--data", str(RAW_STROKE), "--seed", "5")
    assert run("promote", "1")[0] == 0
    predict()
    report, _ = predict()
    assert (report["model_version"], report["loaded_from"]) == ("1", "cache")
    assert run("promote", "2")[0] == 0
    report, _ = predict()
    assert (report["model_version"], report["loaded_from"]) == ("2", "registry")
    assert predict()[0]["loaded_from"] == "cache"
    assert run("rollback")[0] == 0
    report, _ = predict()
    assert (report["model_version"], report["loaded_from"]) == ("1", "registry")


def test_a_champion_replaced_during_the_download_is_not_cached(run, predict, fast_settings, monkeypatch):
    """A promotion while predict loads the old champion (which the web service then caches) is not
    undone in the cache: the version that was replaced is scored but not written over the new one."""
    run("train")
    run("train", "--data", str(RAW_STROKE), "--seed", "5")
    assert run("promote", "1")[0] == 0
    real_load = registry.load_served_alias

    def load_then_promote(settings, name, alias):
        served = real_load(settings, name, alias)  # version 1, as the alias said when asked
        assert run("promote", "2")[0] == 0
        return served

    monkeypatch.setattr(registry, "load_served_alias", load_then_promote)
    report, _ = predict()
    assert (report["model_version"], report["loaded_from"]) == ("1", "registry")
    monkeypatch.setattr(registry, "load_served_alias", real_load)
    assert not (cache.cache_dir(fast_settings, "stroke") / META_FILE).exists()
    report, _ = predict()
    assert (report["model_version"], report["loaded_from"]) == ("2", "registry")
    assert predict()[0]["loaded_from"] == "cache"


@pytest.mark.parametrize("damage", ["tampered", "emptied"])
def test_a_cache_that_does_not_verify_is_not_used(run, predict, fast_settings, damage):
    """A tampered or incomplete cache is refused and repaired: the registry's bundle scores the same."""
    run("train")
    expected = predict()[1]
    folder = cache.cache_dir(fast_settings, "stroke")
    if damage == "tampered":
        meta = json.loads((folder / META_FILE).read_text())
        meta["threshold"] = 0.0001
        (folder / META_FILE).write_text(json.dumps(meta))
    else:
        for path in folder.iterdir():
            path.unlink()
    report, scored = predict()
    assert report["loaded_from"] == "registry" and scored == expected
    assert predict()[0]["loaded_from"] == "cache"


def test_a_cached_bundle_of_another_run_is_not_used(run, predict, monkeypatch):
    """The same version number is not enough: the registry's run id must match the cached bundle's."""
    run("train")
    predict()
    version, _ = registry.alias_target(load_settings(), "stroke", registry.CHAMPION)
    monkeypatch.setattr(registry, "alias_target", lambda *args: (version, "0" * 32))
    assert predict()[0]["loaded_from"] == "registry"


def test_without_a_cheap_answer_mlflow_is_asked(run, predict, monkeypatch):
    """A store read only through MLflow (alias_target None) loads from the registry, as before."""
    run("train")
    predict()
    monkeypatch.setattr(registry, "alias_target", lambda *args: None)
    assert predict()[0]["loaded_from"] == "registry"


def test_alias_target_reads_the_sqlite_store_as_mlflow_does(run, fast_settings):
    """The cheap read gives MLflow's own answer: version and run id, None for a missing alias or model."""
    settings = fast_settings
    assert registry.alias_target(settings, "stroke", registry.CHAMPION) is None  # no database yet
    assert not (fast_settings.home / "mlflow.db").exists()
    run("train")
    version = registry.alias_version(settings, "stroke", registry.CHAMPION)
    expected = (version, registry.version_run_id(settings, "stroke", version))
    assert registry.alias_target(settings, "stroke", registry.CHAMPION) == expected
    assert registry.alias_target(settings, "stroke", "no-such-alias") is None
    assert registry.alias_target(settings, "no-such-model", registry.CHAMPION) is None
    registry.delete_alias(settings, "stroke", registry.CHAMPION)
    assert registry.alias_target(settings, "stroke", registry.CHAMPION) is None


@pytest.mark.slow
def test_alias_target_asks_an_mlflow_server_with_one_rest_call(mlflow_server_url, tmp_path):
    """Against a real `mlflow server` the alias is read over REST, with MLflow's answer."""
    settings = load_settings(home=tmp_path / "home", tracking_uri=mlflow_server_url)
    client = registry.client(settings)
    name = f"rest-{tmp_path.name}"
    run_id = client.create_run(client.create_experiment(name)).info.run_id
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id).version
    assert registry.alias_target(settings, name, registry.CHAMPION) is None
    registry.set_alias(settings, name, registry.CHAMPION, str(version))
    assert registry.alias_target(settings, name, registry.CHAMPION) == (str(version), run_id)
    assert registry.alias_target(settings, "no-such-model", registry.CHAMPION) is None
