"""Names and floors shared by the monitoring modules (kept apart from Evidently, which loads slowly)."""

from __future__ import annotations

from dataclasses import dataclass

OUTCOME = "outcome"
PREDICTION = "prediction"
PROBABILITY = "probability"


@dataclass(frozen=True)
class Floors:
    """What the report tests: the drifted-feature share and the quality floors."""

    drift_share: float
    recall: float
    precision: float
    r2: float | None = None  # a regression's floor; then recall and precision are not tested


def floors_for(settings, spec) -> Floors:
    """The floors a model is monitored against: its spec's precision floor, or its R² floor."""
    if spec.is_regression:
        return Floors(settings.drift_share, 0.0, 0.0, r2=spec.objective.floor)
    return Floors(settings.drift_share, settings.recall_floor, spec.objective.precision_floor)
