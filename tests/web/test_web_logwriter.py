"""The prediction-log writer and the local champion cache."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from web_fakes import signed_bundle, web_settings
from web_support import PATIENT, rows_in

from clinrisk import predlog, signing
from clinrisk.serving import cache
from clinrisk.serving.logwriter import PredictionLogWriter


def rows(count: int, version: str = "1") -> list[dict]:
    now = datetime.now(UTC)
    return [
        {
            "prediction_id": str(uuid.uuid4()),
            "created_at": now,
            "model_name": "stroke",
            "model_version": version,
            "features": PATIENT,
            "probability": 0.5,
            "prediction": 1,
        }
        for _ in range(count)
    ]


def test_close_writes_everything_still_queued(tmp_path):
    """It loses nothing on a graceful shutdown: close() drains the queue into the database."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    writer = PredictionLogWriter(url, flush_seconds=60)  # nothing would be written before close
    writer.start()
    for _ in range(40):
        writer.submit(rows(25))
    writer.close()
    assert rows_in(predlog.connect(url), predlog.predictions) == 1000


def test_rows_are_written_in_batches_off_the_request_path(tmp_path):
    """It writes queued rows from its own thread, within a flush interval."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    writer = PredictionLogWriter(url, flush_seconds=0.05, batch_rows=100)
    writer.start()
    writer.submit(rows(250))
    assert writer.flush(timeout=10)
    assert rows_in(writer.engine, predlog.predictions) == 250
    writer.close()


@pytest.mark.parametrize("with_journal", [False, True])
def test_single_row_requests_share_one_transaction_per_interval(tmp_path, monkeypatch, with_journal):
    """Rows queued one request at a time are inserted together, not a transaction (and segment) each."""
    batches: list[int] = []
    write = predlog.write_predictions

    def recorded(engine, pending):
        batches.append(len(pending))
        return write(engine, pending)

    monkeypatch.setattr(predlog, "write_predictions", recorded)
    journal = tmp_path / "journal" if with_journal else None
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'log.db'}", flush_seconds=3600, journal_dir=journal)
    writer.start()
    for _ in range(30):
        writer.submit(rows(1))
        time.sleep(0.005)  # requests arrive apart: the writer thread could run between them
    assert writer.flush(timeout=20)  # flush() cuts the hour-long interval short
    assert batches == [30] and rows_in(writer.engine, predlog.predictions) == 30
    writer.close()


def test_rows_wait_for_an_unavailable_database(tmp_path):
    """It keeps rows it could not write and writes them once the database is reachable."""
    blocked = tmp_path / "not-yet"
    blocked.write_text("a file where the database directory should be")
    url = f"sqlite:///{blocked / 'log.db'}"
    writer = PredictionLogWriter(url, flush_seconds=0.05)
    writer.start()
    writer.submit(rows(5))
    assert not writer.flush(timeout=0.5)
    blocked.unlink()
    assert writer.flush(timeout=20)
    assert rows_in(writer.engine, predlog.predictions) == 5
    writer.close()


def test_feedback_is_stored_only_for_logged_predictions(tmp_path):
    """It records an outcome for a logged prediction, including one still queued, and refuses others."""
    writer = PredictionLogWriter(f"sqlite:///{tmp_path / 'log.db'}", flush_seconds=60)
    writer.start()
    queued = rows(1)
    writer.submit(queued)
    receipt = writer.record_feedback(queued[0]["prediction_id"], 0)
    assert receipt["outcome"] == 0
    assert writer.record_feedback(str(uuid.uuid4()), 1) is None
    assert rows_in(writer.engine, predlog.feedback) == 1
    writer.close()


def test_cache_round_trip_keeps_version_threshold_and_predictions(tmp_path, logistic_model):
    """It restores the cached champion with its version, threshold and behaviour."""
    settings = web_settings(tmp_path / "home")
    directory = tmp_path / "serving-cache" / "stroke"
    cache.save(directory, signed_bundle(logistic_model, settings, "9"))
    restored = cache.load(directory, signing.load_key(settings), "stroke")
    assert restored.info["version"] == "9" and restored.threshold == logistic_model.threshold
    frame = __import__("pandas").DataFrame([PATIENT])
    assert restored.predict_proba(frame) == pytest.approx(logistic_model.predict_proba(frame), abs=1e-5)


def test_a_corrupt_cache_counts_as_no_cache(tmp_path, logistic_model):
    """It treats an unreadable or unsigned cache as no cache instead of failing."""
    settings = web_settings(tmp_path / "home")
    key = signing.ensure_key(settings)
    directory = tmp_path / "serving-cache" / "stroke"
    cache.save(directory, signed_bundle(logistic_model, settings, "9"))
    (directory / "scorer.json").write_bytes(b"not json")
    assert cache.load(directory, key, "stroke") is None
    assert cache.load(tmp_path / "empty", key, "stroke") is None
