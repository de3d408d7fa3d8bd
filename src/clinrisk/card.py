"""The model card of one registered version (Mitchell et al. 2019, "Model Cards for Model Reporting").

`card_facts` gathers, at registration, everything a card says as plain JSON: intended use,
threshold, training data, holdout metrics with Wilson intervals, calibration, fairness slices
and known limits. `render` turns facts plus the gate's decision (read from the version's tags,
which arrive after registration) into HTML and Markdown with the Jinja templates in
`clinrisk/templates/`. The web layer renders the same templates, so both always agree.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from clinrisk.fairness import clear_gaps, slice_report, wilson

CARD_DIR = "card"
FACTS_FILE = "card.json"
PLOT_SIZE = 220


def _rate(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson(successes, trials)
    return {
        "value": successes / trials if trials else None,
        "low": low,
        "high": high,
        "of": f"{successes}/{trials}",
    }


def holdout_rates(metrics: dict[str, float]) -> dict[str, Any]:
    """Recall, precision and share flagged at the threshold, each with its 95 % Wilson interval."""
    tp, fp, fn, tn = (int(metrics[k]) for k in ("tp", "fp", "fn", "tn"))
    return {
        "recall": _rate(tp, tp + fn),
        "precision": _rate(tp, tp + fp),
        "flagged_share": _rate(tp + fp, tp + fp + fn + tn),
    }


def _missing_shares(spec, frame) -> dict[str, float]:
    return {name: float(frame[name].isna().mean()) for name, f in spec.features.items() if f.nullable}


def _limits(spec, missing: dict[str, float], gaps: list[str]) -> list[str]:
    rows = [
        f"Trained on the patients of one data file ({spec.data.path}); people unlike them "
        "(other countries, care settings or years) may get less accurate risks.",
        "The risk is a statistical estimate from the model's inputs, not a diagnosis: it does not "
        "replace a clinician's judgement or a clinical examination.",
    ]
    rows += [
        f"{name} is missing for {share:.1%} of holdout patients; the model imputes it."
        for name, share in missing.items()
    ]
    rows += [f"Fairness: {gap}." for gap in gaps]
    return rows


def _data_facts(result, data_path: Path | str | None) -> dict[str, Any]:
    spec = result.model.spec
    path = Path(data_path or spec.data.path)
    modified = (
        datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
        if path.exists()
        else None
    )
    return {
        "path": str(path),
        "sha256": result.model.info.get("data_sha256"),
        "modified_at": modified,
        "rows": result.rows,
    }


def regression_card_facts(result, data_path: Path | str | None = None) -> dict[str, Any]:
    """A regression's card: holdout R² with its bootstrap interval, RMSE and MAE (target units).

    It has no threshold, calibration or fairness slices (those are rates of 0/1 decisions).
    """
    model = result.model
    spec = model.spec
    missing = _missing_shares(spec, result.holdout)
    limits = [line for line in _limits(spec, missing, []) if "risk is a statistical estimate" not in line] + [
        f"The prediction is a statistical estimate of {spec.target.label} in the target's units, "
        "not a diagnosis: it does not replace a clinician's judgement."
    ]
    return {
        "kind": "regression",
        "model": spec.name,
        "description": spec.description,
        "candidate": model.info.get("candidate"),
        "trained_at": model.info.get("trained_at"),
        "threshold": None,
        "objective": spec.objective.model_dump(),
        "data": _data_facts(result, data_path),
        "holdout": {k: result.holdout_metrics.get(k) for k in ("r2", "r2_low", "r2_high", "rmse", "mae")},
        "calibration": None,
        "slices": [],
        "gaps": [],
        "limits": limits,
    }


def card_facts(result, data_path: Path | str | None = None) -> dict[str, Any]:
    """Everything the card of a freshly trained model says, as JSON-able values (no version yet)."""
    model = result.model
    spec = model.spec
    if spec.is_regression:
        return regression_card_facts(result, data_path)
    holdout = result.holdout
    y = holdout[spec.target.column].to_numpy().astype(int)
    slices = slice_report(spec, holdout, y, model.decide(result.holdout_proba))
    gaps = clear_gaps(slices)
    missing = _missing_shares(spec, holdout)
    return {
        "model": spec.name,
        "description": spec.description,
        "candidate": model.info.get("candidate"),
        "trained_at": model.info.get("trained_at"),
        "threshold": model.threshold,
        "objective": spec.objective.model_dump(),
        "data": {**_data_facts(result, data_path), "positives_holdout": int(y.sum())},
        "holdout": {
            "rates": holdout_rates(result.holdout_metrics),
            **{k: result.holdout_metrics.get(k) for k in ("roc_auc", "pr_auc", "brier")},
        },
        "calibration": model.info.get("calibration"),
        "slices": slices,
        "gaps": gaps,
        "limits": _limits(spec, missing, gaps),
    }


def plot_points(calibration: dict[str, Any] | None, size: int = PLOT_SIZE) -> dict[str, Any] | None:
    """SVG coordinates of the calibration curve on a square of `size` pixels (origin bottom left)."""
    if not calibration:
        return None
    curve = calibration["curve"]
    top = max([*curve["predicted"], *curve["observed"], 0.05]) * 1.1
    scale = size / top
    points = [
        {"x": round(p * scale, 1), "y": round(size - o * scale, 1), "n": n, "p": p, "o": o}
        for p, o, n in zip(curve["predicted"], curve["observed"], curve["count"], strict=True)
    ]
    return {
        "size": size,
        "top": top,
        "points": points,
        "path": " ".join(f"{q['x']},{q['y']}" for q in points),
    }


def gate_from_tags(tags: dict[str, str]) -> dict[str, Any] | None:
    """The gate's decision and reasons as tagged on the version, or None before the gate ran."""
    if "gate.decision" not in tags:
        return None
    try:
        reasons = json.loads(tags.get("gate.reasons", "[]"))
    except ValueError:
        reasons = [tags.get("gate.reasons", "")]
    return {
        "decision": tags["gate.decision"],
        "reasons": reasons,
        "compared_with": tags.get("gate.compared_with"),
    }


def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("clinrisk", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html", "html.j2")),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = percent
    return env


def context(
    facts: dict[str, Any], version: str, gate: dict[str, Any] | None, aliases: list[str] | None = None
) -> dict:
    return {
        "card": facts,
        "version": version,
        "gate": gate,
        "aliases": aliases or [],
        "plot": plot_points(facts.get("calibration")),
    }


def render_html(
    facts: dict[str, Any], version: str, gate: dict[str, Any] | None = None, aliases: list[str] | None = None
) -> str:
    """The HTML card alone (what the service shows)."""
    return _environment().get_template("card.html.j2").render(**context(facts, version, gate, aliases))


def render_slices_html(slices: list[dict[str, Any]]) -> str:
    """The fairness tables alone, for the retrain and monitoring report headers."""
    return _environment().get_template("slices.html.j2").render(slices=slices, gaps=clear_gaps(slices))


def render(facts: dict[str, Any], version: str, gate: dict[str, Any] | None = None) -> dict[str, str]:
    """The card as {"html": ..., "md": ...}."""
    env = _environment()
    values = context(facts, version, gate)
    return {kind: env.get_template(f"card.{kind}.j2").render(**values) for kind in ("html", "md")}


def percent(value: float | None, digits: int = 0) -> str:
    """0.123 -> "12 %" (or "12.3 %" with digits=1); "n/a" when there is no value."""
    missing = value is None or (isinstance(value, float) and np.isnan(value))
    return "n/a" if missing else f"{value * 100:.{digits}f} %"
