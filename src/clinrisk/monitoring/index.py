"""Our own HTML: the header placed on top of each Evidently report, and `reports/index.html`.

Both are static pages with inline styles only, so they open offline from the file system. The
index is rebuilt from every report's `summary.json` (skipped runs included), so it never drifts
from the reports. The pages are Jinja templates in `templates/`, autoescaped.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any
from uuid import uuid4

from jinja2 import Environment, PackageLoader, select_autoescape

SUMMARY = "summary.json"
SKIPPED = "skipped"


@cache
def _templates() -> Environment:
    return Environment(
        loader=PackageLoader("clinrisk.monitoring", "templates"), autoescape=select_autoescape(["html"])
    )


def _render(name: str, **values: Any) -> str:
    return _templates().get_template(name).render(**values)


def window_text(window: dict[str, Any]) -> str:
    """The data window as one line: its time bounds and where the rows came from."""
    source = window.get("source", "unknown source")
    if not window.get("start") and not window.get("end"):
        return f"all rows of {source}"
    return f"{window.get('start') or '…'} to {window.get('end') or '…'} (UTC), from {source}"


def decision_text(retrain: dict[str, Any]) -> str:
    """The retrain decision in one line of plain text."""
    if not retrain.get("recommended"):
        return "no retrain needed"
    causes = "; ".join(retrain.get("causes", []))
    if retrain.get("triggered"):
        return f"retrain triggered ({retrain['flow_run'].get('name', '')}): {causes}"
    blocked = retrain.get("blocked_by") or "not triggered"
    return f"retrain recommended, {blocked}: {causes}"


def _quality_text(summary: dict[str, Any]) -> str:
    if summary.get("recall") is None:
        return summary.get("quality_note") or "no outcomes in the window"
    floors = summary["floors"]
    return (
        f"recall {summary['recall']:.3f} (floor {floors['recall']:g}), precision {summary['precision']:.3f} "
        f"(floor {floors['precision']:g}) on {summary['labelled_rows']} labelled rows"
    )


def monitor_header(summary: dict[str, Any]) -> str:
    """The block on top of a monitoring report: model version, window, drifted columns, decision."""
    return _render(
        "monitor_header.html",
        s=summary,
        window=window_text(summary["window"]),
        drift_rows=sorted(summary["column_drift"].items(), key=lambda item: -item[1]["score"]),
        quality=_quality_text(summary),
        decision=decision_text(summary["retrain"]),
    )


def retrain_header(summary: dict[str, Any]) -> str:
    """The block on top of a retrain comparison: challenger vs champion on the same holdout."""
    return _render("retrain_header.html", s=summary, champion=summary.get("champion_metrics") or {})


def header_for(summary: dict[str, Any]) -> str:
    """The header of a report, by its kind."""
    return retrain_header(summary) if summary["kind"] == "retrain" else monitor_header(summary)


def write_summary(directory: Path, summary: dict[str, Any]) -> Path:
    path = directory / SUMMARY
    path.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return path


def read_summaries(reports_dir: Path) -> list[dict[str, Any]]:
    """Every report's summary, newest first, each with its `path` relative to `reports_dir`."""
    found = []
    for path in reports_dir.glob(f"*/*/{SUMMARY}"):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a report being written or damaged by hand: left out, not fatal
        summary["path"] = path.parent.relative_to(reports_dir).as_posix()
        found.append(summary)
    return sorted(found, key=lambda s: s.get("created_at", ""), reverse=True)


def _index_row(summary: dict[str, Any]) -> dict[str, Any]:
    """One row of the index: plain values, escaped by the template."""
    kind = summary.get("kind")
    row = {
        "created": summary.get("created_at", ""),
        "model": summary.get("model", ""),
        "kind": kind,
        "version": str(summary.get("model_version") or "-"),
        "window": window_text(summary.get("window") or {}),
        "rows": summary.get("rows", "-"),
        "drift": "-",
        "drifted": "-",
        "alert": False,
        "link": f"{summary['path']}/report.html" if kind != SKIPPED else None,
    }
    if kind == "retrain":
        row["window"] = summary["window"]["source"]
        row["decision"] = "promoted" if summary.get("promoted") else "not promoted"
    elif kind == SKIPPED:
        row["kind"], row["decision"] = "monitor (skipped)", summary.get("reason", "")
    else:
        drifted = summary.get("drifted_columns", {})
        row["drift"] = "yes" if summary["drift_detected"] else "no"
        row["drifted"] = ", ".join(f"{c} ({s:.2f})" for c, s in drifted.items()) or "-"
        row["decision"], row["alert"] = decision_text(summary["retrain"]), summary["drift_detected"]
    return row


def write_index(reports_dir: Path) -> Path:
    """Rebuild `reports/index.html`, listing every report and skipped run newest first (atomically)."""
    html = _render("index.html", rows=[_index_row(s) for s in read_summaries(reports_dir)])
    reports_dir.mkdir(parents=True, exist_ok=True)
    path, partial = reports_dir / "index.html", reports_dir / f".index.{os.getpid()}.{uuid4().hex}.partial"
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)
    return path
