"""Does a new user's `clinrisk train` leave a good champion? Model quality on unseen patients.

Over repeated stratified 80/20 splits of the real data, the 20 % is put aside untouched and
(a) our whole training runs on the 80 % exactly as `clinrisk train --data` does: candidates
    compared out of fold (logistic regression, gradient boosting and their soft vote), threshold
    at precision >= floor + the spec's safety margin, refit on the training part, then the
    promotion gate on the training run's own holdout (no champion yet: `clinrisk.gate.decide`).
    The model is scored on the untouched 20 % at its own threshold;
(a') the same model refit on every row of the 80 % (holdout included) with the threshold and the
    calibration map kept from out of fold (as `retraining.served_model` registers it), scored on
    the same 20 %;
(b) a plain balanced logistic regression, threshold at the bare floor on out-of-fold predictions
    of the 80 %, refit on the 80 %: the baseline.
It also sweeps the safety margin (`--margins`; give none to skip the sweep). Each split uses
the same rows for every method.

    .venv/bin/python benchmarks/threshold_study.py            # 10 splits
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

DEFAULT_MARGINS = (0.0, 0.01, 0.02)
METRICS = ("recall", "precision", "roc_auc", "pr_auc", "flagged_share", "threshold")


def outer_split(frame: pd.DataFrame, spec, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 80 % a user would train on and the 20 % of patients the project never sees."""
    from sklearn.model_selection import train_test_split

    return train_test_split(frame, test_size=0.2, stratify=frame[spec.target.column], random_state=seed)


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


def ours_split(spec, part: pd.DataFrame, unseen: pd.DataFrame, seed: int) -> dict[str, dict]:
    """Our training and gate on the 80 %, scored on the unseen 20 % as trained and refit on every row."""
    from threadpoolctl import threadpool_limits

    from clinrisk.errors import NoThresholdError
    from clinrisk.evaluate import classification_metrics
    from clinrisk.gate import decide
    from clinrisk.promotion import rules_for, score_on
    from clinrisk.train import train_model

    try:
        result = train_model(spec, part, seed=seed)
    except NoThresholdError as exc:
        failure = {"failure": str(exc), "champion": False}
        return {"ours": failure, "refit": failure}
    model, target = result.model, spec.target.column
    decisions, _ = score_on(model, result.holdout)
    gate = decide(result.holdout[target].to_numpy(), decisions, None, rules_for(spec))
    common_facts = {"threshold": model.threshold, "candidate": result.best.name, "champion": gate.promote}
    as_trained = classification_metrics(unseen[target], model.predict_proba(unseen), model.threshold)
    with threadpool_limits(limits=1, user_api="openmp"):
        refit = refit_on_every_row(spec, result, part, seed)
    return {
        "ours": {**as_trained, **common_facts},
        "refit": {
            **classification_metrics(unseen[target], refit.predict_proba(unseen), refit.threshold),
            **common_facts,
        },
    }


def refit_on_every_row(spec, result, part: pd.DataFrame, seed: int):
    """The model `clinrisk.retraining.served_model` would register: the chosen candidate refit on every
    row, with the out-of-fold threshold AND calibration map kept together (both on the calibrated scale).

    The refit pipeline's own scores are raw (class-weighted); compared with the calibrated threshold
    they would flag the wrong patients, so scoring goes through `RiskModel.predict_proba`.
    """
    from clinrisk.features import build_pipeline
    from clinrisk.model import RiskModel

    candidate = next(c for c in spec.candidates if c.name == result.best.name)
    pipeline = build_pipeline(spec, candidate, seed).fit(part[spec.feature_names], part[spec.target.column])
    model = result.model
    return RiskModel(
        pipeline=pipeline, threshold=model.threshold, spec_yaml=model.spec_yaml, calibration=model.calibration
    )


def margin_sweep(spec, train: pd.DataFrame, holdout: pd.DataFrame, seed: int, margins) -> dict[str, dict]:
    """Train's own steps with each safety margin; out-of-fold scores, refits and calibrations computed once.

    Thresholds and probabilities are on train_model's calibrated scale, so they compare with (a).
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    from clinrisk.calibration import fit_platt
    from clinrisk.errors import NoThresholdError
    from clinrisk.evaluate import classification_metrics
    from clinrisk.features import build_pipeline
    from clinrisk.threshold import choose_threshold
    from clinrisk.train import CandidateScore, out_of_fold_scores, select_best

    y = train[spec.target.column].to_numpy()
    oof = {c.name: out_of_fold_scores(spec, c, train, seed) for c in spec.candidates}
    fitted, proba, calibrations = {}, {}, {}
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
            try:  # train_model's calibration: Platt's map fitted on the same out-of-fold scores.
                calibrations[best.name] = fit_platt(y, oof[best.name])
            except NoThresholdError as exc:
                results[f"{margin:g}"] = {"failure": str(exc)}
                continue
            fitted[best.name] = build_pipeline(spec, candidate, seed).fit(train[spec.feature_names], y)
            raw = fitted[best.name].predict_proba(holdout[spec.feature_names])[:, 1]
            proba[best.name] = calibrations[best.name].apply(raw)
        # Moved onto the calibrated scale exactly as calibrate_model moves it: the same patients flagged.
        threshold = float(calibrations[best.name].apply(np.array([best.choice.threshold]))[0])
        metrics = classification_metrics(holdout[spec.target.column], proba[best.name], threshold)
        results[f"{margin:g}"] = {**metrics, "threshold": threshold, "candidate": best.name}
    return results


def study_split(frame: pd.DataFrame, seed: int, margins) -> dict:
    """All methods on one stratified 80/20 split (seed `seed`)."""
    spec = common.load_spec()
    started = time.perf_counter()
    part, unseen = outer_split(frame, spec, seed)
    ours = ours_split(spec, part, unseen, seed)
    sweep = {}
    if margins:
        from clinrisk.train import split_holdout

        train, _ = split_holdout(part, spec, seed)
        sweep = margin_sweep(spec, train, unseen, seed, margins)
    return {
        "seed": seed,
        **ours,
        "baseline": {**baseline_split(spec, part, unseen, seed), "champion": True},
        "sweep": sweep,
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
    # A split leaves a champion only when training found a threshold and the gate promoted it.
    judged = [r for r in runs if "champion" in r]  # the margin sweep runs no gate
    summary["share_with_champion"] = (
        sum(bool(r["champion"]) for r in judged) / len(judged) if judged else float("nan")
    )
    candidates = pd.Series([r.get("candidate", "logistic_regression (plain)") for r in ok]).value_counts()
    summary["candidates"] = ", ".join(f"{name} x{count}" for name, count in candidates.items())
    return summary


def summaries(runs: list[dict], floor: float, margins) -> dict[str, dict]:
    """One summary per method: ours, the plain baseline and each swept margin."""
    out = {
        "ours": summarise([r["ours"] for r in runs], floor),
        "refit": summarise([r["refit"] for r in runs], floor),
        "baseline": summarise([r["baseline"] for r in runs], floor),
    }
    for margin in margins:
        out[f"margin {margin:g}"] = summarise([r["sweep"][f"{margin:g}"] for r in runs], floor)
    return out


def consistency(runs: list[dict], spec_margin: float, margins) -> str:
    """Check the sweep reproduces train_model at the spec's margin (same threshold every split)."""
    key = f"{spec_margin:g}"
    if not margins:
        return "no margin sweep (--margins with no value): no consistency check"
    if key not in {f"{m:g}" for m in margins}:
        return "the spec's margin is not in the sweep: no consistency check"
    same = sum(
        abs(r["ours"].get("threshold", -1) - r["sweep"][key].get("threshold", -2)) < 1e-12 for r in runs
    )
    return f"the sweep at margin {key} reproduces train_model's threshold on {same}/{len(runs)} splits"


def fmt(summary: dict, key: str) -> str:
    mean, sd = summary[f"{key}_mean"], summary[f"{key}_sd"]
    if not np.isfinite(mean):
        return common.not_measured("no successful split")
    return f"{mean:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{mean:.3f}"


def render(table: dict[str, dict], spec, seeds: list[int], check: str, seconds: float) -> str:
    """The markdown section: method table, margin sweep and how to read them."""
    floor, margin = spec.objective.precision_floor, spec.objective.safety_margin
    headers = [
        "method",
        "recall",
        "precision",
        f"share precision ≥ {floor:g}",
        "share with a champion",
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
            common.figure(s["share_floor_kept"], ".0%", "no split"),
            f"{s['share_with_champion']:.0%}" if np.isfinite(s["share_with_champion"]) else "not gated",
            fmt(s, "roc_auc"),
            fmt(s, "pr_auc"),
            fmt(s, "flagged_share"),
            fmt(s, "threshold"),
            s["failures"],
            s["candidates"],
        ]

    main = [
        row(f"(a) ours: train_model + gate, margin {margin:g}", table["ours"]),
        row("(a') ours, refit on every row of the 80 %", table["refit"]),
        row("(b) plain balanced LR, margin 0", table["baseline"]),
    ]
    sweep = [
        row(f"ours, margin {name.split()[1]}", s) for name, s in table.items() if name.startswith("margin")
    ]
    sweep_lines = [
        "Safety-margin sweep (our training as trained, without the gate or the refit; the spec's margin is "
        f"{margin:g}; threshold target = floor + margin):",
        "",
        common.markdown_table(headers, sweep),
        "",
    ]
    return "\n".join(
        [
            "## Threshold study (model quality on unseen patients)",
            "",
            common.run_stamp(),
            "",
            f"{len(seeds)} stratified 80/20 splits of the real data (seeds {seeds[0]} to {seeds[-1]}): "
            "training, threshold and gate see only the 80 %, as `clinrisk train --data` would; every "
            "figure is measured on the untouched 20 %, at the model's own threshold. Thresholds come "
            f"from {spec.training.cv_folds}-fold out-of-fold predictions; ours are on the calibrated "
            "scale the model serves (Platt's map, kept with the model and its refit), (b)'s on its own "
            "uncalibrated one. Mean ± sd over splits. "
            f"The floor is precision ≥ {floor:g}; a split with no feasible threshold counts as missing "
            f"it and as having no champion. Took {seconds:.0f} s.",
            "",
            common.markdown_table(headers, main),
            "",
            *(sweep_lines if sweep else []),
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
    parser.add_argument("--margins", type=float, nargs="*", default=list(DEFAULT_MARGINS))
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
    # With a sweep, the spec's own margin is always in it, so it can be checked against train_model.
    margins = sorted({*args.margins, spec.objective.safety_margin}) if args.margins else []
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
