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
