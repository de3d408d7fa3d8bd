"""Metrics at a threshold, and the figures logged with every training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking quality (ROC-AUC, PR-AUC) and decision quality at `threshold`."""
    y_true = np.asarray(y_true).astype(int)
    decision = (np.asarray(proba) >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y_true, decision, labels=[0, 1]).ravel()
    both_classes = len(np.unique(y_true)) == 2
    return {
        "roc_auc": float(roc_auc_score(y_true, proba)) if both_classes else float("nan"),
        "pr_auc": float(average_precision_score(y_true, proba)) if both_classes else float("nan"),
        "recall": float(recall_score(y_true, decision, zero_division=0)),
        "precision": float(precision_score(y_true, decision, zero_division=0)),
        "f1": float(f1_score(y_true, decision, zero_division=0)),
        "flagged_share": float(decision.mean()),
        # Mean squared error of the probability as a risk: lower is better, 0 is perfect.
        "brier": float(brier_score_loss(y_true, proba)) if len(y_true) else float("nan"),
        "tp": int(tp),
        "fp": int(fp),
        "tn": int(tn),
        "fn": int(fn),
    }


def save_pr_curve(y_true, proba, threshold: float, floor: float, path: Path) -> Path:
    """Plot the holdout precision-recall curve with the floor and the chosen operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    precision, recall, _ = precision_recall_curve(y_true, proba)
    point = classification_metrics(y_true, proba, threshold)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(recall, precision, label="holdout")
    ax.axhline(floor, color="grey", linestyle="--", label=f"precision floor {floor:g}")
    ax.scatter(
        [point["recall"]], [point["precision"]], color="red", zorder=3, label=f"threshold {threshold:.3f}"
    )
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (holdout)", ylim=(0, 1.02))
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_confusion_matrix(metrics: dict[str, float], path: Path) -> Path:
    """Draw the 2x2 holdout confusion matrix at the model's threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.imshow(cells, cmap="Blues")
    for (row, col), value in np.ndenumerate(cells):
        ax.text(col, row, str(value), ha="center", va="center", fontsize=14)
    ax.set(
        xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual", title="Confusion matrix (holdout)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_calibration_curve(calibration: dict, path: Path) -> Path:
    """Plot observed stroke rate against mean predicted risk per holdout bin (the reliability curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = calibration["curve"]
    top = max([*points["predicted"], *points["observed"], 0.05]) * 1.1
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, top], [0, top], color="grey", linestyle="--", label="perfect calibration")
    ax.plot(points["predicted"], points["observed"], marker="o", label="holdout bins")
    title = f"Calibration (holdout), Brier {calibration['brier']:.4f}"
    ax.set(xlabel="mean predicted risk", ylabel="observed rate", title=title, xlim=(0, top), ylim=(0, top))
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def bootstrap_r2(
    y_true: np.ndarray, predicted: np.ndarray, rounds: int = 1000, seed: int = 0, baseline=None
) -> np.ndarray:
    """R² of `rounds` bootstrap resamples of the rows (Efron & Tibshirani 1993, percentile method).

    With `baseline` (another model's predictions on the same rows), returns the paired differences
    R²(predicted) - R²(baseline) instead, each computed on the same resample. Shape: (rounds,).
    """
    from sklearn.metrics import r2_score

    y_true, predicted = np.asarray(y_true, dtype=float), np.asarray(predicted, dtype=float)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(y_true), size=(rounds, len(y_true)))
    values = np.empty(rounds)
    for i, rows in enumerate(draws):
        values[i] = r2_score(y_true[rows], predicted[rows])
        if baseline is not None:
            values[i] -= r2_score(y_true[rows], np.asarray(baseline, dtype=float)[rows])
    return values


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray, rounds: int = 1000) -> dict[str, float]:
    """R² with its 95 % bootstrap interval, RMSE and MAE (target units) on the given rows."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    y_true, predicted = np.asarray(y_true, dtype=float), np.asarray(predicted, dtype=float)
    low, high = np.percentile(bootstrap_r2(y_true, predicted, rounds), [2.5, 97.5])
    return {
        "r2": float(r2_score(y_true, predicted)),
        "r2_low": float(low),
        "r2_high": float(high),
        "rmse": float(np.sqrt(mean_squared_error(y_true, predicted))),
        "mae": float(mean_absolute_error(y_true, predicted)),
    }


def save_predicted_vs_actual(y_true, predicted, metrics: dict[str, float], path: Path) -> Path:
    """Scatter of predicted against actual outcomes on the holdout, with the identity line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(y_true, predicted, s=12, alpha=0.7)
    lo, hi = float(np.min(y_true)), float(np.max(y_true))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", label="perfect prediction")
    title = f"Holdout: R² {metrics['r2']:.3f} [{metrics['r2_low']:.3f}, {metrics['r2_high']:.3f}]"
    ax.set(xlabel="actual", ylabel="predicted", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
