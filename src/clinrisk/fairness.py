"""Fairness slices: recall, precision and share flagged per patient group, with Wilson intervals.

Which groups are compared comes from the spec (`slices:`). fairlearn's `MetricFrame`
(Bird et al. 2020) computes the per-group counts; each rate gets a 95 % Wilson score interval
(statsmodels). A gap between two groups is called *clear* only when their intervals do not
overlap, so that a gap noise could produce is reported as a gap, not as a finding.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from clinrisk.spec import ModelSpec, SliceSpec

RATES = {
    # rate: (numerator count, denominator count)
    "recall": ("tp", "positives"),
    "precision": ("tp", "flagged"),
    "flagged_share": ("flagged", "n"),
}
MISSING_GROUP = "missing"


def wilson(successes: int, trials: int, alpha: float = 0.05) -> tuple[float | None, float | None]:
    """95 % Wilson score interval of successes/trials; (None, None) when there are no trials."""
    from statsmodels.stats.proportion import proportion_confint

    if trials == 0:
        return None, None
    low, high = proportion_confint(successes, trials, alpha=alpha, method="wilson")
    return float(low), float(high)


def group_labels(item: SliceSpec, values: pd.Series) -> pd.Series:
    """The group of every row: the category itself, or its band label; missing values grouped apart."""
    if item.bands is None:
        labels = values.astype(object)
    else:
        edges = [-np.inf, *item.bands, np.inf]
        names = item.labels or [f"[{lo:g}, {hi:g})" for lo, hi in pairwise(edges)]
        labels = pd.cut(values.astype(float), bins=edges, labels=names, right=False).astype(object)
    return labels.where(values.notna(), MISSING_GROUP).astype(str)


def _counts(y_true: np.ndarray, y_pred: np.ndarray, groups: pd.Series) -> pd.DataFrame:
    from fairlearn.metrics import MetricFrame

    metrics = {
        "n": lambda t, p: len(t),
        "positives": lambda t, p: int(np.sum(t)),
        "flagged": lambda t, p: int(np.sum(p)),
        "tp": lambda t, p: int(np.sum((np.asarray(t) == 1) & (np.asarray(p) == 1))),
    }
    frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups.to_numpy())
    return frame.by_group.astype(int)


def _group_row(name: str, counts: pd.Series) -> dict[str, Any]:
    row: dict[str, Any] = {"group": name, **{k: int(counts[k]) for k in ("n", "positives", "flagged", "tp")}}
    for rate, (top, bottom) in RATES.items():
        trials = int(counts[bottom])
        row[rate] = float(counts[top] / trials) if trials else None
        row[f"{rate}_ci"] = list(wilson(int(counts[top]), trials))
    return row


def _gaps(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rate, the highest and lowest group and whether their intervals are apart."""
    gaps = []
    for rate in RATES:
        known = [g for g in groups if g[rate] is not None]
        if len(known) < 2:
            continue
        low, high = min(known, key=lambda g: g[rate]), max(known, key=lambda g: g[rate])
        clear = high[f"{rate}_ci"][0] > low[f"{rate}_ci"][1]
        gaps.append(
            {
                "rate": rate,
                "gap": float(high[rate] - low[rate]),
                "high": high["group"],
                "low": low["group"],
                "clear": bool(clear),
            }
        )
    return gaps


def slice_report(spec: ModelSpec, features: pd.DataFrame, y_true, y_pred) -> list[dict[str, Any]]:
    """One entry per spec slice: its groups (counts, rates, Wilson intervals) and the gaps between them.

    `y_true` and `y_pred` are 0/1 arrays aligned with `features`; rates with no denominator are None.
    """
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    report = []
    for item in spec.slices:
        groups = group_labels(item, features[item.feature].reset_index(drop=True))
        counts = _counts(y_true, y_pred, groups)
        rows = [_group_row(str(name), counts.loc[name]) for name in _ordered(item, counts.index)]
        report.append({"name": item.name, "feature": item.feature, "groups": rows, "gaps": _gaps(rows)})
    return report


def _ordered(item: SliceSpec, present) -> list[str]:
    """Groups in the spec's own order (bands, then categories), missing last."""
    declared = (item.labels or []) if item.bands is not None else []
    order = {name: i for i, name in enumerate(declared)}
    return sorted(present, key=lambda g: (g == MISSING_GROUP, order.get(g, len(order)), str(g)))


def clear_gaps(report: list[dict[str, Any]]) -> list[str]:
    """Sentences for the gaps larger than noise, e.g. for a report's warnings."""
    return [
        f"{s['name']}: {g['rate'].replace('_', ' ')} is {g['gap']:.2f} higher for {g['high']} "
        f"than for {g['low']} (95 % intervals do not overlap)"
        for s in report
        for g in s["gaps"]
        if g["clear"]
    ]
