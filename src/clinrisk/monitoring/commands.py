"""`clinrisk monitor`: the monitoring checks once, on a file, with no Prefect server."""

from __future__ import annotations

from pathlib import Path

import click

from clinrisk.cli import emit_json, path_option
from clinrisk.settings import load_settings


@click.command()
@path_option(
    "--current", "current_path", required=True, help="CSV or Parquet file of recent rows (outcome optional)."
)
@path_option(
    "--reference",
    "reference_path",
    default=None,
    help="Reference file (default: the champion's recorded training sample).",
)
@path_option("--out", "out_dir", default=None, help="Reports directory (default: CLINRISK_REPORTS_DIR).")
@click.option("--model", "model_name", default=None, help="Model spec name (default: stroke).")
@click.option(
    "--min-rows",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="Fewest current rows worth judging.",
)
def monitor(
    current_path: Path,
    reference_path: Path | None,
    out_dir: Path | None,
    model_name: str | None,
    min_rows: int,
) -> None:
    """Check drift and quality of CURRENT against the reference; write an offline HTML report.

    Prints a JSON line with drift_detected, failed_tests, report and (with outcomes) recall and
    precision. It never starts a retrain: `retrain_recommended` says whether the flow would.
    """
    from clinrisk import outputs
    from clinrisk.monitoring.monitor import cli_result, run_once

    settings = load_settings()
    name = model_name or settings.model_name
    out_dir = outputs.make_folder(out_dir or settings.reports_dir)  # fail before the slow checks
    summary = run_once(settings, name, current_path, reference_path, out_dir, min_rows)
    verdict = (
        "DRIFT DETECTED in " + ", ".join(summary["drifted_columns"])
        if summary["drift_detected"]
        else "no drift"
    )
    click.echo(f"{name} version {summary['model_version']}: {verdict}; report: {summary['report']}", err=True)
    emit_json(cli_result(summary))
