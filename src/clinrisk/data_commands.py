"""`clinrisk data add` and `clinrisk data status`: the labelled store from the command line."""

from __future__ import annotations

from pathlib import Path

import click

from clinrisk.cli import emit_json
from clinrisk.settings import load_settings

model_option = click.option("--model", "model_name", default=None, help="Model spec name (default: stroke).")


def _open_store(model_name: str | None):
    """Settings, spec and a migrated engine, with the seed file loaded on first use."""
    from clinrisk import database, labelled, snapshots
    from clinrisk.spec import load_spec

    settings = load_settings()
    spec = load_spec(settings.spec_path_for(model_name or settings.model_name))
    engine = database.connect(settings.prediction_log_url)
    labelled.ensure_seed(engine, spec, snapshots.seed_path(spec))
    return settings, spec, engine


@click.group()
def data() -> None:
    """Add labelled batches to a model's store and show what the next training would use."""


@data.command()
@click.argument("path", type=click.Path(path_type=Path))
@model_option
def add(path: Path, model_name: str | None) -> None:
    """Add a labelled CSV or Parquet file whole; a bad, duplicate or conflicting file adds nothing."""
    from clinrisk import labelled

    _, spec, engine = _open_store(model_name)
    try:
        result = labelled.add_batch(engine, spec, path)
    finally:
        engine.dispose()
    skipped = f", {result.skipped} already stored" if result.skipped else ""
    click.echo(f"{spec.name}: {result.added} rows added from {Path(path).name}{skipped}", err=True)
    emit_json({"added": result.added, "batch": result.batch, "rows": result.rows})


@data.command()
@model_option
def status(model_name: str | None) -> None:
    """Rows, positives and rows by source in the store, and the digest of the next snapshot."""
    from clinrisk import snapshots

    settings, spec, engine = _open_store(model_name)
    engine.dispose()
    emit_json({"model": spec.name, **snapshots.take(settings, spec).summary()})
