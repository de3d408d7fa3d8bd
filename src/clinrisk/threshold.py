"""Choosing the decision threshold: the highest recall whose precision reaches the floor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve

from clinrisk.errors import NoThresholdError


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision: float
    recall: float
    target_precision: float


def choose_threshold(
    y_true: np.ndarray, scores: np.ndarray, precision_floor: float, safety_margin: float = 0.0
) -> ThresholdChoice:
    """Return the threshold with the highest recall among those whose precision >= floor + margin.

    Scores at or above the threshold are flagged. Among points with equal recall the highest
    threshold wins (it flags fewer patients). The margin makes the choice conservative: the
    precision of out-of-fold predictions is noisy, and a threshold that only just reaches
    the floor on them falls under it on new patients about half of the time.
    """
    target = precision_floor + safety_margin
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    # The last (precision, recall) pair has no threshold: it is the "flag nobody" point.
    precision, recall = precision[:-1], recall[:-1]
    feasible = np.flatnonzero(precision >= target)
    if feasible.size == 0:
        best = float(precision.max()) if precision.size else 0.0
        raise NoThresholdError(
            f"no threshold reaches precision {target:.3f} (floor {precision_floor} + margin "
            f"{safety_margin}); the best precision at any threshold is {best:.3f}"
        )
    best_recall = recall[feasible].max()
    at_best = feasible[recall[feasible] == best_recall]
    index = at_best[np.argmax(thresholds[at_best])]
    return ThresholdChoice(
        threshold=float(thresholds[index]),
        precision=float(precision[index]),
        recall=float(recall[index]),
        target_precision=float(target),
    )
