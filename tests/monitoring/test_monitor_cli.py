"""`clinrisk monitor`: one run on a file, no Prefect server, a JSON line and an offline report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from clinrisk import registry
from clinrisk.cli import main
from clinrisk.settings import load_settings


def run_monitor(*args: str):
    return CliRunner().invoke(main, ["monitor", *args])


def last_json(result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_drifted_file_is_reported_as_drift(monitor_env, drifted_sample, tmp_path):
    """It says a drifted file drifted, names the columns, and prints quality and the report path."""
    drifted_sample.to_csv(tmp_path / "drifted.csv", index=False)
    result = run_monitor("--current", str(tmp_path / "drifted.csv"))
    assert result.exit_code == 0, result.output
    assert "DRIFT DETECTED in age, avg_glucose_level" in result.stderr
    payload = last_json(result)
    assert payload["drift_detected"] is True and payload["retrain_recommended"] is True
    assert set(payload["drifted_columns"]) == {"age", "avg_glucose_level"}
    assert any("Drifted Columns" in t for t in payload["failed_tests"])
    assert 0 <= payload["recall"] <= 1 and 0 <= payload["precision"] <= 1


def test_the_report_names_version_and_window_and_is_listed(monitor_env, drifted_sample, tmp_path):
    """It writes the report, summary and index under the reports dir, and logs them to MLflow."""
    drifted_sample.to_parquet(tmp_path / "drifted.parquet")
    payload = last_json(run_monitor("--current", str(tmp_path / "drifted.parquet")))
    version = registry.alias_version(monitor_env, "stroke", "champion")
    report = tmp_path / "reports" / "stroke"
    html = Path(payload["report"])
    assert html.parent.parent == report and html.name == "report.html"
    text = html.read_text(encoding="utf-8")
    assert f"stroke model version {version}" in text and "drifted.parquet" in text
    assert 'data-slice="sex"' in text and 'data-slice="age band"' in text  # outcomes arrived: slices shown
    assert html.parent.name in (tmp_path / "reports" / "index.html").read_text()
    run_id = registry.version_run_id(monitor_env, "stroke", version)
    logged = registry.client(monitor_env).list_artifacts(run_id, f"monitor/{html.parent.name}")
    assert {a.path.rsplit("/", 1)[-1] for a in logged} == {"report.html", "report.json", "summary.json"}


def test_a_file_with_a_missing_column_fails_naming_it(monitor_env, drifted_sample, tmp_path):
    """It exits 2 naming the missing column, and writes no report."""
    drifted_sample.drop(columns=["bmi"]).to_csv(tmp_path / "bad.csv", index=False)
    result = run_monitor("--current", str(tmp_path / "bad.csv"))
    assert result.exit_code == 2
    assert "bmi" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "reports" / "stroke").exists()


@pytest.mark.parametrize(
    ("sample", "drifted"), [("undrifted_sample", set()), ("drifted_sample", {"age", "avg_glucose_level"})]
)
def test_a_reference_file_works_without_a_champion(
    request, raw_stroke, tmp_path, monkeypatch, sample, drifted
):
    """With no registry at all, it compares the file with the reference file: drift only when there is."""
    home = tmp_path / "empty-home"
    monkeypatch.setenv("CLINRISK_HOME", str(home))
    request.getfixturevalue(sample).to_csv(tmp_path / "current.csv", index=False)
    raw_stroke.sample(2000, random_state=3).to_csv(tmp_path / "reference.csv", index=False)
    result = run_monitor(
        "--current",
        str(tmp_path / "current.csv"),
        "--reference",
        str(tmp_path / "reference.csv"),
        "--out",
        str(tmp_path / "out"),
    )
    assert result.exit_code == 0, result.output
    payload = last_json(result)
    assert payload["drift_detected"] is bool(drifted)
    assert set(payload["drifted_columns"]) == drifted
    assert payload["model_version"] == "unknown" and "recall" not in payload
    report = Path(payload["report"])
    assert report.is_relative_to(tmp_path / "out") and report.is_file()
    summary = json.loads((report.parent / "summary.json").read_text())
    assert "reference.csv" in summary["reference"] and summary["rows"] == len(request.getfixturevalue(sample))
    settings = load_settings()
    assert settings.home == home and registry.alias_version(settings, "stroke", "champion") is None


def test_a_window_without_any_bmi_is_reported_and_flagged(monitor_env, undrifted_sample, tmp_path):
    """Clients that stop sending bmi get a report saying bmi is 100 % missing and flagged, not a crash."""
    current = undrifted_sample.copy()
    current["bmi"] = float("nan")
    current.to_csv(tmp_path / "no-bmi.csv", index=False)
    result = run_monitor("--current", str(tmp_path / "no-bmi.csv"))
    assert result.exit_code == 0, result.output
    html = Path(last_json(result)["report"])
    summary = json.loads((html.parent / "summary.json").read_text())
    assert summary["flagged_columns"] == ["bmi"] and "bmi" not in summary["column_drift"]
    assert summary["column_health"]["bmi"]["drift"] == "not computable: no value in the current window"
    assert "bmi: 100% missing" in html.read_text(encoding="utf-8")
