"""The `ingest` flow: add the labelled batch files waiting in a model's inbox folder to its store."""

from __future__ import annotations

from dataclasses import asdict

from prefect import flow

from clinrisk.flows import summaries, tasks
from clinrisk.settings import load_settings


@flow(name="ingest", log_prints=True)
def ingest(model_name: str | None = None) -> list[dict]:
    """Each file in `CLINRISK_HOME/inbox/<model>/` goes to the store whole, then to done/ or rejected/."""
    settings = load_settings()
    name = model_name or settings.model_name
    results = [asdict(r) for r in tasks.ingest_folder(settings, name)]
    if results:
        tasks.publish_artifact("ingest", name, summaries.ingest_markdown(name, results))
    return results
