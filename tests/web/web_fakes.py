"""The edges the web tests fake: a model fitted outside MLflow and a registry we control."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from clinrisk.data import validate_frame
from clinrisk.errors import RegistryError
from clinrisk.features import build_pipeline
from clinrisk.model import RiskModel
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


class FakeRegistry:
    """A model source we control: which version is champion, and whether the registry is down."""

    def __init__(self, models: dict[str, RiskModel], champion: str | None):
        self.models = models
        self.champion = champion
        self.down = False
        self.loads: list[str] = []

    def champion_version(self) -> str | None:
        if self.down:
            raise RegistryError("reading alias 'champion' failed: MLflow is unreachable (test)")
        return self.champion

    def load(self, version: str) -> RiskModel:
        if self.down:
            raise RegistryError("loading failed: MLflow is unreachable (test)")
        self.loads.append(version)
        return as_version(self.models[version], version)


def web_settings(home: Path, **overrides) -> Settings:
    values = {"home": home, "spec_dir": REPO / "models", "poll_interval_seconds": 3600, **overrides}
    return load_settings(**values)


def make_app(settings: Settings, source: FakeRegistry, **kwargs):
    app = create_app(settings, model_source=source, **kwargs)
    app.config["TESTING"] = True
    return app
