"""The trained model as one object: pipeline, decision threshold, spec and training facts.

Nothing that belongs to a model version is configured beside it: whoever loads a version
gets the threshold it was chosen with and the schema it was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from clinrisk.calibration import PlattCalibration
from clinrisk.spec import ModelSpec, spec_from_yaml

if TYPE_CHECKING:  # scikit-learn is not imported where only bundles are served
    from sklearn.pipeline import Pipeline


class Decisions:
    """Decisions from scores, shared by the fitted `RiskModel` and the served `bundle.ServedModel`.

    Needs `spec`, `threshold`, `predict_proba` and `predict_value` from the class it is mixed into.
    """

    @property
    def is_regression(self) -> bool:
        return self.spec.is_regression

    def decide(self, proba: np.ndarray) -> np.ndarray:
        return (np.asarray(proba) >= self.threshold).astype(int)

    def decide_each(self, probabilities: list[float]) -> list[int]:
        """`decide` for a list of Python floats: 1 where the probability reaches the threshold."""
        return [int(p >= self.threshold) for p in probabilities]

    def calibrate_one(self, raw: float) -> float:
        """`calibrate` for one raw score (needs the `calibration` of the class it is mixed into)."""
        return raw if self.calibration is None else self.calibration.apply_one(raw)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Probability and 0/1 decision at the model's own threshold (a regression: `prediction` only)."""
        if self.is_regression:
            return pd.DataFrame({"prediction": self.predict_value(features)}, index=features.index)
        proba = self.predict_proba(features)
        return pd.DataFrame({"probability": proba, "prediction": self.decide(proba)}, index=features.index)


@dataclass
class RiskModel(Decisions):
    pipeline: Pipeline
    threshold: float | None  # None for a regression: it has no decision to make
    spec_yaml: str
    info: dict[str, Any] = field(default_factory=dict)
    # Maps the pipeline's raw score to a calibrated risk; None for versions trained before it.
    calibration: PlattCalibration | None = None

    @cached_property
    def spec(self) -> ModelSpec:
        return spec_from_yaml(self.spec_yaml)

    def raw_proba(self, features: pd.DataFrame) -> np.ndarray:
        """The pipeline's own (class-weighted, uncalibrated) score for each row."""
        return self.pipeline.predict_proba(features[self.spec.feature_names])[:, 1]

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated risk from raw scores (identity for versions without a calibration)."""
        return np.asarray(raw, dtype=np.float64) if self.calibration is None else self.calibration.apply(raw)

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the positive class (a risk in [0, 1]) for each row."""
        return self.calibrate(self.raw_proba(features))

    def predict_value(self, features: pd.DataFrame) -> np.ndarray:
        """A regression's predicted outcome for each row, in the target's units."""
        return self.pipeline.predict(features[self.spec.feature_names]).astype(float)

    def scores(self, features: pd.DataFrame) -> np.ndarray:
        """What a scorer returns: the probability, or the predicted value of a regression."""
        return self.predict_value(features) if self.is_regression else self.predict_proba(features)

    def __getstate__(self) -> dict[str, Any]:
        # The derived spec holds a dynamically built pydantic class that cannot be pickled.
        state = self.__dict__.copy()
        state.pop("spec", None)
        return state
