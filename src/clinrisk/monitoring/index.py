"""Our own HTML: the header placed on top of each Evidently report, and `reports/index.html`.

Both are static pages with inline styles only, so they open offline from the file system. The
index is rebuilt from every report's `summary.json`, so it never drifts from the reports.
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path
from typing import Any
from uuid import uuid4

SUMMARY = "summary.json"
STYLE = (
    "font-family:system-ui,sans-serif;font-size:14px;margin:16px 24px;padding:12px 16px;"
    "border:1px solid #ccc;border-radius:6px;background:#fafafa"
)
TABLE = "border-collapse:collapse;margin:6px 0"
CELL = "border:1px solid #ddd;padding:3px 8px;text-align:left"
ALERT = "color:#b00020;font-weight:600"


def _row(cells: list[str], style: str = "") -> str:
    tds = "".join(f'<td style="{CELL}">{c}</td>' for c in cells)
    return f'<tr style="{style}">{tds}</tr>'


def _table(headers: list[str], rows: list[str]) -> str:
    head = "".join(f'<th style="{CELL}">{escape(h)}</th>' for h in headers)
    return f'<table style="{TABLE}"><tr>{head}</tr>{"".join(rows)}</table>'


def window_text(window: dict[str, Any]) -> str:
    """The data window as one line: its time bounds and where the rows came from."""
    source = window.get("source", "unknown source")
    if not window.get("start") and not window.get("end"):
        return f"all rows of {source}"
    return f"{window.get('start') or '…'} to {window.get('end') or '…'} (UTC), from {source}"


def _drift_table(column_drift: dict[str, dict[str, Any]]) -> str:
    ordered = sorted(column_drift.items(), key=lambda item: -item[1]["score"])
    rows = [
        _row(
            [
                escape(c),
                f"{d['score']:.3f}",
                escape(str(d["method"])),
                f"{d['threshold']:g}",
                "drifted" if d["drifted"] else "no",
            ],
            ALERT if d["drifted"] else "",
        )
        for c, d in ordered
    ]
    return _table(["column", "drift score", "method", "threshold", "verdict"], rows)


def _decision_text(retrain: dict[str, Any]) -> str:
    if not retrain.get("recommended"):
        return "no retrain needed"
    causes = "; ".join(retrain.get("causes", []))
    if retrain.get("triggered"):
        return f"retrain triggered ({escape(str(retrain['flow_run'].get('name', '')))}): {escape(causes)}"
    blocked = retrain.get("blocked_by") or "not triggered"
    return f"retrain recommended, {escape(blocked)}: {escape(causes)}"


def _quality_text(summary: dict[str, Any]) -> str:
    if summary.get("r2") is not None:
        floor = summary["floors"].get("r2")
        return f"R² {summary['r2']:.3f} (floor {floor:g}) on {summary['labelled_rows']} labelled rows"
    if summary.get("recall") is None:
        return escape(summary.get("quality_note") or "no outcomes in the window")
    floors = summary["floors"]
    return (
        f"recall {summary['recall']:.3f} (floor {floors['recall']:g}), precision {summary['precision']:.3f} "
        f"(floor {floors['precision']:g}) on {summary['labelled_rows']} labelled rows"
    )


def monitor_header(summary: dict[str, Any]) -> str:
    """The block on top of a monitoring report: model version, window, drifted columns, decision."""
    drift = "DRIFT DETECTED" if summary["drift_detected"] else "no drift"
    failed = ", ".join(summary["failed_tests"]) or "none"
    return (
        f'<div style="{STYLE}">'
        f'<h2 style="margin:0 0 6px">{escape(summary["model"])} model version '
        f"{escape(str(summary['model_version']))}: monitoring report</h2>"
        f"<div>Data window: {escape(window_text(summary['window']))}; {summary['rows']} rows; reference: "
        f"{escape(summary['reference'])}</div>"
        f'<div style="{ALERT if summary["drift_detected"] else ""}">Data drift: {drift}: '
        f"{summary['drift_share']:.0%} of features drifted "
        f"(limit {summary['floors']['drift_share']:.0%})</div>"
        f"{_drift_table(summary['column_drift'])}"
        f"<div>Quality: {_quality_text(summary)}</div>"
        f"<div>Failed tests: {escape(failed)}</div>"
        f"<div><b>Decision:</b> {_decision_text(summary['retrain'])}</div>"
        "</div>"
    )


def retrain_header(summary: dict[str, Any]) -> str:
    """The block on top of a retrain comparison: challenger vs champion on the same holdout."""
    shown = ("recall", "precision", "pr_auc", "roc_auc", "r2", "rmse", "mae")  # a regression has the last 3
    metrics = [m for m in shown if m in summary["challenger_metrics"]]
    champion = summary.get("champion_metrics") or {}
    rows = [
        _row([m, f"{summary['challenger_metrics'][m]:.3f}", f"{champion[m]:.3f}" if m in champion else "-"])
        for m in metrics
    ]
    verdict = "promoted to champion" if summary["promoted"] else "not promoted"
    return (
        f'<div style="{STYLE}">'
        f'<h2 style="margin:0 0 6px">{escape(summary["model"])} model version '
        f"{escape(str(summary['model_version']))} (challenger) vs champion version "
        f"{escape(str(summary.get('champion_version') or 'none'))}</h2>"
        f"<div>Data: holdout of {escape(summary['window']['source'])}, {summary['rows']} rows; "
        f"retrain reason: {escape(summary.get('reason', ''))}</div>"
        f"{_table(['metric', 'challenger', 'champion'], rows)}"
        f"<div><b>Gate:</b> {verdict}: {escape('; '.join(summary['reasons']))}</div>"
        "</div>"
    )


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


def _index_row(summary: dict[str, Any]) -> str:
    link = f'<a href="{escape(summary["path"])}/report.html">report</a>'
    if summary.get("kind") == "retrain":
        verdict = "promoted" if summary.get("promoted") else "not promoted"
        return _row(
            [
                escape(summary.get("created_at", "")),
                escape(summary["model"]),
                "retrain",
                escape(str(summary["model_version"])),
                escape(summary["window"]["source"]),
                str(summary["rows"]),
                "-",
                "-",
                verdict,
                link,
            ]
        )
    drifted = ", ".join(f"{c} ({s:.2f})" for c, s in summary.get("drifted_columns", {}).items()) or "-"
    return _row(
        [
            escape(summary.get("created_at", "")),
            escape(summary["model"]),
            "monitor",
            escape(str(summary["model_version"])),
            escape(window_text(summary["window"])),
            str(summary["rows"]),
            "yes" if summary["drift_detected"] else "no",
            escape(drifted),
            _decision_text(summary["retrain"]),
            link,
        ],
        ALERT if summary["drift_detected"] else "",
    )


def write_index(reports_dir: Path) -> Path:
    """Rebuild `reports/index.html`, listing every report newest first (written atomically)."""
    headers = [
        "created (UTC)",
        "model",
        "kind",
        "version",
        "data window",
        "rows",
        "drift",
        "drifted columns",
        "decision",
        "link",
    ]
    table = _table(headers, [_index_row(s) for s in read_summaries(reports_dir)])
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>clinrisk reports</title></head>'
        '<body style="font-family:system-ui,sans-serif;margin:24px">'
        f"<h1>clinrisk reports</h1>{table}</body></html>"
    )
    reports_dir.mkdir(parents=True, exist_ok=True)
    path, partial = reports_dir / "index.html", reports_dir / f".index.{os.getpid()}.{uuid4().hex}.partial"
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, path)
    return path
