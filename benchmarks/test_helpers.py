"""Fast checks of the benchmark helpers (not part of `make test`): `.venv/bin/pytest benchmarks`."""

from __future__ import annotations

import math
import sys

import pytest

import _common as common
import batch
import retrain
import scoring_paths
import serving
import threshold_study


def test_update_section_replaces_only_its_own_section(tmp_path):
    """It rewrites one section and leaves the others as they were."""
    path = tmp_path / "RESULTS.md"
    common.update_section(path, "batch", "old batch")
    common.update_section(path, "serving", "serving figures")
    common.update_section(path, "batch", "new batch")
    text = path.read_text()
    assert "new batch" in text and "old batch" not in text
    assert "serving figures" in text
    assert text.index("<!-- serving:start -->") < text.index("<!-- batch:start -->")


def test_results_path_keeps_smoke_runs_out_of_results_md():
    """It sends --quick runs to .work/ unless a file is given."""
    assert common.results_path(None, quick=True) == common.QUICK_RESULTS
    assert common.results_path(None, quick=False) == common.RESULTS


def test_resample_gives_valid_scoring_rows():
    """It draws the asked number of rows, unique ids, noisy numbers inside the spec's ranges."""
    from clinrisk.data import validate_frame

    spec = common.load_spec()
    frame = common.resample(common.real_data(spec), 3000, seed=1, noise=0.5, spec=spec)
    assert len(frame) == 3000 and frame[spec.id_column].is_unique
    validate_frame(frame, spec, require_target=True)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"probability": 0.25, "prediction": 0}, [0.25]),
        ([{"probability": 0.1}, {"probability": 0.9}], [0.1, 0.9]),
        ({"predictions": [{"probability": 0.3, "prediction": 0}]}, [0.3]),
    ],
)
def test_probabilities_reads_both_servers_answers(payload, expected):
    """It finds the probabilities in our answers and in MLflow's."""
    assert serving.probabilities(payload) == expected


def test_probabilities_rejects_an_answer_without_them():
    """It fails loudly instead of comparing nothing."""
    with pytest.raises(ValueError):
        serving.probabilities({"error": "nope"})


def test_growth_exponent_is_one_for_linear_time():
    """It reads time ∝ rows^k from two runs."""
    small, big = {"rows": 50_000, "seconds": 10.0}, {"rows": 500_000, "seconds": 100.0}
    assert math.isclose(retrain.growth_exponent(small, big), 1.0)


def test_summarise_counts_a_failed_split_as_missing_the_floor():
    """It divides the share keeping the floor by every split, failures included."""
    runs = [{"precision": 0.2, "recall": 0.7, "roc_auc": 0.8, "pr_auc": 0.2, "flagged_share": 0.2,
             "threshold": 0.5}, {"failure": "no threshold"}]  # fmt: skip
    summary = threshold_study.summarise(runs, floor=0.15)
    assert summary["share_floor_kept"] == 0.5 and summary["failures"] == 1


def test_summarise_counts_splits_left_without_a_champion():
    """A split whose training failed or whose gate refused leaves no champion; the sweep is not gated."""
    ok = {
        "precision": 0.2,
        "recall": 0.7,
        "roc_auc": 0.8,
        "pr_auc": 0.2,
        "flagged_share": 0.2,
        "threshold": 0.5,
    }
    runs = [{**ok, "champion": True}, {**ok, "champion": False}, {"failure": "none", "champion": False}]
    assert threshold_study.summarise(runs, floor=0.15)["share_with_champion"] == 1 / 3
    assert math.isnan(threshold_study.summarise([ok], floor=0.15)["share_with_champion"])


def test_measure_reports_exit_code_time_and_memory():
    """It returns the child's exit code, wall time and a positive peak RSS."""
    result = common.measure([sys.executable, "-c", "x = bytearray(50_000_000); print('ok')"], env={})
    assert result.returncode == 0 and result.stdout.strip() == "ok"
    assert result.peak_rss_mb > 45 and result.seconds > 0


def test_batch_parse_args_quick_shrinks_the_run():
    """It makes --quick a small run."""
    args = batch.parse_args(["--quick"])
    assert args.rows < 1_000_000 and args.small_rows < args.rows


def _load(server: str, concurrency: int, seconds: float, cpu_ms: float, p99: float = 20.0):
    return serving.LoadResult(server, concurrency, 1000, 0, seconds, 2.0, p99, cpu_ms, 0.5)


def test_serving_render_states_the_floor_mlflow_and_the_targets():
    """It reports each server, ours as a share of the floor and a multiple of MLflow, and each target."""
    args = serving.parse_args(["--concurrency", "8"])
    results = [
        _load(serving.OURS, 8, 1.0, 1.0, p99=8.0),
        _load(serving.HELLO, 8, 0.5, 0.4),
        _load(serving.MLFLOW, 8, 40.0, 40.0, p99=400.0),
    ]
    agree = {"rows": 200, "singles": 20, "max_abs_diff": 1e-16}
    text = serving.render(results, agree, args, 2, {serving.OURS: 3.0, serving.MLFLOW: 20.0})
    assert "| 8 | 8.00 | 1000 | 50% | 40.00x |" in text
    assert "target ≤ 10 ms: met" in text and "target ≥ 50%: met" in text and "target ≥ 30x: met" in text


def test_serving_says_not_measured_where_mlflow_was_not_run():
    """Without MLflow, its ratios and the agreement say "not measured" and why, never a bare nan."""
    args = serving.parse_args(["--concurrency", "8", "--servers", "ours", "hello"])
    results = [_load(serving.OURS, 8, 1.0, 1.0, p99=8.0), _load(serving.HELLO, 8, 0.5, 0.4)]
    results.append(serving.LoadResult(serving.HELLO, 16, 0, 0, 0.0, 0.0, 0.0, 0.0, float("nan")))
    ours = [s for s in [serving.ours(1), serving.hello(2)] if s.name == serving.OURS]
    agree = serving.agreement(ours, [{}], singles=1)
    text = serving.render(results, agree, args, 2, {serving.OURS: 3.0})
    progress = serving.agreement_line(agree, args.tolerance)
    assert progress == "Same probabilities: not measured (ours and MLflow were not both in --servers)."
    assert progress in text
    assert "| 8 | 8.00 | 1000 | 50% | not measured (MLflow not in --servers) |" in text
    assert "| not measured (wrk reported no duration) |" in text
    assert "| not measured (no server CPU seen) |" in text
    assert "nan" not in text.lower().replace("nanoseconds", "")


def test_figure_formats_a_number_or_says_why_it_is_missing():
    """It formats finite numbers and names the reason for None and NaN."""
    assert common.figure(0.5, ".0%", "no run") == "50%"
    assert common.figure(float("nan"), ".1f", "no run") == "not measured (no run)"
    assert common.figure(None, ".1f", "skipped") == "not measured (skipped)"


def test_serving_reads_the_totals_wrk_prints():
    """It parses post.lua's totals line and ignores wrk's own output."""
    totals = '{"requests": 5, "socket_errors": 0, "status_errors": 1, "duration_us": 10}'
    output = f"Running 10s test\nWRK_JSON {totals}\n"
    assert serving.parse_wrk(output)["status_errors"] == 1
    with pytest.raises(RuntimeError, match="no totals"):
        serving.parse_wrk("Running 10s test\n")


def _measured(seconds: float, rss: float) -> common.Measured:
    return common.Measured(returncode=0, seconds=seconds, peak_rss_mb=rss, stdout="", stderr="")


def test_batch_render_states_both_targets():
    """It reports rows per second, peak memory, the profile and a verdict for each target."""
    args = batch.parse_args(["--rows", "1000000", "--small-rows", "200000"])
    measured = {
        "file_mb": 63.0,
        "scoring_path": "onnx",
        "tiny": _measured(5.0, 300),
        "tiny_cold": _measured(9.0, 300),
        "big": _measured(25.0, 460),
        "big_cold": _measured(29.0, 460),
        "mlflow": _measured(80.0, 1000),
        "startup_profile": {
            "steps": {"import": 0.5, "alias": 0.01},
            "process_seconds": 0.6,
            "path": "numpy",
            "mlflow_imported": False,
        },
        "small": _measured(9.0, 455),
        "plain": _measured(30.0, 900),
        "plain_times": {"read_seconds": 3.0, "predict_seconds": 20.0},
        "lean": _measured(15.0, 1100),
        "lean_times": {"build_seconds": 0.5, "predict_seconds": 5.0, "max_abs_diff": 1e-16},
        "profile": {
            "total_seconds": 6.0,
            "stages": {label: 1.0 for label, _ in batch.STAGES},
            "top": "...",
        },
    }
    text = batch.render(measured, args)
    assert "Throughput target" in text and "met." in text  # 50,000 rows/s against 50,000
    assert "Memory target" in text and "1.01x" in text
    assert "Where the time goes" in text
    assert "3.2x with the champion cached, met; 2.8x when it is first loaded from the registry" in text
    assert "5.0 s of the 25.0 s end to end (20%)" in text and "MLflow never imported" in text


def test_retrain_render_states_growth_and_the_target():
    """It reports each size and says whether time grew at most linearly on the last step."""
    args = retrain.parse_args(["--mode", "function"])
    runs = [
        {"rows": rows, "seconds": seconds, "wall_seconds": seconds + 5, "peak_rss_mb": 500.0,
         "stages": {"train_model": seconds - 2}, "result": {"candidate": "lr", "promoted": True}}
        for rows, seconds in ((5_000, 10.0), (50_000, 20.0), (500_000, 250.0))
    ]  # fmt: skip
    text = retrain.render(runs, args)
    assert "rows^0.30" in text and "rows^1.10" in text
    assert "missed: time grows as rows^1.10" in text


@pytest.fixture(scope="module")
def stroke_split():
    """A small stroke training run (1,500 rows) and 500 rows it never saw."""
    from clinrisk.train import train_model

    spec = common.load_spec()
    frame = common.real_data(spec).sample(n=2000, random_state=0)
    part, unseen = threshold_study.outer_split(frame, spec, seed=0)
    return spec, part, unseen, train_model(spec, part, seed=0)


def test_refit_scores_on_the_calibrated_scale_of_the_threshold(stroke_split):
    """Refit on the rows train_model fitted on, it gives train_model's calibrated risks and decisions."""
    from clinrisk.train import split_holdout

    spec, part, unseen, result = stroke_split
    train, _ = split_holdout(part, spec, seed=0)
    refit = threshold_study.refit_on_every_row(spec, result, train, seed=0)
    expected = result.model.predict_proba(unseen)
    assert refit.threshold == result.model.threshold
    assert refit.predict_proba(unseen) == pytest.approx(expected, abs=1e-9)
    assert (refit.decide(refit.predict_proba(unseen)) == result.model.decide(expected)).all()


def test_margin_sweep_reproduces_train_models_calibrated_threshold(stroke_split):
    """The sweep at the spec's margin gives train_model's threshold, on the same (calibrated) scale."""
    from clinrisk.train import split_holdout

    spec, part, unseen, result = stroke_split
    train, _ = split_holdout(part, spec, seed=0)
    margin = spec.objective.safety_margin
    sweep = threshold_study.margin_sweep(spec, train, unseen, 0, [margin])[f"{margin:g}"]
    assert sweep["threshold"] == pytest.approx(result.model.threshold, abs=1e-12)
    assert sweep["candidate"] == result.best.name


def test_scoring_paths_serves_a_fitted_model_as_a_signed_bundle(stroke_split, tmp_path):
    """The app built around a fitted RiskModel answers 200 on the bundle's path, as the service would."""
    import pandas as pd

    *_, result = stroke_split
    app, client, served = scoring_paths.app_client(result.model, tmp_path)
    try:
        answer = scoring_paths.post_ok(client, "/predict").json
        expected = result.model.predict_proba(pd.DataFrame([scoring_paths.PATIENT]))[0]
        assert answer["probability"] == pytest.approx(expected, abs=1e-5)
        assert app.extensions["clinrisk"].holder.state.loaded.scoring.active == served.scorer.path
    finally:
        app.extensions["clinrisk"].close()


def test_batch_and_threshold_study_say_not_measured_instead_of_nan():
    """A batch run without MLflow and a study summary with no split say why, never a bare nan."""
    nan = float("nan")
    assert batch.mlflow_verdict({"mlflow": nan})[-1].startswith("**Against MLflow:** not measured (")
    summary = {"recall_mean": nan, "recall_sd": nan}
    assert threshold_study.fmt(summary, "recall") == "not measured (no successful split)"
