"""Integration: the registry round trip against SQLite and a real `mlflow server`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from clinrisk import registry
from clinrisk.data import validate_frame
from clinrisk.retraining import load_and_validate
from clinrisk.settings import load_settings
from clinrisk.spec import load_spec
from clinrisk.train import train_model
from support import write_fast_spec


def round_trip(settings, raw_stroke):
    """Train, log and register; then load the version back and compare predictions."""
    spec, frame, sha = load_and_validate(settings, "stroke", None)
    result = train_model(spec, frame, data_sha256=sha)
    registered = registry.log_and_register(settings, result)
    assert registry.alias_version(settings, "stroke", registry.CHALLENGER) == registered.version
    loaded = registry.load_version(settings, "stroke", registered.version)
    rows = validate_frame(raw_stroke.head(300), spec, require_target=True)
    assert (loaded.predict_proba(rows) == result.model.predict_proba(rows)).all()
    assert loaded.threshold == result.model.threshold
    assert loaded.spec == spec
    assert loaded.info["data_sha256"] == sha == spec.data.sha256
    reference = registry.load_reference(settings, "stroke", registered.version)
    assert list(reference.columns) == [*spec.feature_names, spec.target.column]
    return registered, result


def test_round_trip_on_sqlite(fast_settings, raw_stroke):
    """A version logged to the SQLite store loads back with its threshold, spec and predictions."""
    registered, result = round_trip(fast_settings, raw_stroke)
    runs = registry.client(fast_settings).get_run(registered.run_id)
    assert runs.data.params["candidate"] == result.best.name
    assert runs.data.tags["data_sha256"] == result.model.info["data_sha256"]
    assert {"git_commit", "pipfile_lock_sha256"} <= set(runs.data.tags)
    artifacts = {a.path for a in registry.client(fast_settings).list_artifacts(registered.run_id)}
    assert {"pr_curve.png", "confusion_matrix.png", "scorer"} <= artifacts
    assert "reference" not in artifacts  # patient rows stay in the private state directory
    assert (
        oct(registry.reference_path(fast_settings, "stroke", registered.run_id).stat().st_mode & 0o777)
        == "0o600"
    )


@pytest.mark.slow
def test_round_trip_through_a_real_mlflow_server(tmp_path, mlflow_server_url, raw_stroke):
    """The same round trip works against an `mlflow server` process with proxied artifacts."""
    settings = load_settings(
        home=tmp_path / "home",
        spec_dir=write_fast_spec(tmp_path / "specs"),
        tracking_uri=mlflow_server_url,
        experiment_name=f"test-{tmp_path.name}",
    )
    registered, _ = round_trip(settings, raw_stroke)
    model = registry.client(settings).get_model_version("stroke", registered.version)
    mlmodel = registry.client(settings).download_artifacts(registered.run_id, "model/MLmodel", str(tmp_path))
    inputs = json.loads(yaml.safe_load(Path(mlmodel).read_text())["signature"]["inputs"])
    assert {c["name"] for c in inputs} == set(load_spec(settings.spec_path).feature_names)
    assert model.run_id == registered.run_id


def test_an_unknown_alias_is_none(trained_settings):
    """A missing alias reads as None rather than an error."""
    assert registry.alias_version(trained_settings, "stroke", "nonexistent") is None
    assert registry.alias_version(trained_settings, "no-such-model", "champion") is None


def test_the_logged_pyfunc_is_code_not_a_pickle_and_serves(fast_settings, raw_stroke, caplog):
    """Training logs no CloudPickle warning, and MLflow's own loader scores and validates with it."""
    import logging

    import mlflow.pyfunc

    with caplog.at_level(logging.WARNING):
        registered, result = round_trip(fast_settings, raw_stroke)
    assert not [r for r in caplog.records if "CloudPickle" in r.getMessage()]
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{registered.run_id}/model")
    spec = result.model.spec
    scored = pyfunc.predict(raw_stroke.head(50)[spec.feature_names])
    expected = result.model.predict_proba(validate_frame(raw_stroke.head(50), spec, require_target=False))
    assert list(scored.columns) == ["probability", "prediction"]
    assert (scored["probability"].to_numpy() == expected).all()
