"""Scoring paths: one request's latency with scikit-learn's DataFrame pipeline against the ONNX scorer.

Fits both stroke candidates on the real file (no MLflow), then times, for each candidate and
each path: one row through the scorer alone, one POST /predict through the Flask app (JSON in,
validation, scoring, JSON out; no network), and a 1,000-row batch. Prints a Markdown table.

    .venv/bin/python benchmarks/scoring_paths.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/scoring_paths.py --repeat 50
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from threadpoolctl import threadpool_limits

REPO = Path(__file__).resolve().parents[1]
PATIENT = {
    "gender": "Male",
    "age": 67,
    "hypertension": 0,
    "heart_disease": 1,
    "ever_married": "Yes",
    "work_type": "Private",
    "Residence_type": "Urban",
    "avg_glucose_level": 228.69,
    "bmi": 36.6,
    "smoking_status": "formerly smoked",
}


def timings_ms(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Median and 95th percentile of `repeat` calls, in milliseconds (after one warm-up call)."""
    call()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def fitted_models(spec, frame):
    from clinrisk.features import build_pipeline
    from clinrisk.model import RiskModel

    for candidate in spec.candidates:
        pipeline = build_pipeline(spec, candidate, seed=0).fit(
            frame[spec.feature_names], frame[spec.target.column]
        )
        yield (
            candidate.name,
            RiskModel(pipeline, 0.5, spec.to_yaml(), {"version": "1", "candidate": candidate.name}),
        )


class _Source:
    def __init__(self, model):
        self.model = model

    def champion_version(self) -> str:
        return "1"

    def load(self, version: str):
        return self.model


def time_requests(model, fast_path: bool, home: Path, repeat: int) -> tuple[float, float]:
    """Median and p95 of one POST /predict (one patient) through the app, auth off."""
    from clinrisk.settings import load_settings
    from clinrisk.web import create_app

    settings = load_settings(home=home, spec_dir=REPO / "models", auth_enabled=False, fast_path=fast_path)
    app = create_app(settings, model_source=_Source(model), watch=False)
    client = app.test_client()

    def call():
        response = client.post("/predict", json=PATIENT)
        assert response.status_code == 200, response.json

    try:
        call()
        assert app.extensions["clinrisk"].holder.state.loaded.scoring.active == (
            "onnx" if fast_path else "sklearn"
        )
        return timings_ms(call, repeat)
    finally:
        app.extensions["clinrisk"].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per figure")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 timed calls per figure")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 20
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from clinrisk.data import load_training_data
    from clinrisk.serving.scorer import SklearnScorer, build_scorer, columns_from_frame, columns_from_records
    from clinrisk.spec import load_spec

    spec = load_spec(REPO / "models" / "stroke.yaml")
    frame = load_training_data(spec, REPO / spec.data.path)
    one = columns_from_records([PATIENT], spec)
    batch = columns_from_frame(frame.head(1000), spec)
    rows = [
        "| candidate | path | scorer, 1 row (median / p95 ms) | POST /predict, 1 patient (median / p95 ms) "
        "| 1,000-row batch (µs per row) |",
        "|---|---|---|---|---|",
    ]
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        for name, model in fitted_models(spec, frame):
            lean, path = build_scorer(model, fast_path=True, verification=frame)
            for label, scorer, fast in (("scikit-learn", SklearnScorer(model), False), ("ONNX", lean, True)):
                single = timings_ms(lambda s=scorer: s.proba(one), args.repeat)
                request = time_requests(model, fast, Path(tmp) / f"{name}-{fast}", args.repeat)
                per_row = timings_ms(lambda s=scorer: s.proba(batch), max(5, args.repeat // 20))[0]
                rows.append(
                    f"| {name} | {label} | {single[0]:.3f} / {single[1]:.3f} | {request[0]:.2f} / "
                    f"{request[1]:.2f} | {per_row:.1f} |"
                )
            print(
                f"{name}: ONNX verified on {path.verified_rows} rows, max |Δp| = {path.max_abs_diff:.1e}",
                file=sys.stderr,
            )
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.repeat} timed calls each")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
