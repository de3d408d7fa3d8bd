"""The `clinrisk` CLI end to end: train, predict, models, promote, rollback, bad input."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from clinrisk import registry
from support import RAW_STROKE, REPO


def test_train_prints_a_json_summary_and_promotes_the_first_model(run):
    """Its last line names the run, version, threshold, holdout metrics and the gate decision."""
    code, _, summary = run("train")
    assert code == 0
    assert {"run_id", "model", "version", "threshold", "metrics", "promoted", "reasons"} <= set(summary)
    assert {"recall", "precision", "roc_auc", "pr_auc"} <= set(summary["metrics"])
    assert summary["promoted"] is True and summary["version"] == "1"
    assert summary["data"] == {
        "rows": 5110,
        "positives": 249,
        "by_source": {"seed": 5110},
        "snapshot": summary["data"]["snapshot"],
    }
    assert summary["report"].endswith("report.html")


def test_train_on_the_snapshot_the_champion_saw_registers_nothing(run):
    """A second training on an unchanged store is skipped with exit 0, and names the champion."""
    run("train")
    code, _, summary = run("train")
    assert code == 0
    assert summary["skipped"] == "no new labelled data since version 1" and summary["version"] is None
    assert run("models", "--model", "stroke", "--json")[2]["versions"][-1]["version"] == "1"


def test_predict_scores_the_full_real_file(run, tmp_path):
    """It scores all 5,110 rows with probability, prediction and model_version columns."""
    run("train")
    code, _, report = run(
        "predict", "--input", str(RAW_STROKE), "--output", str(tmp_path / "out.csv"), "--chunk-rows", "1000"
    )
    assert code == 0 and report["rows_scored"] == 5110
    assert report["scoring_path"] == "numpy"  # the bundle's lean scorer, verified at registration
    scored = pd.read_csv(tmp_path / "out.csv")
    assert len(scored) == 5110
    assert scored["probability"].between(0, 1).all()
    assert set(scored["prediction"]) == {0, 1}
    assert (scored["model_version"] == 1).all()


def test_predict_fails_on_an_invalid_row_and_writes_nothing(run, tmp_path, raw_stroke):
    """An unknown category stops scoring with the column and line named, and no output file."""
    run("train")
    bad = raw_stroke.copy()
    bad.loc[4000, "smoking_status"] = "vapes"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    code, output, _ = run(
        "predict",
        "--input",
        str(tmp_path / "bad.csv"),
        "--output",
        str(tmp_path / "o.csv"),
        "--chunk-rows",
        "1000",
    )
    assert code == 2
    assert "smoking_status" in output and "4002" in output
    assert not (tmp_path / "o.csv").exists()
    code, _, report = run(
        "predict", "--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "o.csv"), "--skip-invalid"
    )
    assert code == 0 and report["rows_scored"] == 5109 and report["rows_rejected"] == 1
    rejects = pd.read_csv(report["rejects"])
    assert rejects["reason"].str.contains("smoking_status").all()


@pytest.mark.parametrize("column", ["age", "stroke"])
def test_train_on_bad_data_exits_non_zero_and_logs_nothing(run, tmp_path, raw_stroke, fast_settings, column):
    """Invalid training data exits 2 naming the column, with no run and no version registered."""
    bad = raw_stroke.copy()
    bad[column] = bad[column].astype(object)
    bad.loc[10, column] = "seven"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    code, output, _ = run("train", "--data", str(tmp_path / "bad.csv"))
    assert code == 2 and column in output and "Traceback" not in output
    assert registry.alias_version(fast_settings, "stroke", "challenger") is None
    assert registry.client(fast_settings).search_experiments(filter_string="name LIKE 'clinrisk-%'") == []


def test_predict_without_a_champion_is_a_clear_error(run, tmp_path):
    """Scoring before any training says to train first."""
    code, output, _ = run("predict", "--input", str(RAW_STROKE), "--output", str(tmp_path / "o.csv"))
    assert code == 1 and "clinrisk train" in output


def test_models_promote_and_rollback(run):
    """Manual promotion moves the alias, rollback returns it, and models lists both versions."""
    run("train")
    run("train", "--data", str(RAW_STROKE), "--seed", "5")
    code, _, listing = run("models", "--model", "stroke", "--json")
    assert [v["version"] for v in listing["versions"]] == ["1", "2"]
    assert all("[" in v["gate_precision"] and "[" in v["gate_recall"] for v in listing["versions"])
    assert listing["versions"][0]["gate_p_value"] == "none"  # the first model had nobody to compare with
    assert float(listing["versions"][1]["gate_p_value"]) <= 1
    code, table, _ = run("models", "--model", "stroke")
    assert code == 0 and "gate: precision" in table and "McNemar p" in table
    champion = next(v["version"] for v in listing["versions"] if "champion" in v["aliases"])
    other = "1" if champion == "2" else "2"
    assert run("promote", other)[2]["champion"] == other
    assert run("rollback")[2]["champion"] == champion
    code, output, _ = run("promote", "99")
    assert code == 1 and "99" in output


def test_train_without_any_bmi_exits_2_naming_it_and_registers_nothing(
    run, tmp_path, raw_stroke, fast_settings
):
    """Every bmi missing: no model that silently ignores bmi is trained or promoted."""
    frame = raw_stroke.copy()
    frame["bmi"] = float("nan")
    frame.to_csv(tmp_path / "no-bmi.csv", index=False)
    code, output, _ = run("train", "--data", str(tmp_path / "no-bmi.csv"))
    assert code == 2 and "feature 'bmi': no observed value" in output and "Traceback" not in output
    assert registry.alias_version(fast_settings, "stroke", "champion") is None


def test_a_mostly_missing_feature_trains_with_the_warning_on_the_run(
    run, tmp_path, raw_stroke, fast_settings
):
    """bmi missing in 60 % of rows: trained, and the warning is in the summary and on the MLflow run."""
    frame = raw_stroke.copy()
    frame.loc[frame.index[: int(len(frame) * 0.6)], "bmi"] = float("nan")
    frame.to_csv(tmp_path / "sparse-bmi.csv", index=False)
    share = f"{frame['bmi'].isna().mean():.0%}"  # 60 % plus the file's own missing bmi
    code, _, summary = run("train", "--data", str(tmp_path / "sparse-bmi.csv"))
    assert code == 0 and len(summary["data_warnings"]) == 1
    assert summary["data_warnings"][0].startswith(f"feature 'bmi' is missing in {share} of training rows")
    tags = registry.client(fast_settings).get_run(summary["run_id"]).data.tags
    assert tags["data_warnings"] == summary["data_warnings"][0]


def test_models_shows_a_rolled_back_version_as_rolled_back(run):
    """After a rollback the withdrawn version is neither challenger nor 'promoted' in `models`."""
    run("train")
    run("train", "--data", str(RAW_STROKE), "--seed", "5")  # the unchanged store would be skipped
    assert run("promote", "2")[0] == 0
    assert run("rollback")[2] == {
        "model": "stroke",
        "from_version": "2",
        "champion": "1",
        "reason": "manual rollback",
    }
    listing = {v["version"]: v for v in run("models", "--model", "stroke", "--json")[2]["versions"]}
    assert listing["2"]["aliases"] == [] and listing["2"]["gate"] == "rolled back"
    assert listing["1"]["aliases"] == ["champion"] and listing["1"]["gate"] == "promoted"
    code, table, _ = run("models", "--model", "stroke")
    assert code == 0 and any(line.split()[:2] == ["2", "rolled"] for line in table.splitlines())


def test_models_lists_every_spec_with_its_kind_objective_and_champion(run, fast_settings):
    """Without --model it lists each spec's model: the champion and the metrics its objective judges,
    'no champion yet' for an untrained one, and a spec that does not load without hiding the others."""
    progression = yaml.safe_load((REPO / "models" / "diabetes_progression.yaml").read_text())
    progression["data"]["path"] = str(REPO / progression["data"]["path"])
    (fast_settings.spec_dir / "diabetes_progression.yaml").write_text(yaml.safe_dump(progression))
    (fast_settings.spec_dir / "broken.yaml").write_text("name: broken\nfeatures: 3\n")
    run("train")
    code, _, listing = run("models", "--json")
    rows = {row["name"]: row for row in listing["models"]}
    assert code == 0 and list(rows) == ["broken", "diabetes_progression", "stroke"]
    assert rows["stroke"]["kind"] == "classification" and rows["stroke"]["champion"] == "1"
    assert set(rows["stroke"]["metrics"]) == {"recall", "precision"}
    assert 0 < rows["stroke"]["metrics"]["recall"] <= 1
    assert rows["diabetes_progression"]["kind"] == "regression"
    assert rows["diabetes_progression"]["objective"] == "R² >= 0.4 on unseen rows"
    assert rows["diabetes_progression"]["champion"] is None
    assert "broken" in rows["broken"]["error"]
    code, table, _ = run("models")
    lines = {line.split()[0]: line for line in table.splitlines() if line and line.split()[0] in rows}
    assert code == 0 and set(lines) == set(rows)
    assert "version 1 (recall 0." in lines["stroke"] and "max recall, precision >= " in lines["stroke"]
    assert lines["diabetes_progression"].endswith("no champion yet")
    assert "spec error" in lines["broken"]


@pytest.mark.parametrize("home_mode", [0o755, 0o775])
def test_state_the_cli_creates_is_the_owners_only(tmp_path, home_mode):
    """A command run in a new shell (umask 022) leaves CLINRISK_HOME 0700 and its database 0600,
    even when the directory was made readable by others before."""
    import os
    import stat
    import subprocess

    from support import VENV_BIN

    home = tmp_path / "home"
    home.mkdir()
    home.chmod(home_mode)
    env = {**os.environ, "CLINRISK_HOME": str(home), "PYTHONPATH": str(REPO / "src")}
    command = [str(VENV_BIN / "clinrisk"), "data", "status", "--model", "stroke"]
    result = subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$@"', "sh", *command], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [home, *home.iterdir()]}
    assert modes["home"] == 0o700 and modes["predictions.db"] == 0o600, modes
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
