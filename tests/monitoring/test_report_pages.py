"""Our HTML pages: the header on each report, the index, and report directories."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from clinrisk.monitoring import index, store


def summary(model="stroke", created="2026-03-02T06:00:00+00:00", drift=True) -> dict:
    """A monitoring summary as monitor.evaluate writes it."""
    return {
        "kind": "monitor",
        "model": model,
        "model_version": "3",
        "created_at": created,
        "window": {
            "start": "2026-02-23T06:00:00+00:00",
            "end": "2026-03-02T06:00:00+00:00",
            "source": "prediction log",
        },
        "rows": 812,
        "labelled_rows": 0,
        "reference": "training sample of version 3, 2000 rows",
        "floors": {"drift_share": 0.2, "recall": 0.5, "precision": 0.15},
        "drift_detected": drift,
        "drift_share": 0.2 if drift else 0.0,
        "drifted_columns": {"age": 0.64} if drift else {},
        "column_drift": {
            "age": {
                "score": 0.64 if drift else 0.01,
                "threshold": 0.1,
                "method": "wasserstein",
                "drifted": drift,
            }
        },
        "failed_tests": ["Share of Drifted Columns: Less 0.200"] if drift else [],
        "recall": None,
        "precision": None,
        "quality_note": "0 rows with outcomes",
        "retrain": {
            "recommended": drift,
            "causes": ["data drift"] if drift else [],
            "triggered": drift,
            "blocked_by": None,
            "flow_run": {"name": "brave-otter"} if drift else {},
        },
    }


def test_header_names_version_window_drifted_columns_and_decision():
    """It names the model version, the data window, each drifted column's score and the decision."""
    html = index.monitor_header(summary())
    for text in (
        "stroke model version 3",
        "2026-02-23T06:00:00+00:00 to 2026-03-02T06:00:00+00:00",
        "prediction log",
        "age",
        "0.640",
        "DRIFT DETECTED",
        "retrain triggered (brave-otter)",
    ):
        assert text in html


def test_header_escapes_html_in_values():
    """It escapes values, so a file name cannot inject markup into the report."""
    bad = summary()
    bad["window"]["source"] = "file <script>x</script>.csv"
    assert "<script>x" not in index.monitor_header(bad)


def test_index_lists_reports_newest_first_with_relative_links(tmp_path):
    """It lists every report, newest first, linking to report.html relative to the index."""
    for stamp, created in (
        ("20260301T060000Z", "2026-03-01T06:00:00+00:00"),
        ("20260302T060000Z", "2026-03-02T06:00:00+00:00"),
    ):
        directory = tmp_path / "stroke" / stamp
        directory.mkdir(parents=True)
        index.write_summary(directory, summary(created=created, drift=stamp.startswith("20260302")))
    html = index.write_index(tmp_path).read_text()
    newer, older = (
        html.index("stroke/20260302T060000Z/report.html"),
        html.index("stroke/20260301T060000Z/report.html"),
    )
    assert newer < older
    assert "http" not in html


def test_index_skips_an_unreadable_summary(tmp_path):
    """It leaves out a damaged summary instead of failing."""
    broken = tmp_path / "stroke" / "20260301T060000Z"
    broken.mkdir(parents=True)
    (broken / "summary.json").write_text("{not json")
    assert index.read_summaries(tmp_path) == []


def test_report_dirs_never_collide(tmp_path):
    """It gives two reports made in the same second two directories."""
    now = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
    first, second = (
        store.new_report_dir(tmp_path, "stroke", now),
        store.new_report_dir(tmp_path, "stroke", now),
    )
    assert first.name == "20260302T060000Z" and second.name == "20260302T060000Z-1"


def test_summary_round_trips_as_json(tmp_path):
    """It writes summary.json as plain JSON that reads back equal."""
    path = index.write_summary(tmp_path, summary())
    assert json.loads(path.read_text())["drifted_columns"] == {"age": 0.64}


def test_retrain_header_shows_the_gates_intervals_and_p_value():
    """The comparison header lists each estimate with its Wilson interval and McNemar's p-value."""
    from clinrisk.gate import wilson

    metrics = {"recall": 0.8, "precision": 0.165, "pr_auc": 0.28, "roc_auc": 0.85}
    retrain = {
        "kind": "retrain",
        "model": "stroke",
        "model_version": "4",
        "champion_version": "3",
        "window": {"source": "store snapshot"},
        "rows": 1022,
        "reason": "scheduled",
        "challenger_metrics": metrics,
        "champion_metrics": metrics,
        "promoted": True,
        "reasons": ["no significant difference: the newer data wins"],
        "gate": {
            "intervals": {
                "challenger.precision": wilson(40, 242).to_dict(),
                "champion.recall": wilson(38, 50).to_dict(),
            },
            "p_value": 0.6875,
            "positives": 50,
            "rows": 1022,
        },
    }
    html = index.retrain_header(retrain)
    assert "0.165 [0.124, 0.217] (40/242)" in html and "0.760 [0.626, 0.857] (38/50)" in html
    assert "McNemar exact p" in html and "0.688" in html and "95% Wilson interval" in html
    monitor = {**summary(drift=False), "recall": 0.9, "precision": 0.1, "labelled_rows": 49}
    monitor["quality"] = {"recall": wilson(44, 49).to_dict(), "precision": wilson(44, 454).to_dict()}
    assert "0.097 [0.073, 0.128] (44/454)" in index.monitor_header(monitor)
