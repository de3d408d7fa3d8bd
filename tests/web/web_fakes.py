"""The edges the web tests fake: a model fitted outside MLflow and a registry we control."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from clinrisk import bundle, signing
from clinrisk.data import validate_frame
from clinrisk.errors import RegistryError
from clinrisk.features import build_pipeline
from clinrisk.model import RiskModel
from clinrisk.serving.scorer import load_verification_data
from clinrisk.settings import Settings, load_settings
from clinrisk.spec import ModelSpec
from clinrisk.web import create_app
from support import REPO


def fit_model(spec: ModelSpec, frame, candidate: str, version: str = "1") -> RiskModel:
    """A RiskModel fitted on the whole file, outside MLflow (the web tier only needs a model)."""
    chosen = next(c for c in spec.candidates if c.name == candidate)
    data = validate_frame(frame, spec, require_target=True)
    pipeline = build_pipeline(spec, chosen, seed=0).fit(data[spec.feature_names], data[spec.target.column])
    info = {
        "model": spec.name,
        "candidate": candidate,
        "trained_at": "2024-01-01T00:00:00+00:00",
        "data_sha256": "test",
        "holdout_metrics": {"recall": 0.7},
        "run_id": "run",
        "version": version,
    }
    return RiskModel(pipeline=pipeline, threshold=0.5, spec_yaml=spec.to_yaml(), info=info)


def as_version(model: RiskModel, version: str, threshold: float | None = None) -> RiskModel:
    """The same pipeline registered under another version (and optionally another threshold)."""
    return dataclasses.replace(
        model,
        info={**model.info, "version": version},
        threshold=model.threshold if threshold is None else threshold,
    )


_BUNDLES: dict[tuple, dict[str, bytes]] = {}


def signed_bundle(model: RiskModel, settings: Settings, version: str) -> bundle.ServedModel:
    """The model as the registry holds it after `clinrisk train` and a gate promotion: signed data."""
    key = signing.ensure_key(settings)
    cache_key = (id(model.pipeline), model.threshold, key)
    if cache_key not in _BUNDLES:
        rows, _ = load_verification_data(model.spec)
        _BUNDLES[cache_key] = bundle.build_bundle(model, rows, "run", key)
    files = _BUNDLES[cache_key]
    served = bundle.read_bundle(files, key, name=model.spec.name, version=version, run_id="run")
    served.promotion = bundle.promotion_record(
        key, name=model.spec.name, version=version, run_id="run", by="test", how="gate", reason="test"
    )
    return served


class FakeRegistry:
    """A model source we control: which version is champion, and whether the registry is down.

    It hands out signed bundles made with the signing key of `settings` (set by `make_app`).
    """

    def __init__(self, models: dict[str, RiskModel], champion: str | None, settings: Settings | None = None):
        self.models = models
        self.champion = champion
        self.settings = settings
        self.down = False
        self.loads: list[str] = []

    def champion_version(self) -> str | None:
        if self.down:
            raise RegistryError("reading alias 'champion' failed: MLflow is unreachable (test)")
        return self.champion

    def load(self, version: str) -> bundle.ServedModel:
        if self.down:
            raise RegistryError("loading failed: MLflow is unreachable (test)")
        self.loads.append(version)
        return signed_bundle(self.models[version], self.settings, version)

    def pipeline_loader(self, model: bundle.ServedModel):
        """The cached model's pipeline, as the registry would give it (None while down or unknown)."""
        version = model.info["version"]

        def fetch() -> bytes | None:
            if self.down or version not in self.models:
                return None
            return signed_bundle(self.models[version], self.settings, version).files.get(bundle.PIPELINE_FILE)

        return fetch


def web_settings(home: Path, **overrides) -> Settings:
    # Many tests fail auth on purpose from one address; the limit has tests of its own.
    values = {
        "home": home,
        "spec_dir": REPO / "models",
        "poll_interval_seconds": 3600,
        "auth_failure_limit": 10_000,
        **overrides,
    }
    return load_settings(**values)


def make_app(settings: Settings, source: FakeRegistry, **kwargs):
    source.settings = source.settings or settings
    app = create_app(settings, model_source=source, **kwargs)
    app.config["TESTING"] = True
    return app


def fitted_from_file(name: str, candidate: str) -> RiskModel:
    """A model of `models/<name>.yaml` fitted on its real data file, outside MLflow (no threshold
    for a regression)."""
    from threadpoolctl import threadpool_limits

    from clinrisk.data import load_training_data
    from clinrisk.spec import load_spec

    spec = load_spec(REPO / "models" / f"{name}.yaml")
    with threadpool_limits(limits=1):  # two test workers on two cores: no OpenMP threads on top
        model = fit_model(spec, load_training_data(spec, REPO / spec.data.path), candidate)
    return dataclasses.replace(model, threshold=None) if spec.is_regression else model
