"""The labelled store: seed, batches whole or not at all, duplicates, conflicts, feedback, the CLI."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime

import pandas as pd
import pytest

from clinrisk import database, labelled, predlog, snapshots
from clinrisk.errors import DataValidationError
from clinrisk.settings import load_settings
from store.conftest import write_batch
from support import PATIENT, RAW_STROKE, VENV_BIN


def store_state(engine, name="stroke") -> tuple[int, int]:
    """Rows and batches of a model: what must not change when a batch is refused."""
    from sqlalchemy import func, select

    with engine.connect() as conn:
        batches = conn.execute(
            select(func.count()).select_from(labelled.batches).where(labelled.batches.c.model_name == name)
        ).scalar_one()
    return labelled.count_rows(engine, name), batches


def test_seed_file_is_loaded_once(settings, engine, stroke_spec):
    """The spec's raw file is loaded the first time, and never again."""
    assert store_state(engine) == (5110, 1)
    assert labelled.ensure_seed(engine, stroke_spec, RAW_STROKE) is False
    assert store_state(engine) == (5110, 1)


def test_seed_file_with_another_checksum_is_refused(settings, stroke_spec, tmp_path):
    """A changed raw file is not loaded: its sha256 must be the spec's."""
    changed = tmp_path / "raw.csv"
    changed.write_text(RAW_STROKE.read_text().replace("Male,67", "Male,68", 1))
    engine = database.connect(settings.prediction_log_url)
    with pytest.raises(DataValidationError, match="sha256"):
        labelled.ensure_seed(engine, stroke_spec, changed)
    assert labelled.count_rows(engine, "stroke") == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_batch_is_added_whole(engine, stroke_spec, new_patients, tmp_path, suffix):
    """A valid CSV or Parquet batch adds every row, tagged with its file name."""
    result = labelled.add_batch(engine, stroke_spec, write_batch(new_patients, tmp_path / f"lab{suffix}"))
    assert (result.added, result.rows) == (40, 5150)
    rows = labelled.read_rows(engine, "stroke")
    assert (rows["source"] == f"batch:lab{suffix}").sum() == 40


def test_the_same_content_twice_is_refused_as_a_duplicate(engine, stroke_spec, new_patients, tmp_path):
    """A batch whose rows were added before (even as another format) is refused and adds nothing."""
    labelled.add_batch(engine, stroke_spec, write_batch(new_patients, tmp_path / "lab.csv"))
    before = store_state(engine)
    with pytest.raises(labelled.DuplicateBatchError, match="added before"):
        labelled.add_batch(engine, stroke_spec, write_batch(new_patients, tmp_path / "again.parquet"))
    assert store_state(engine) == before


def test_an_id_stored_with_another_outcome_is_an_error_naming_it(engine, stroke_spec, raw_stroke, tmp_path):
    """Known patients whose outcome differs from the stored one are named, and nothing is added."""
    flipped = raw_stroke.head(2).assign(stroke=lambda f: 1 - f["stroke"])
    before = store_state(engine)
    with pytest.raises(DataValidationError, match="different outcome: 9046, 51676"):
        labelled.add_batch(engine, stroke_spec, write_batch(flipped, tmp_path / "flip.csv"))
    assert store_state(engine) == before


def test_rows_already_stored_are_skipped(engine, stroke_spec, raw_stroke, new_patients, tmp_path):
    """A batch mixing known rows and new ones adds only the new ones."""
    mixed = pd.concat([raw_stroke.head(5), new_patients])
    result = labelled.add_batch(engine, stroke_spec, write_batch(mixed, tmp_path / "mixed.csv"))
    assert (result.added, result.skipped, result.rows) == (40, 5, 5150)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.assign(age=f["age"].where(f.index > 2, -3)), "column 'age': value below minimum 0"),
        (lambda f: f.drop(columns=["bmi"]), "missing column: bmi"),
        (
            lambda f: f.assign(stroke=f["stroke"].where(f.index != 7, 2)),
            "column 'stroke': target must be binary",
        ),
        (
            lambda f: f.assign(gender=f["gender"].where(f.index != 4, "Robot")),
            "column 'gender': unknown category",
        ),
        (lambda f: f.assign(id=f["id"].where(f.index != 1, f["id"][0])), "column 'id': duplicate id"),
        (lambda f: f.head(0), "no data rows"),
    ],
)
def test_a_bad_batch_is_rejected_whole(engine, stroke_spec, new_patients, tmp_path, change, message):
    """A batch with any bad row is refused with the training file's message; the store is unchanged."""
    before = store_state(engine)
    with pytest.raises(DataValidationError) as raised:
        labelled.add_batch(engine, stroke_spec, write_batch(change(new_patients), tmp_path / "bad.csv"))
    assert message in str(raised.value)
    assert store_state(engine) == before


def test_a_batch_of_one_class_is_accepted(engine, stroke_spec, new_patients, tmp_path):
    """New labels may all be negative: only a training set needs both classes."""
    negatives = new_patients[new_patients.stroke == 0]
    assert labelled.add_batch(engine, stroke_spec, write_batch(negatives, tmp_path / "neg.csv")).added == 37


def log_prediction(engine, outcome: int | None, model_name: str = "stroke") -> str:
    """One logged prediction of PATIENT, and its outcome if given."""
    prediction_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    predlog.write_predictions(
        engine,
        [
            {
                "prediction_id": prediction_id,
                "created_at": now,
                "model_name": model_name,
                "model_version": "1",
                "features": PATIENT,
                "probability": 0.7,
                "prediction": 1,
            }
        ],
    )
    if outcome is not None:
        predlog.write_feedback(
            engine, [{"prediction_id": prediction_id, "outcome": outcome, "received_at": now}]
        )
    return prediction_id


def test_feedback_becomes_labelled_rows_with_the_logged_features(engine, stroke_spec):
    """Outcomes posted for logged predictions become `feedback` rows once; others are left alone."""
    with_outcome = [log_prediction(engine, 1), log_prediction(engine, 0)]
    log_prediction(engine, None)
    log_prediction(engine, 1, model_name="diabetes")
    assert labelled.import_feedback(engine, stroke_spec) == 2
    assert labelled.import_feedback(engine, stroke_spec) == 0
    rows = labelled.read_rows(engine, "stroke")
    fed = rows[rows["source"] == "feedback"]
    assert sorted(fed["original_id"]) == sorted(with_outcome)
    assert all(f == PATIENT for f in fed["features"])


def test_snapshot_digest_depends_on_content_only(settings, engine, stroke_spec, new_patients, tmp_path):
    """The digest changes when rows are added and names the same rows the same way."""
    first = snapshots.take(settings, stroke_spec)
    assert first.digest == snapshots.take(settings, stroke_spec).digest
    labelled.add_batch(engine, stroke_spec, write_batch(new_patients, tmp_path / "lab.csv"))
    second = snapshots.take(settings, stroke_spec)
    assert second.digest != first.digest
    assert second.summary() == {
        "rows": 5150,
        "positives": 252,
        "by_source": {"batch:lab.csv": 40, "seed": 5110},
        "snapshot": second.digest,
    }


@pytest.mark.parametrize("ids", [[1, 2, 3, 7, 9, 10, 11], [5], [], list(range(1, 5111))])
def test_members_round_trip_as_ranges(ids):
    """Row ids survive their compact tag form."""
    assert snapshots.decode_members(snapshots.encode_members(ids)) == set(ids)


def test_evaluation_rows_are_the_newest_the_champion_never_saw(
    settings, engine, stroke_spec, new_patients, tmp_path
):
    """With a champion's members known, only rows outside them are scored, newest first, capped."""
    seed = snapshots.take(settings, stroke_spec)
    labelled.add_batch(engine, stroke_spec, write_batch(new_patients, tmp_path / "lab.csv"))
    after = snapshots.take(settings, stroke_spec)
    plan = snapshots.plan_evaluation(after, stroke_spec, set(seed.row_ids))
    assert len(plan.evaluation) == 40 and set(plan.evaluation[snapshots.SOURCE]) == {"batch:lab.csv"}
    assert len(plan.train) == 5110
    first = snapshots.plan_evaluation(after, stroke_spec, None)
    assert first.evaluation is None and "stratified holdout" in first.rule


def clinrisk(env, *args):
    return subprocess.run(
        [str(VENV_BIN / "clinrisk"), *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_adds_refuses_and_reports(tmp_path, new_patients, monkeypatch):
    """`clinrisk data add` prints added/batch/rows; a bad or repeated file exits non-zero; status sums up."""
    import os

    env = {**os.environ, "CLINRISK_HOME": str(tmp_path / "home")}
    path = write_batch(new_patients, tmp_path / "lab.csv")
    added = clinrisk(env, "data", "add", str(path))
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout.splitlines()[-1])["added"] == 40
    again = clinrisk(env, "data", "add", str(path))
    assert again.returncode == 1 and "added before" in again.stderr
    bad = clinrisk(
        env, "data", "add", str(write_batch(new_patients.drop(columns=["age"]), tmp_path / "b.csv"))
    )
    assert bad.returncode == 2 and "missing column: age" in bad.stderr and "Traceback" not in bad.stderr
    status = json.loads(clinrisk(env, "data", "status").stdout.splitlines()[-1])
    assert (status["rows"], status["positives"], status["by_source"]) == (
        5150,
        252,
        {"batch:lab.csv": 40, "seed": 5110},
    )


def test_cli_add_prints_its_human_line_on_stderr_before_the_json(tmp_path, new_patients):
    """As train and monitor do: stdout is the JSON line alone (for `| jq`); the human line is on
    stderr, written first, so a terminal showing both shows it above the JSON."""
    import os

    env = {**os.environ, "CLINRISK_HOME": str(tmp_path / "home")}
    path = write_batch(new_patients, tmp_path / "lab.csv")
    apart = clinrisk(env, "data", "add", str(path))
    assert apart.returncode == 0 and apart.stderr.splitlines() == ["stroke: 40 rows added from lab.csv"]
    assert json.loads(apart.stdout)["added"] == 40 and len(apart.stdout.splitlines()) == 1
    elsewhere = {**env, "CLINRISK_HOME": str(tmp_path / "other-home")}
    command = [str(VENV_BIN / "clinrisk"), "data", "add", str(path)]
    merged = subprocess.run(
        command, env=elsewhere, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert merged.stdout.splitlines()[0] == "stroke: 40 rows added from lab.csv"
    assert json.loads(merged.stdout.splitlines()[-1])["added"] == 40


def test_inbox_files_go_to_done_or_rejected_with_a_reason(settings, new_patients, tmp_path):
    """Each inbox file is added or refused whole and moved; refused ones get a reason file."""
    from clinrisk import inbox

    folder = inbox.inbox_dir(settings, "stroke")
    folder.mkdir(parents=True)
    write_batch(new_patients, folder / "good.csv")
    write_batch(new_patients.drop(columns=["bmi"]), folder / "bad.csv")
    (folder / "notes.txt").write_text("hello")
    results = {r.file: r for r in inbox.ingest(settings, "stroke")}
    assert results["good.csv"].status == "done" and results["good.csv"].added == 40
    assert results["bad.csv"].status == "rejected" and results["notes.txt"].status == "rejected"
    assert (folder / "done" / "good.csv").is_file()
    assert "missing column: bmi" in (folder / "rejected" / "bad.csv.reason.txt").read_text()
    assert not list(folder.glob("*.csv"))
    assert inbox.ingest(settings, "stroke") == []


def test_every_model_gets_an_inbox_folder_from_the_start(tmp_path):
    """`make up` creates inbox/<model>/ for each spec, so a lab can drop a file before any ingest."""
    from clinrisk.inbox import create_inboxes

    specs = tmp_path / "specs"
    specs.mkdir()
    for name in ("stroke", "kidney", "not a model"):
        (specs / f"{name}.yaml").write_text("name: x\n")
    settings = load_settings(home=tmp_path / "home", spec_dir=specs)
    created = create_inboxes(settings)
    assert sorted(p.name for p in created) == ["kidney", "stroke"] and all(p.is_dir() for p in created)
    assert create_inboxes(settings) == created  # a restart keeps them
