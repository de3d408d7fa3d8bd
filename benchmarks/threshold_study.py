"""How often does the chosen threshold keep its precision floor on unseen patients?

Over repeated stratified holdout splits of the real data this compares
(a) our full training (`clinrisk.train.train_model` with the stroke spec: candidates compared
    out of fold, threshold at precision >= floor + the spec's safety margin), at the model's
    own threshold, with
(b) a plain balanced logistic regression on the same preprocessing, its threshold chosen on
    out-of-fold predictions at precision >= floor with no margin,
and sweeps the spec's safety margin so that its value can be chosen on evidence. Each split
uses the same holdout rows and the same folds for every method.

    .venv/bin/python benchmarks/threshold_study.py            # 10 splits, ~3 min on 2 cores
    .venv/bin/python benchmarks/threshold_study.py --quick    # 2 splits, smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common

DEFAULT_MARGINS = (0.0, 0.01, 0.02, 0.03)
METRICS = ("recall", "precision", "roc_auc", "pr_auc", "flagged_share", "threshold")


def baseline_split(spec, train: pd.DataFrame, holdout: pd.DataFrame, seed: int) -> dict:
    """Plain balanced logistic regression, threshold at the bare floor on out-of-fold scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import Pipeline

    from clinrisk.errors import NoThresholdError
    from clinrisk.evaluate import classification_metrics
    from clinrisk.features import build_preprocessor
    from clinrisk.threshold import choose_threshold

    pipeline = Pipeline(
        [
            ("preprocess", build_preprocessor(spec)),
            ("classifier", LogisticRegression(class_weight="balanced", max_iter=2000)),
        ]
    )
    x, y = train[spec.feature_names], train[spec.target.column].to_numpy()
    folds = StratifiedKFold(n_splits=spec.training.cv_folds, shuffle=True, random_state=seed)
    oof = cross_val_predict(pipeline, x, y, cv=folds, method="predict_proba")[:, 1]
    try:
        choice = choose_threshold(y, oof, spec.objective.precision_floor, 0.0)
    except NoThresholdError as exc:
        return {"failure": str(exc)}
    pipeline.fit(x, y)
    proba = pipeline.predict_proba(holdout[spec.feature_names])[:, 1]
    metrics = classification_metrics(holdout[spec.target.column], proba, choice.threshold)
    return {
        **metrics,
        "threshold": choice.threshold,
        "oof_recall": choice.recall,
        "oof_precision": choice.precision,
    }


def ours_split(spec, frame: pd.DataFrame, seed: int) -> dict:
    """Our whole training exactly as `clinrisk train` runs it, evaluated at its own threshold."""
    from clinrisk.errors import NoThresholdError
    from clinrisk.train import train_model

    try:
        result = train_model(spec, frame, seed=seed)
    except NoThresholdError as exc:
        return {"failure": str(exc)}
    return {**result.holdout_metrics, "threshold": result.model.threshold, "candidate": result.best.name}


def margin_sweep(spec, train: pd.DataFrame, holdout: pd.DataFrame, seed: int, margins) -> dict[str, dict]:
    """Train's own steps with each safety margin; out-of-fold scores and refits computed once."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from clinrisk.errors import NoThresholdError
    from clinrisk.evaluate import classification_metrics
    from clinrisk.features import build_pipeline
    from clinrisk.threshold import choose_threshold
    from clinrisk.train import CandidateScore, out_of_fold_scores, select_best

    y = train[spec.target.column].to_numpy()
    oof = {c.name: out_of_fold_scores(spec, c, train, seed) for c in spec.candidates}
    fitted, proba = {}, {}
    results = {}
    for margin in margins:
        scores = []
        for candidate in spec.candidates:
            try:
                choice, failure = (
                    choose_threshold(y, oof[candidate.name], spec.objective.precision_floor, margin),
                    None,
                )
            except NoThresholdError as exc:
                choice, failure = None, str(exc)
            auc = float(roc_auc_score(y, oof[candidate.name]))
            ap = float(average_precision_score(y, oof[candidate.name]))
            scores.append(CandidateScore(candidate.name, auc, ap, choice, failure))
        try:
            best = select_best(scores, spec.objective.selection_tolerance)
        except NoThresholdError as exc:
            results[f"{margin:g}"] = {"failure": str(exc)}
            continue
        if best.name not in fitted:
            candidate = next(c for c in spec.candidates if c.name == best.name)
            fitted[best.name] = build_pipeline(spec, candidate, seed).fit(train[spec.feature_names], y)
            proba[best.name] = fitted[best.name].predict_proba(holdout[spec.feature_names])[:, 1]
        metrics = classification_metrics(holdout[spec.target.column], proba[best.name], best.choice.threshold)
        results[f"{margin:g}"] = {**metrics, "threshold": best.choice.threshold, "candidate": best.name}
    return results


def study_split(frame: pd.DataFrame, seed: int, margins) -> dict:
    """All methods on one stratified split (the holdout train_model itself draws for `seed`)."""
    from clinrisk.train import split_holdout

    spec = common.load_spec()
    started = time.perf_counter()
    train, holdout = split_holdout(frame, spec, seed)
    return {
        "seed": seed,
        "ours": ours_split(spec, frame, seed),
        "baseline": baseline_split(spec, train, holdout, seed),
        "sweep": margin_sweep(spec, train, holdout, seed, margins),
        "seconds": time.perf_counter() - started,
    }


def run_splits(frame: pd.DataFrame, seeds: list[int], margins, jobs: int) -> list[dict]:
    """Run every split, `jobs` at a time in separate processes."""
    from joblib import Parallel, delayed

    return Parallel(n_jobs=jobs, verbose=0)(delayed(study_split)(frame, seed, margins) for seed in seeds)


def summarise(runs: list[dict], floor: float) -> dict[str, float]:
    """Mean and sd of each metric, the share of splits keeping the floor, failures and candidates."""
    ok = [r for r in runs if "failure" not in r]
    summary: dict[str, float | str] = {"splits": len(runs), "failures": len(runs) - len(ok)}
    for key in METRICS:
        values = np.array([r[key] for r in ok], dtype=float)
        summary[f"{key}_mean"] = float(np.mean(values)) if len(values) else float("nan")
        summary[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    # A failed split (no feasible threshold) counts as not keeping the floor.
    summary["share_floor_kept"] = (
        sum(r["precision"] >= floor for r in ok) / len(runs) if runs else float("nan")
    )
    candidates = pd.Series([r.get("candidate", "logistic_regression (plain)") for r in ok]).value_counts()
    summary["candidates"] = ", ".join(f"{name} x{count}" for name, count in candidates.items())
    return summary


def summaries(runs: list[dict], floor: float, margins) -> dict[str, dict]:
    """One summary per method: ours, the plain baseline and each swept margin."""
    out = {
        "ours": summarise([r["ours"] for r in runs], floor),
        "baseline": summarise([r["baseline"] for r in runs], floor),
    }
    for margin in margins:
        out[f"margin {margin:g}"] = summarise([r["sweep"][f"{margin:g}"] for r in runs], floor)
    return out


def consistency(runs: list[dict], spec_margin: float, margins) -> str:
    """Check the sweep reproduces train_model at the spec's margin (same threshold every split)."""
    key = f"{spec_margin:g}"
    if key not in {f"{m:g}" for m in margins}:
        return "the spec's margin is not in the sweep: no consistency check"
    same = sum(
        abs(r["ours"].get("threshold", -1) - r["sweep"][key].get("threshold", -2)) < 1e-12 for r in runs
    )
    return f"the sweep at margin {key} reproduces train_model's threshold on {same}/{len(runs)} splits"


def fmt(summary: dict, key: str) -> str:
    mean, sd = summary[f"{key}_mean"], summary[f"{key}_sd"]
    return f"{mean:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{mean:.3f}"


def render(table: dict[str, dict], spec, seeds: list[int], check: str, seconds: float) -> str:
    """The markdown section: method table, margin sweep and how to read them."""
    floor, margin = spec.objective.precision_floor, spec.objective.safety_margin
    headers = [
        "method",
        "recall",
        "precision",
        f"share precision ≥ {floor:g}",
        "ROC-AUC",
        "PR-AUC",
        "flagged",
        "threshold",
        "failures",
        "chosen candidate",
    ]

    def row(label: str, s: dict) -> list[str]:
        return [
            label,
            fmt(s, "recall"),
            fmt(s, "precision"),
            f"{s['share_floor_kept']:.0%}",
            fmt(s, "roc_auc"),
            fmt(s, "pr_auc"),
            fmt(s, "flagged_share"),
            fmt(s, "threshold"),
            s["failures"],
            s["candidates"],
        ]

    main = [
        row(f"(a) ours: train_model, margin {margin:g}", table["ours"]),
        row("(b) plain balanced LR, margin 0", table["baseline"]),
    ]
    sweep = [
        row(f"ours, margin {name.split()[1]}", s) for name, s in table.items() if name.startswith("margin")
    ]
    return "\n".join(
        [
            "## Threshold study (precision floor and safety margin)",
            "",
            common.run_stamp(),
            "",
            f"{len(seeds)} stratified holdout splits of the real data (seeds {seeds[0]} to {seeds[-1]}, "
            f"holdout {spec.training.holdout_fraction:.0%}); thresholds chosen on "
            f"{spec.training.cv_folds}-fold out-of-fold predictions of the training part, evaluated on "
            f"the holdout. Mean ± sd over splits. The floor is precision ≥ {floor:g}; a split with no "
            f"feasible threshold counts as missing it. Took {seconds:.0f} s.",
            "",
            common.markdown_table(headers, main),
            "",
            "Safety-margin sweep (our training; the spec's margin is "
            f"{margin:g}; threshold target = floor + margin):",
            "",
            common.markdown_table(headers, sweep),
            "",
            f"Consistency: {check}.",
            "",
            "How to read it: a threshold that only just reaches the floor out of fold falls under it on "
            "new patients about half of the time; a margin trades a little recall for keeping the floor "
            "more often. Pick the smallest margin whose share of splits keeping the floor is acceptable.",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="Number of stratified splits (seeds 0..n-1).")
    parser.add_argument("--margins", type=float, nargs="+", default=list(DEFAULT_MARGINS))
    parser.add_argument("--jobs", type=int, default=2, help="Splits run in parallel processes.")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 2 splits, written under .work/.")
    parser.add_argument("--results", type=Path, default=None, help="Results file to update.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    common.exit_on_sigterm()
    seeds = list(range(2 if args.quick else args.seeds))
    spec = common.load_spec()
    frame = common.real_data(spec)
    # The spec's own margin is always swept, so the sweep can be checked against train_model.
    margins = sorted({*args.margins, spec.objective.safety_margin})
    started = time.perf_counter()
    runs = run_splits(frame, seeds, margins, args.jobs)
    seconds = time.perf_counter() - started
    table = summaries(runs, spec.objective.precision_floor, margins)
    check = consistency(runs, spec.objective.safety_margin, margins)
    body = render(table, spec, seeds, check, seconds)
    print(body)
    common.save_raw("threshold_study", {"runs": runs, "summary": table})
    common.write_results(common.results_path(args.results, args.quick), "threshold", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
