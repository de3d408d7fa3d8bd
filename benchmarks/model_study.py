"""How good are the diabetes, anemia and diabetes-progression models on patients they never saw?

For each model, `clinrisk.train.train_model` runs exactly as `clinrisk train` does, once per
seed; each seed draws a different holdout (stratified for a classification), so the spread
over seeds is the spread a clinic would see from one retraining to the next.

- Classifications (diabetes, anemia): holdout recall and precision at the model's own
  threshold, mean ± sd over splits, and Wilson 95 % intervals (Wilson 1927, via statsmodels)
  of the counts pooled over every holdout; the share of splits keeping the precision floor.
- Regression (diabetes_progression): holdout R² of the served model and, on the same rows, of
  a bmi-only SGD regressor (what the system it descends from served), mean ± sd and the share
  of splits reaching R² ≥ 0.4; plus the seed-42 split's bootstrap interval as `clinrisk train`
  reports it.

    .venv/bin/python benchmarks/model_study.py            # 20 splits per model, ~5 min on 2 cores
    .venv/bin/python benchmarks/model_study.py --quick    # 3 splits, smoke run
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


def classification_row(name: str, seeds: list[int]) -> list[str]:
    """One table row: a classification model over every split."""
    from clinrisk.train import train_model

    spec, frame = load(name)
    runs = [train_model(spec, frame, seed=seed).holdout_metrics for seed in seeds]
    tp, fn, fp = (sum(r[k] for r in runs) for k in ("tp", "fn", "fp"))
    floor = spec.objective.precision_floor
    positives = int(frame[spec.target.column].sum())
    return [
        f"{name} ({len(frame)} rows, {positives} positive)",
        str(runs[0]["tp"] + runs[0]["fn"]),
        mean_sd([r["recall"] for r in runs]),
        mean_sd([r["precision"] for r in runs]),
        wilson(tp, tp + fn),
        wilson(tp, tp + fp),
        f"{np.mean([r['precision'] >= floor for r in runs]):.0%} (floor {floor:g})",
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
        "positives per holdout",
        "recall",
        "precision",
        "recall, pooled (Wilson 95 %)",
        "precision, pooled (Wilson 95 %)",
        "splits keeping the floor",
        "ROC-AUC",
    ]
    seed_42 = extra["seed_42"]
    lines = [
        "## Model study (diabetes, anemia, diabetes progression)",
        "",
        common.run_stamp(),
        "",
        f"{len(seeds)} holdout splits per model (seeds {seeds[0]} to {seeds[-1]}), each trained exactly as "
        f"`clinrisk train` does and measured on its own unseen holdout. Mean ± sd over splits; pooled = "
        f"the confusion counts of every holdout added up. Took {seconds:.0f} s.",
        "",
        common.markdown_table(class_headers, class_rows),
        "",
        f"Diabetes progression (regression; R² on {extra['holdout_rows']} unseen rows per split):",
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
    parser.add_argument("--seeds", type=int, default=20, help="Splits per model (seeds 42..42+n-1).")
    parser.add_argument("--quick", action="store_true", help="Smoke run: 3 splits, written under .work/.")
    parser.add_argument("--results", type=Path, default=None, help="Results file to update.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seeds = list(range(42, 42 + (3 if args.quick else args.seeds)))
    started = time.perf_counter()
    class_rows = [classification_row(name, seeds) for name in CLASSIFIERS]
    reg_rows, extra = regression_rows(seeds)
    body = render(class_rows, reg_rows, extra, seeds, time.perf_counter() - started)
    common.write_results(common.results_path(args.results, args.quick), "models", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
