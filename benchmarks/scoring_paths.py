"""Scoring paths: one request's latency with scikit-learn's DataFrame pipeline against the ONNX scorers.

Fits every stroke candidate on the real file (no MLflow) and signs it into the bundle the registry
would hold (ONNX graph checked against scikit-learn on the spec's file, plus the lean scorer when
it covers the model). Then times, for each candidate and each path: one row through the scorer
alone and a 1,000-row batch (scikit-learn, the full ONNX graph, and the lean scorer when there is
one), and one POST /predict through the Flask app (JSON in, validation, scoring, JSON out; no
network) on the path the service serves, which is always the bundle's. Prints a Markdown table.

    .venv/bin/python benchmarks/scoring_paths.py            # ~1 min on 2 cores
    .venv/bin/python benchmarks/scoring_paths.py --quick    # 20 timed calls per figure
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


def signed_bundle(model, settings, version: str = "1"):
    """`model` as the service gets it from the registry: a ServedModel read from a bundle signed
    with `settings`' key, verified on the spec's own data file, with a promotion record.

    The service serves only signed bundles (`clinrisk.serving.champion.ModelSource.load`), never
    a fitted RiskModel; this is what `clinrisk train` registers and the gate promotes.
    """
    from clinrisk import bundle, signing
    from clinrisk.serving.scorer import load_verification_data

    key = signing.ensure_key(settings)
    rows, where = load_verification_data(model.spec)
    if rows is None:
        raise SystemExit(f"cannot verify the ONNX scorer: {where}")
    files = bundle.build_bundle(model, rows[model.spec.feature_names], "bench", key)
    name = model.spec.name
    served = bundle.read_bundle(files, key, name=name, version=version, run_id="bench")
    served.promotion = bundle.promotion_record(
        key, name=name, version=version, run_id="bench", by="benchmark", how="gate", reason="benchmark"
    )
    return served


class _Source:
    """A model source serving one fitted model as version 1, signed like the registry's."""

    def __init__(self, model, settings):
        self.served = signed_bundle(model, settings)

    def champion_version(self) -> str:
        return "1"

    def load(self, version: str):
        return self.served


def app_client(model, home: Path):
    """A Flask test client of the service serving `model` (auth off), its app and the served model."""
    from clinrisk.settings import load_settings
    from clinrisk.web import create_app

    settings = load_settings(home=home, spec_dir=REPO / "models", auth_enabled=False)
    source = _Source(model, settings)
    app = create_app(settings, model_source=source, watch=False)
    return app, app.test_client(), source.served


def post_ok(client, url: str):
    """POST the README patient; fail loudly on anything but 200, so no error answer is ever timed."""
    response = client.post(url, json=PATIENT)
    assert response.status_code == 200, (url, response.status_code, response.json)
    return response


def time_requests(model, home: Path, repeat: int):
    """The ServedModel the service serves `model` as, and median and p95 of one POST /predict
    (one patient); it checks the service scores on the bundle's own path."""
    app, client, served = app_client(model, home)
    try:
        post_ok(client, "/predict")
        active = app.extensions["clinrisk"].holder.state.loaded.scoring.active
        assert active == served.scorer.path, (active, served.scorer.path)
        return served, timings_ms(lambda: post_ok(client, "/predict"), repeat)
    finally:
        app.extensions["clinrisk"].close()


def scorers(model, served, frame) -> list[tuple[str, object]]:
    """(path, scorer) for scikit-learn, the full ONNX graph, and the bundle's lean scorer if any."""
    from clinrisk.serving.scorer import SklearnScorer, build_scorer

    onnx, checked = build_scorer(model, fast_path=True, verification=frame)
    assert checked.active == "onnx", checked.reason
    found = [("sklearn", SklearnScorer(model)), ("onnx", onnx)]
    if served.scorer.path != "onnx":
        found.append((served.scorer.path, served.scorer))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="timed calls per figure")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 timed calls per figure")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 20
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from clinrisk.data import load_training_data
    from clinrisk.serving.scorer import columns_from_frame, columns_from_records
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
            served, request = time_requests(model, Path(tmp) / name, args.repeat)
            for path, scorer in scorers(model, served, frame):
                single = timings_ms(lambda s=scorer: s.proba(one), args.repeat)
                per_row = timings_ms(lambda s=scorer: s.proba(batch), max(5, args.repeat // 20))[0]
                timed = f"{request[0]:.2f} / {request[1]:.2f}" if path == served.scorer.path else "not served"
                rows.append(
                    f"| {name} | {path} | {single[0]:.3f} / {single[1]:.3f} | {timed} | {per_row:.1f} |"
                )
            facts = served.verification
            print(f"{name}: served on {served.scorer.path}, {facts['reason']}", file=sys.stderr)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; {args.repeat} timed calls each")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
