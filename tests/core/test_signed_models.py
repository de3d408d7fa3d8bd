"""Models load as signed data, never as code: against a real MLflow registry (SQLite store)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import joblib
import pandas as pd
import pytest
from click.testing import CliRunner

from clinrisk import bundle, promotion, registry
from clinrisk.cli import main
from clinrisk.retraining import retrain
from clinrisk.serving import cache
from clinrisk.serving.champion import DEGRADED, READY, UNAVAILABLE, ChampionHolder, RegistrySource
from clinrisk.settings import load_settings
from clinrisk.upgrade import upgrade
from support import RAW_STROKE, write_fast_spec


class Planted:
    """A pickle that, if ever unpickled, writes a marker file (as an attacker's code would)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def trained(root: Path):
    settings = load_settings(home=root / "home", spec_dir=write_fast_spec(root / "specs"))
    assert retrain(settings, "stroke")["promoted"]
    return settings


@pytest.fixture(scope="module")
def registry_settings(tmp_path_factory):
    """A real MLflow store whose version 1 the gate promoted; tests restore the alias after."""
    settings = trained(tmp_path_factory.mktemp("signed"))
    yield settings


@pytest.fixture
def champion_one(registry_settings):
    yield registry_settings
    registry.set_alias(registry_settings, "stroke", registry.CHAMPION, "1")


@pytest.fixture
def no_unpickling(monkeypatch):
    """Make every unpickling path fail loudly, so a test proves none is taken."""

    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(joblib, "load", refuse)


def serving_holder(settings) -> ChampionHolder:
    holder = ChampionHolder(settings, RegistrySource(settings, "stroke"))
    assert holder.refresh().status == READY
    return holder


def copy_version(settings, tmp_path: Path, edit) -> str:
    """An attacker with registry write access: a new run and version holding an edited copy of
    version 1's bundle (signature copied as is)."""
    mlflow_client = registry.client(settings)
    source = registry.version_run_id(settings, "stroke", "1")
    files = registry.bundle_files(settings, source)
    edit(files)
    experiment = mlflow_client.get_run(source).info.experiment_id
    run = mlflow_client.create_run(experiment).info.run_id
    mlflow_client.log_artifacts(
        run, str(bundle.write_files(tmp_path / "forged", files)), bundle.ARTIFACT_PATH
    )
    return str(mlflow_client.create_model_version("stroke", f"runs:/{run}/model", run_id=run).version)


def with_threshold(files: dict) -> None:
    meta = json.loads(files[bundle.META_FILE])
    meta["threshold"] = 1.01  # nobody is flagged any more
    files[bundle.META_FILE] = json.dumps(meta).encode()


def test_the_champion_is_served_from_its_signed_bundle_without_unpickling(registry_settings, no_unpickling):
    """It serves the champion through the bundle's stored lean scorer; no pickle is read."""
    state = serving_holder(registry_settings).state
    assert state.loaded.version == "1" and state.loaded.scoring.active == "numpy"  # the fast spec's LR
    assert state.loaded.scoring.verified_rows == 5110  # the training snapshot, verified once
    assert "at registration" in state.loaded.scoring.reason


def test_predict_and_the_bundle_agree_with_scikit_learn(registry_settings, raw_stroke):
    """It scores as the registered scikit-learn pipeline does, within 1e-5."""
    from clinrisk.data import validate_frame

    served = registry.load_served_alias(registry_settings, "stroke")
    model = registry.load_version(registry_settings, "stroke", "1")
    rows = validate_frame(raw_stroke.head(500), model.spec, require_target=False)
    assert abs(served.predict_proba(rows) - model.predict_proba(rows)).max() <= 1e-5
    assert served.threshold == model.threshold


def test_an_alias_moved_without_a_signed_promotion_is_refused(champion_one, tmp_path):
    """It keeps the old champion when someone moves the alias to a version nobody promoted."""
    holder = serving_holder(champion_one)
    rogue = copy_version(champion_one, tmp_path, lambda files: None)
    registry.set_alias(champion_one, "stroke", registry.CHAMPION, rogue)
    state = holder.refresh()
    assert state.status == DEGRADED and state.loaded.version == "1"
    assert "no signed promotion record" in state.reason


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (with_threshold, "signature does not verify"),
        (lambda files: files.update({bundle.ONNX_FILE: files[bundle.ONNX_FILE] + b"\0"}), "signed hash"),
        (lambda files: files.pop(bundle.SIGNATURE_FILE), "no signed scorer bundle"),
        (lambda files: None, "another model or run"),  # a genuine bundle copied to another run
    ],
)
def test_a_tampered_bundle_is_refused_and_the_champion_keeps_serving(champion_one, tmp_path, edit, why):
    """It refuses a promoted version whose bundle was edited, and says why on the state."""
    holder = serving_holder(champion_one)
    forged = copy_version(champion_one, tmp_path, edit)
    promotion.promote(champion_one, "stroke", forged, reason="test: the gate approved it")
    state = holder.refresh()
    assert state.status == DEGRADED and state.loaded.version == "1"
    assert why in state.reason and "refused" in state.reason
    fresh = ChampionHolder(champion_one, RegistrySource(champion_one, "stroke")).refresh()
    assert fresh.loaded.origin == "cache" and fresh.loaded.version == "1"  # a restart still serves v1


def test_a_planted_cache_file_is_never_executed(tmp_path, registry_settings):
    """It ignores a pickle planted in the serving cache, with the registry down."""
    settings = load_settings(
        home=registry_settings.home, spec_dir=registry_settings.spec_dir, tracking_uri="http://127.0.0.1:9"
    )
    directory = tmp_path / "cache"
    marker = tmp_path / "marker"
    directory.mkdir()
    for name in ("model.joblib", bundle.META_FILE, bundle.ONNX_FILE, cache.PROMOTION_FILE):
        (directory / name).write_bytes(pickle.dumps(Planted(marker)))
    holder = ChampionHolder(settings, RegistrySource(settings, "stroke"))
    holder.cache_dir = directory
    state = holder.refresh()
    assert state.status == UNAVAILABLE and "no cached champion that verifies" in state.reason
    assert not marker.exists()


def test_predict_loads_only_the_bundle(registry_settings, tmp_path, monkeypatch, no_unpickling):
    """`clinrisk predict` scores with the signed bundle's lean scorer, never a pickle."""
    monkeypatch.setenv("CLINRISK_HOME", str(registry_settings.home))
    monkeypatch.setenv("CLINRISK_SPEC_DIR", str(registry_settings.spec_dir))
    pd.read_csv(RAW_STROKE).head(200).to_csv(tmp_path / "in.csv", index=False)
    result = CliRunner().invoke(
        main, ["predict", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["scoring_path"] == "numpy"


def test_upgrade_signs_versions_registered_before_bundles(tmp_path):
    """It refuses a version without a bundle, and serves it after `models upgrade`."""
    settings = trained(tmp_path)
    run_id = registry.version_run_id(settings, "stroke", "1")
    shutil.rmtree(next(Path(settings.home).rglob(f"{run_id}/artifacts/{bundle.ARTIFACT_PATH}")))
    mlflow_client = registry.client(settings)
    for tag in (bundle.PROMOTION_TAG, bundle.PROMOTION_SIGNATURE_TAG):
        mlflow_client.delete_model_version_tag("stroke", "1", tag)
    state = ChampionHolder(settings, RegistrySource(settings, "stroke")).refresh()
    assert state.status == UNAVAILABLE and "no signed promotion record" in state.reason
    assert upgrade(settings, "stroke") == [{"version": "1", "bundle": "bundled", "promotion": "signed"}]
    assert ChampionHolder(settings, RegistrySource(settings, "stroke")).refresh().status == READY


def test_no_patient_row_is_stored_in_mlflow(registry_settings, tmp_path, raw_stroke):
    """It keeps every run artifact free of patient rows: synthetic input example, no reference data."""
    import re

    run_id = registry.version_run_id(registry_settings, "stroke", "1")
    local = Path(registry.client(registry_settings).download_artifacts(run_id, "", str(tmp_path)))
    files = [f for f in local.rglob("*") if f.is_file()]
    assert not [f for f in files if f.suffix in (".parquet", ".csv")]
    # Glucose levels with two decimals identify real rows; none may appear in any text artifact.
    glucose = {f"{v:.2f}" for v in raw_stroke["avg_glucose_level"] if round(v * 100) % 10}
    pattern = re.compile(r"(?<![\d.])(\d{2,3}\.\d{2})(?!\d)")
    for path in files:
        if path.suffix in (".json", ".yaml", ".txt", "") or path.name == "MLmodel":
            found = set(pattern.findall(path.read_text(errors="replace"))) & glucose
            assert not found, f"{path.relative_to(local)} holds patient values {sorted(found)[:3]}"
    assert registry.load_reference(registry_settings, "stroke", "1").shape[0] > 0
