"""How good are the diabetes, anemia and diabetes-progression models on patients they never saw?

Each model is trained exactly as `clinrisk train` trains it (candidates compared out of fold,
threshold at the precision floor plus the spec's margin, refit), and measured on patients that
model never saw.

- Classifications (diabetes, anemia): repeated stratified K-fold cross-validation (the spec's
  K; `--repeats` repetitions, each shuffled anew). In one repetition every patient is scored
  once, so recall and precision are over all patients (26 anaemic ones for anemia): mean ± sd
  over repetitions, the Wilson 95 % interval (Wilson 1927, via statsmodels) of one
  repetition's mean counts, and the share of repetitions keeping the precision floor.
- Regression (diabetes_progression): `--splits` random 80/20 holdouts; R² of the served model
  and, on the same rows, of a bmi-only SGD regressor (what the system it descends from served),
  mean ± sd and the share of splits reaching R² ≥ 0.4; plus the spec's own split with the
  bootstrap interval that `clinrisk train` reports.

    .venv/bin/python benchmarks/model_study.py            # ~6 min on 2 cores
    .venv/bin/python benchmarks/model_study.py --quick    # 2 repeats, 3 splits: smoke run
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

CLASSIFIERS = ("diabetes", "anemia")
REGRESSION = "diabetes_progression"


def load(name: str):
    """The spec and its validated raw data (checksum checked)."""
    from clinrisk.data import load_training_data
    from clinrisk.spec import load_spec

    spec = load_spec(common.REPO / "models" / f"{name}.yaml")
    return spec, load_training_data(spec, common.REPO / spec.data.path, spec.data.sha256)


def wilson(successes: int, total: int) -> str:
    """'0.812 [0.761, 0.854]': a proportion with its Wilson 95 % interval."""
    from statsmodels.stats.proportion import proportion_confint

    if total == 0:
        return "-"
    low, high = proportion_confint(successes, total, alpha=0.05, method="wilson")
    return f"{successes / total:.3f} [{low:.3f}, {high:.3f}]"


def mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def fit_like_clinrisk(spec, train: pd.DataFrame, seed: int):
    """`clinrisk train` without its own holdout: candidates out of fold, threshold, refit on `train`."""
    from clinrisk.features import build_pipeline
    from clinrisk.train import score_candidate, select_best

    scores = [score_candidate(spec, candidate, train, seed) for candidate in spec.candidates]
    best = select_best(scores, spec.objective.selection_tolerance)
    candidate = next(c for c in spec.candidates if c.name == best.name)
    pipeline = build_pipeline(spec, candidate, seed).fit(train[spec.feature_names], train[spec.target.column])
    return pipeline, best.choice.threshold


def cross_validated_counts(spec, frame: pd.DataFrame, seed: int, folds: int) -> dict[str, int]:
    """One repeat of stratified K-fold: every patient is scored once, by a model that never saw them."""
    from sklearn.model_selection import StratifiedKFold

    y = frame[spec.target.column].to_numpy()
    decided = np.zeros(len(frame), dtype=int)
    proba = np.zeros(len(frame))
    for train_rows, test_rows in StratifiedKFold(folds, shuffle=True, random_state=seed).split(frame, y):
        pipeline, threshold = fit_like_clinrisk(spec, frame.iloc[train_rows], seed)
        proba[test_rows] = pipeline.predict_proba(frame.iloc[test_rows][spec.feature_names])[:, 1]
        decided[test_rows] = proba[test_rows] >= threshold
    from sklearn.metrics import roc_auc_score

    return {
        "tp": int(((decided == 1) & (y == 1)).sum()),
        "fp": int(((decided == 1) & (y == 0)).sum()),
        "fn": int(((decided == 0) & (y == 1)).sum()),
        "roc_auc": float(roc_auc_score(y, proba)),
    }


def classification_row(name: str, seeds: list[int]) -> list[str]:
    """One table row: a classification model over every repeat of stratified cross-validation."""
    spec, frame = load(name)
    folds = spec.training.cv_folds
    runs = [cross_validated_counts(spec, frame, seed, folds) for seed in seeds]
    recall = [r["tp"] / (r["tp"] + r["fn"]) for r in runs]
    precision = [r["tp"] / max(r["tp"] + r["fp"], 1) for r in runs]
    # Every repeat scores the same patients: the interval is that of one repeat's counts (the
    # mean counts), not of the counts pooled over repeats, which would count patients again.
    tp, fn, fp = (round(np.mean([r[k] for r in runs])) for k in ("tp", "fn", "fp"))
    floor = spec.objective.precision_floor
    positives = int(frame[spec.target.column].sum())
    return [
        f"{name} ({len(frame)} rows, {positives} positive)",
        f"{folds}-fold, {len(seeds)} repeats",
        mean_sd(recall),
        mean_sd(precision),
        wilson(tp, tp + fn),
        wilson(tp, tp + fp),
        f"{np.mean([p >= floor for p in precision]):.0%} (floor {floor:g})",
        mean_sd([r["roc_auc"] for r in runs]),
    ]


def bmi_only_r2(spec, train: pd.DataFrame, holdout: pd.DataFrame, seed: int) -> float:
    """R² on the holdout of an SGD regressor on standardised BMI alone, as the ancestor served."""
    from sklearn.linear_model import SGDRegressor
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), SGDRegressor(max_iter=2000, tol=1e-6, random_state=seed))
    model.fit(train[["bmi"]], train[spec.target.column])
    return float(r2_score(holdout[spec.target.column], model.predict(holdout[["bmi"]])))


def regression_rows(seeds: list[int]) -> tuple[list[list[str]], dict]:
    """Served model and bmi-only model, R² on the same holdout rows of every split."""
    from sklearn.model_selection import train_test_split

    from clinrisk.train import train_model

    spec, frame = load(REGRESSION)
    served, bmi, candidates, first = [], [], [], None
    for seed in seeds:
        result = train_model(spec, frame, seed=seed)
        train, holdout = train_test_split(frame, test_size=spec.training.holdout_fraction, random_state=seed)
        assert holdout.index.equals(result.holdout.index)  # the same unseen rows for both
        served.append(result.holdout_metrics["r2"])
        bmi.append(bmi_only_r2(spec, train, holdout, seed))
        candidates.append(result.best.name)
        if seed == spec.training.seed:
            first = result.holdout_metrics
    floor = spec.objective.floor
    rows = [
        [
            "served (all 10 features, best of SGD and ridge)",
            mean_sd(served),
            f"{np.mean(np.array(served) >= floor):.0%}",
            ", ".join(f"{c} {candidates.count(c)}" for c in sorted(set(candidates))),
        ],
        [
            "bmi only (SGD regressor, the ancestor's model)",
            mean_sd(bmi),
            f"{np.mean(np.array(bmi) >= floor):.0%}",
            "-",
        ],
    ]
    return rows, {"seed_42": first, "holdout_rows": len(holdout)}


def render(class_rows, reg_rows, extra: dict, seeds: list[int], seconds: float) -> str:
    """The markdown section."""
    class_headers = [
        "model",
        "stratified CV",
        "recall",
        "precision",
        "recall (Wilson 95 %)",
        "precision (Wilson 95 %)",
        "repeats keeping the floor",
        "ROC-AUC",
    ]
    seed_42 = extra["seed_42"]
    lines = [
        "## Model study (diabetes, anemia, diabetes progression)",
        "",
        common.run_stamp(),
        "",
        "Classifications: repeated stratified cross-validation, each fold's model trained as `clinrisk "
        "train` trains (candidates, threshold, refit) and scoring only patients it never saw; mean ± sd "
        "over repeats, Wilson 95 % interval of one repeat's counts (every patient is scored once per "
        f"repeat). Took {seconds:.0f} s in all.",
        "",
        common.markdown_table(class_headers, class_rows),
        "",
        f"Diabetes progression (regression): {len(seeds)} random holdouts (seeds {seeds[0]} to {seeds[-1]}), "
        f"R² on {extra['holdout_rows']} unseen rows each, mean ± sd over splits:",
        "",
        common.markdown_table(["model", "holdout R²", "splits with R² ≥ 0.4", "chosen candidate"], reg_rows),
    ]
    if seed_42:
        lines += [
            "",
            f"The spec's own split (seed 42): R² {seed_42['r2']:.3f}, bootstrap 95 % interval "
            f"[{seed_42['r2_low']:.3f}, {seed_42['r2_high']:.3f}], RMSE {seed_42['rmse']:.1f}, "
            f"MAE {seed_42['mae']:.1f} (target units).",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeats", type=int, default=5, help="Repeats of stratified K-fold (classifications)."
    )
    parser.add_argument("--splits", type=int, default=20, help="Holdout splits of the regression.")
    parser.add_argument("--quick", action="store_true", help="Smoke run, written under .work/.")
    parser.add_argument("--results", type=common.results_file, default=None, help="Results file to update.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    repeats = list(range(42, 42 + (2 if args.quick else args.repeats)))
    splits = list(range(42, 42 + (3 if args.quick else args.splits)))
    started = time.perf_counter()
    class_rows = [classification_row(name, repeats) for name in CLASSIFIERS]
    reg_rows, extra = regression_rows(splits)
    body = render(class_rows, reg_rows, extra, splits, time.perf_counter() - started)
    common.write_results(common.results_path(args.results, args.quick), "models", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
