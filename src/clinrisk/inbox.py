"""The inbox: labelled batch files a lab drops into `CLINRISK_HOME/inbox/<model>/`.

Each file is added to the labelled store whole (`labelled.add_batch`), then moved to `done/`,
or to `rejected/` with `<file>.reason.txt` saying why (bad rows, duplicate content, conflicting
ids). Files are taken oldest first; names starting with `.` (partial copies) are left alone.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from clinrisk import database, labelled, snapshots
from clinrisk.errors import ClinriskError
from clinrisk.settings import Settings
from clinrisk.spec import load_spec

log = logging.getLogger(__name__)
ACCEPTED_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Ingested:
    """One inbox file and what became of it: `done` (rows added) or `rejected` (reason)."""

    file: str
    status: str
    added: int = 0
    reason: str = ""


def inbox_dir(settings: Settings, model_name: str) -> Path:
    return settings.home / "inbox" / model_name


def create_inboxes(settings: Settings) -> list[Path]:
    """An inbox folder for every model with a spec, so that a lab can drop files from the start."""
    from clinrisk.flows.deployments import model_names

    folders = [inbox_dir(settings, name) for name in model_names(settings.spec_dir)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def waiting_files(folder: Path) -> list[Path]:
    """Batch files waiting in a model's inbox, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: (p.stat().st_mtime, p.name))


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():  # a file of the same name came before: keep both
        target = folder / f"{path.stem}-{int(path.stat().st_mtime_ns)}{path.suffix}"
    return Path(shutil.move(str(path), target))


def ingest_file(engine, spec, path: Path) -> Ingested:
    """Add one file to the store and file it under done/ or rejected/ (with a reason file)."""
    folder = path.parent
    try:
        if path.suffix.lower() not in ACCEPTED_SUFFIXES:
            raise ClinriskError(f"{path.name}: not a CSV or Parquet file ({', '.join(ACCEPTED_SUFFIXES)})")
        result = labelled.add_batch(engine, spec, path)
    except ClinriskError as exc:
        moved = _move(path, folder / "rejected")
        moved.with_name(moved.name + ".reason.txt").write_text(f"{exc}\n")
        log.warning("inbox file %s rejected: %s", path.name, exc)
        return Ingested(path.name, "rejected", reason=str(exc))
    _move(path, folder / "done")
    return Ingested(path.name, "done", added=result.added)


def ingest(settings: Settings, model_name: str) -> list[Ingested]:
    """Ingest every file waiting in the model's inbox; the seed file is loaded first if needed."""
    files = waiting_files(inbox_dir(settings, model_name))
    if not files:
        return []
    spec = load_spec(settings.spec_path_for(model_name))
    engine = database.connect(settings.prediction_log_url)
    try:
        labelled.ensure_seed(engine, spec, snapshots.seed_path(spec))
        return [ingest_file(engine, spec, path) for path in files]
    finally:
        engine.dispose()
