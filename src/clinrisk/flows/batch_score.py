"""The `batch-score` flow: score a CSV or Parquet file with the champion (as `clinrisk predict` does)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from prefect import flow

from clinrisk.flows import summaries, tasks
from clinrisk.settings import load_settings
from clinrisk.threads import limited


def default_output(input_path: str) -> str:
    """`<input>.scored.<ext>` next to the input."""
    path = Path(input_path)
    return str(path.with_name(f"{path.stem}.scored{path.suffix}"))


@flow(name="batch-score", log_prints=True)
def batch_score(
    input_path: str,
    output_path: str | None = None,
    model_name: str | None = None,
    skip_invalid: bool = False,
    chunk_rows: int = 50_000,
) -> dict:
    """Add probability, prediction and model_version to every row; invalid rows fail or go to rejects."""
    settings = load_settings()
    name = model_name or settings.model_name
    champion = tasks.load_served_champion(settings, name)
    with limited(settings.threads):
        report = tasks.score_file(
            champion,
            champion.info["version"],
            input_path,
            output_path or default_output(input_path),
            chunk_rows=chunk_rows,
            skip_invalid=skip_invalid,
            progress=False,
        )
    result = asdict(report)
    tasks.publish_artifact("batch-score", name, summaries.batch_markdown(result, input_path))
    return result
