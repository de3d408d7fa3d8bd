"""Our own HTML: the header placed on top of each Evidently report, and `reports/index.html`.

Both are static pages with inline styles only, so they open offline from the file system. The
index is rebuilt from every report's `summary.json` (skipped runs included), so it never drifts
from the reports. The pages are Jinja templates in `templates/`, autoescaped.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from clinrisk import outputs
from clinrisk.wording import count_of

SUMMARY = "summary.json"
# Brier is absent from summaries written before calibration was reported; a regression has the last 3.
RETRAIN_METRICS = ["recall", "precision", "pr_auc", "roc_auc", "brier", "r2", "rmse", "mae"]
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


def drift_share_text(summary: dict[str, Any]) -> str:
    limit = f"(limit {summary['floors']['drift_share']:.0%})"
    if summary.get("drift_share") is None:
        return f"not computable on any feature {limit}"
    return f"{summary['drift_share']:.0%} of features drifted {limit}"


def health_lines(summary: dict[str, Any]) -> list[tuple[str, bool]]:
    """One (text, flagged) per feature whose drift could not be computed or that is all missing."""
    lines = []
    for column, h in summary.get("column_health", {}).items():
        if h["drift"] is None and not h["flagged"]:
            continue
        text = f"{column}: {h['missing_current']:.0%} missing (reference {h['missing_reference']:.0%})"
        text += f"; drift {h['drift'] or 'computed'}"
        if h["flagged"]:
            text += "; FLAGGED: the reference has values but the window has none"
        lines.append((text, h["flagged"]))
    return lines


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
    if summary.get("r2") is not None:
        floor = summary["floors"].get("r2")
        return f"R² {summary['r2']:.3f} (floor {floor:g}) on {summary['labelled_rows']} labelled rows"
    if summary.get("recall") is None:
        return summary.get("quality_note") or "no outcomes in the window"
    floors, quality = summary["floors"], summary.get("quality")
    if quality:
        return (
            f"on the {count_of(summary['labelled_rows'], 'outcome')} that arrived, at the served decisions: "
            f"recall {interval_text(quality['recall'])} (floor {floors['recall']:g}), "
            f"precision {interval_text(quality['precision'])} (floor {floors['precision']:g})"
        )
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
        drift=drift_share_text(summary),
        drift_rows=sorted(summary["column_drift"].items(), key=lambda item: -item[1]["score"]),
        health=health_lines(summary),
        quality=_quality_text(summary),
        decision=decision_text(summary["retrain"]),
        slices=_slices_block(summary.get("slices"), "on the rows with outcomes"),
    )


def interval_text(found: dict[str, Any]) -> str:
    """A stored Wilson estimate as `0.165 [0.121, 0.220] (33/200)`."""
    value = "n/a" if found.get("value") is None else f"{found['value']:.3f}"
    return f"{value} [{found['low']:.3f}, {found['high']:.3f}] ({found['successes']}/{found['trials']})"


def _gate_rows(gate: dict[str, Any]) -> dict[str, Any]:
    """The gate's estimates with their Wilson intervals, and the paired test's p-value, as table rows."""
    intervals = gate.get("intervals") or {}

    def cell(key: str) -> str:
        return interval_text(intervals[key]) if key in intervals else "-"

    rows = [[m, cell(f"challenger.{m}"), cell(f"champion.{m}")] for m in ("precision", "recall")]
    p_value = gate.get("p_value")
    rows.append(["McNemar exact p (same positives)", "not run" if p_value is None else f"{p_value:.3g}", ""])
    confidence = next(iter(intervals.values()), {}).get("confidence", 0.95)
    return {"title": f"gate: estimate [{confidence:.0%} Wilson interval]", "rows": rows}


def retrain_header(summary: dict[str, Any]) -> str:
    """The block on top of a retrain comparison: challenger vs champion on the same holdout."""
    return _render(
        "retrain_header.html",
        s=summary,
        metrics=[m for m in RETRAIN_METRICS if m in summary["challenger_metrics"]],
        champion=summary.get("champion_metrics") or {},
        # A regression's gate decides on R² (its reasons say how); it has no Wilson estimates.
        gate=_gate_rows(summary["gate"]) if (summary.get("gate") or {}).get("intervals") else None,
        slices=_slices_block(summary.get("slices"), "challenger on the holdout"),
    )


def _slices_block(slices: list[dict[str, Any]] | None, where: str) -> dict[str, Any] | None:
    """Fairness tables (HTML rendered by the model card's Jinja template) and where they were measured."""
    if not slices:
        return None
    from markupsafe import Markup

    from clinrisk.card import render_slices_html

    return {"where": where, "html": Markup(render_slices_html(slices))}


def header_for(summary: dict[str, Any]) -> str:
    """The header of a report, by its kind."""
    return retrain_header(summary) if summary["kind"] == "retrain" else monitor_header(summary)


def write_summary(directory: Path, summary: dict[str, Any]) -> Path:
    path = directory / SUMMARY
    return outputs.write_text(path, json.dumps(summary, indent=2, default=str))


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


def by_model(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Index rows grouped by model, models in name order, each model's rows in the given order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["model"], []).append(row)
    return dict(sorted(groups.items()))


def write_index(reports_dir: Path) -> Path:
    """Rebuild `reports/index.html` (atomically): one section per model, as the Evidently UI has one
    project per model (`clinrisk-<model>`), listing its reports and skipped runs newest first."""
    rows = [_index_row(s) for s in read_summaries(reports_dir)]
    html = _render("index.html", rows=rows, models=by_model(rows))
    outputs.make_folder(reports_dir)
    return outputs.write_text(reports_dir / "index.html", html)
