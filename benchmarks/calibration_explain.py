"""Calibration and explanations: Brier before/after Platt scaling, and what `?explain=true` costs.

Trains the full stroke spec on the real file exactly as `clinrisk train` does (no MLflow), then
prints a Markdown table per candidate:
- holdout Brier score of the raw (class-weighted) and of the calibrated probability, the Brier
  score of always predicting the training rate, and mean predicted risk against the observed rate;
- the README patient's probability, raw and calibrated;
- the median and p95 time of one POST /predict through the Flask app (no network), without and
  with `?explain=true`, and of `explain()` alone on one row. The app serves the model as the
  registry holds it: a signed bundle, scored on its lean scorer or ONNX graph (`scoring_paths`);
  explanations use the bundle's scikit-learn pipeline.

    .venv/bin/python benchmarks/calibration_explain.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/calibration_explain.py --quick    # 20 timed calls per figure
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scoring_paths import PATIENT, REPO, app_client, post_ok, timings_ms


def trained(spec, frame, candidate):
    """`clinrisk train` with `candidate` as the only choice (an ensemble keeps its members' specs,
    which build it, but is chosen whatever their out-of-fold scores)."""
    from unittest import mock

    from clinrisk import train
    from clinrisk.errors import NoThresholdError

    wanted = spec.candidate(candidate)
    kept = [c for c in spec.candidates if c.name == candidate or c.name in wanted.members]

    def only_the_candidate(scores, tolerance=0.0):
        found = next(s for s in scores if s.name == candidate)
        if found.choice is None:
            raise NoThresholdError(f"{candidate}: {found.failure}")
        return found

    with mock.patch.object(train, "select_best", only_the_candidate):
        return train.train_model(spec.model_copy(update={"candidates": kept}), frame)


def request_timings(model, home: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """Median and p95 of POST /predict without and with explanations; only 200 answers are timed."""
    app, client, served = app_client(model, home)
    try:
        for url in ("/predict", "/predict?explain=true"):
            post_ok(client, url)
        path = served.scorer.path
        return {
            f"POST /predict ({path})": timings_ms(lambda: post_ok(client, "/predict"), repeat),
            f"POST /predict?explain=true ({path})": timings_ms(
                lambda: post_ok(client, "/predict?explain=true"), repeat
            ),
        }
    finally:
        app.extensions["clinrisk"].close()


def main() -> None:
    import pandas as pd

    from clinrisk.data import validate_frame
    from clinrisk.explain import explain
    from clinrisk.fairness import slice_report
    from clinrisk.spec import load_spec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 timed calls per figure")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 20
    spec = load_spec(REPO / "models" / "stroke.yaml")
    frame = validate_frame(pd.read_csv(REPO / spec.data.path, na_values=spec.data.na_values), spec, True)
    patient = pd.DataFrame([PATIENT])
    print(
        "| candidate | Brier raw | Brier calibrated | Brier of the base rate | mean risk / observed |"
        " mean raw score, all patients | README patient raw → calibrated | threshold raw → calibrated |"
    )
    print("|---|---|---|---|---|---|---|---|")
    timings, slices = {}, {}
    for candidate in (c.name for c in spec.candidates):
        result = trained(spec, frame, candidate)
        model, calibration = result.model, result.model.info["calibration"]
        rate = calibration["observed_rate"]
        raw, calibrated = model.raw_proba(patient)[0], model.predict_proba(patient)[0]
        print(
            f"| {candidate} | {calibration['brier_uncalibrated']:.4f} | {calibration['brier']:.4f} | "
            f"{rate * (1 - rate):.4f} | {calibration['mean_predicted']:.3f} / {rate:.3f} | "
            f"{model.raw_proba(frame).mean():.2f} | {raw:.2f} → {calibrated:.3f} | "
            f"{calibration['raw_threshold']:.3f} → {model.threshold:.4f} |"
        )
        slices[candidate] = slice_report(
            spec, result.holdout, result.holdout[spec.target.column], model.decide(result.holdout_proba)
        )
        with tempfile.TemporaryDirectory() as home:
            timings[candidate] = request_timings(model, Path(home), args.repeat)
        timings[candidate]["explain() alone, one row"] = timings_ms(
            lambda m=model: explain(m, patient), args.repeat
        )
    print("\n| candidate | call | median ms | p95 ms |\n|---|---|---|---|")
    for candidate, calls in timings.items():
        for call, (median, p95) in calls.items():
            print(f"| {candidate} | {call} | {median:.2f} | {p95:.2f} |")
    print_slices(slices)


def _rate(value: float | None, interval: list) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f} ({interval[0]:.2f} to {interval[1]:.2f})"


def print_slices(slices: dict) -> None:
    """Holdout fairness slices of each candidate (the model card's tables, as Markdown)."""
    print("\n| candidate | slice | group | patients | strokes | flagged | recall (95 % CI) | flagged (CI) |")
    print("|---|---|---|---|---|---|---|---|")
    for candidate, report in slices.items():
        for item in report:
            for g in item["groups"]:
                counts = f"{g['n']} | {g['positives']} | {g['flagged']}"
                recall = _rate(g["recall"], g["recall_ci"])
                share = _rate(g["flagged_share"], g["flagged_share_ci"])
                print(f"| {candidate} | {item['name']} | {g['group']} | {counts} | {recall} | {share} |")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with threadpool_limits(limits=1):
        main()
