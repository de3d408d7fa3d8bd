"""Where a finished report goes: its own directory, the index, the Evidently workspace and MLflow.

Layout: `<reports_dir>/<model>/<UTC timestamp>/` holding `report.html`, `report.json` and
`summary.json`, with `<reports_dir>/index.html` listing them all.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from clinrisk import outputs, registry
from clinrisk.monitoring import index
from clinrisk.settings import Settings


def new_report_dir(reports_dir: Path, model_name: str, now: datetime) -> Path:
    """A fresh directory named after the UTC time (suffixed when two reports share a second)."""
    parent = outputs.make_folder(Path(reports_dir) / model_name)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    for attempt in range(1000):
        candidate = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise outputs.cannot_write(candidate, exc.strerror or str(exc)) from None
    raise FileExistsError(f"too many reports named {stamp} in {parent}")


def publish(
    reports_dir: Path, workspace: Path | None, snapshot, summary: dict[str, Any], now: datetime
) -> Path:
    """Save a report with its header and summary, add it to the workspace, refresh the index.

    Returns the path of the report's HTML.
    """
    from clinrisk.monitoring import reports  # Evidently loads slowly: only when a report is saved

    directory = new_report_dir(reports_dir, summary["model"], now)
    html, _ = reports.save(snapshot, directory, index.header_for(summary))
    if workspace is not None:
        project = f"clinrisk-{summary['model']}"
        summary["evidently_snapshot"] = reports.add_to_workspace(
            workspace, project, snapshot, "clinrisk reports"
        )
    summary["report"] = str(html)
    index.write_summary(directory, summary)
    index.write_index(Path(reports_dir))
    return html


def record_decision(report_html: Path, summary: dict[str, Any], outcome: dict[str, Any]) -> dict[str, Any]:
    """Add what happened to the retrain the report recommends: header, summary.json and index.

    The report is saved before the retrain is started (that call can fail), so its decision is
    completed afterwards, in place. Returns the updated summary.
    """
    html_path = Path(report_html)
    old_header = index.header_for(summary)
    summary["retrain"] = {**summary["retrain"], **outcome}
    html = html_path.read_text(encoding="utf-8").replace(old_header, index.header_for(summary), 1)
    _replace_text(html_path, html)
    index.write_summary(html_path.parent, summary)
    index.write_index(html_path.parent.parent.parent)
    return summary


def record_skipped(reports_dir: Path, skipped: dict[str, Any], now: datetime) -> Path:
    """List a skipped monitoring run in the index (a summary.json with no report beside it).

    `skipped` holds `model`, `model_version`, `window`, `rows` and `reason`.
    """
    directory = new_report_dir(reports_dir, skipped["model"], now)
    summary = {"kind": index.SKIPPED, "created_at": now.isoformat(timespec="seconds"), **skipped}
    path = index.write_summary(directory, summary)
    index.write_index(Path(reports_dir))
    return path


def _replace_text(path: Path, text: str) -> None:
    """Write a file whole: readers see the old or the new text, never half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def record_in_registry(
    settings: Settings, model_name: str, version: str, report_html: Path, summary: dict
) -> None:
    """Attach the report files to the run of the model version they describe, and tag the version."""
    directory = Path(report_html).parent
    run_id = registry.version_run_id(settings, model_name, version)
    registry.log_run_artifacts(settings, run_id, directory, f"{summary['kind']}/{directory.name}")
    if summary["kind"] == "monitor":
        registry.set_version_tags(
            settings,
            model_name,
            version,
            {
                "monitor.last_report": directory.name,
                "monitor.drift_detected": str(summary["drift_detected"]).lower(),
            },
        )
