"""Fast checks of the benchmark helpers (not part of `make test`): `.venv/bin/pytest benchmarks`."""

from __future__ import annotations

import math
import sys

import pytest

import _common as common
import batch
import retrain
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


def test_measure_reports_exit_code_time_and_memory():
    """It returns the child's exit code, wall time and a positive peak RSS."""
    result = common.measure([sys.executable, "-c", "x = bytearray(50_000_000); print('ok')"], env={})
    assert result.returncode == 0 and result.stdout.strip() == "ok"
    assert result.peak_rss_mb > 45 and result.seconds > 0


def test_batch_parse_args_quick_shrinks_the_run():
    """It makes --quick a small run."""
    args = batch.parse_args(["--quick"])
    assert args.rows < 1_000_000 and args.small_rows < args.rows
