"""Markdown for the flows' Prefect artifacts: metrics, decisions and their causes at a glance.

Each artifact's title (its first line, `# ...`) is the flow's one-line outcome, also printed
in its log: plain text, no markup.
"""

from __future__ import annotations

from typing import Any

from clinrisk.monitoring.index import drift_share_text, health_lines, interval_text, window_text
from clinrisk.wording import count_of


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def retrain_title(summary: dict[str, Any], reason: str) -> str:
    verdict = "promoted to champion" if summary["promoted"] else "not promoted"
    return f"Retrain of {summary['model']}: version {summary['version']} {verdict} (started by: {reason})"


def retrain_markdown(summary: dict[str, Any], reason: str, report: str) -> str:
    """Challenger metrics, the gate's decision with its reasons, and where the comparison is."""
    metrics = _table(["metric", "holdout"], [[k, f"{v:.4f}"] for k, v in summary["metrics"].items()])
    reasons = "\n".join(f"- {r}" for r in summary["reasons"])
    threshold = (
        "no threshold (regression)"
        if summary["threshold"] is None
        else f"threshold {summary['threshold']:.4f}"
    )
    return (
        f"# {retrain_title(summary, reason)}\n\n"
        f"Started by: {reason}\n\n"
        f"Candidate `{summary['candidate']}`, {threshold}, compared with champion "
        f"version {summary['compared_with'] or 'none'}.\n\n{metrics}\n\n## Gate\n{reasons}\n\n"
        f"Evidently comparison on the holdout: `{report}`\n"
    )


def retrain_skipped_markdown(summary: dict[str, Any], reason: str) -> str:
    """A retrain that found nothing new to learn from: the champion stays, nothing is registered."""
    data = summary.get("data") or {}
    return (
        f"# Retrain of `{summary['model']}`: skipped\n\nTriggered by: {reason}\n\n"
        f"**{summary['skipped']}**: the labelled store's snapshot `{data.get('snapshot', '')[:12]}` "
        f"({data.get('rows', 0)} rows, {data.get('positives', 0)} positives) is the one champion version "
        f"{summary['compared_with']} was trained on. Nothing was registered.\n"
    )


def ingest_markdown(model_name: str, results: list[dict[str, Any]]) -> str:
    """Each inbox file, whether it went to done/ or rejected/, rows added and why it was refused."""
    rows = [[r["file"], r["status"], r["added"], r["reason"].replace("\n", " ")] for r in results]
    return f"# Inbox of `{model_name}`\n\n" + _table(["file", "status", "rows added", "reason"], rows) + "\n"


def _decision(retrain: dict[str, Any]) -> str:
    if not retrain["recommended"]:
        return "No retrain needed."
    causes = "\n".join(f"- {c}" for c in retrain["causes"])
    if retrain.get("triggered"):
        run = retrain["flow_run"]
        return f"**Retrain triggered**: flow run `{run['name']}` of `{run['deployment']}`, because:\n{causes}"
    blocked = retrain.get("blocked_by") or "triggering off"
    return f"**Retrain recommended but not started** ({blocked}), because:\n{causes}"


def monitor_title(summary: dict[str, Any]) -> str:
    drift = "drift detected" if summary["drift_detected"] else "no drift"
    retrain = summary["retrain"]
    if not retrain["recommended"]:
        decision = "no retrain needed"
    elif retrain.get("triggered"):
        decision = f"retrain started (flow run {retrain['flow_run']['name']})"
    else:
        decision = f"retrain recommended, {retrain.get('blocked_by') or 'triggering off'}"
    return f"Monitoring {summary['model']} version {summary['model_version']}: {drift}; {decision}"


def monitor_markdown(summary: dict[str, Any]) -> str:
    """Drift verdict with per-column scores, quality, failed tests and the retrain decision."""
    columns = sorted(summary["column_drift"].items(), key=lambda item: -item[1]["score"])
    table = _table(
        ["column", "score", "method", "threshold", "drifted"],
        [
            [c, f"{d['score']:.3f}", d["method"], d["threshold"], "yes" if d["drifted"] else ""]
            for c, d in columns
        ],
    )
    quality = summary["quality_note"]
    if summary["recall"] is not None:
        quality = f"recall {summary['recall']:.3f}, precision {summary['precision']:.3f}"
        if summary.get("quality"):
            quality = ", ".join(f"{k} {interval_text(v)}" for k, v in summary["quality"].items())
        quality += f" on {count_of(summary['labelled_rows'], 'outcome')}, at the served decisions"
    failed = ", ".join(summary["failed_tests"]) or "none"
    health = "".join(
        f"- {'**' if flagged else ''}{text}{'**' if flagged else ''}\n"
        for text, flagged in health_lines(summary)
    )
    health = f"Columns to note:\n{health}\n" if health else ""
    return (
        f"# {monitor_title(summary)}\n\n"
        f"Window: {window_text(summary['window'])}; {count_of(summary['rows'], 'row')}.\n\n"
        f"Reference: {summary['reference']}.\n\n"
        f"Drift: {drift_share_text(summary)}.\n\n{table}\n\n{health}"
        f"Quality: {quality}\n\nFailed tests: {failed}\n\n## Decision\n{_decision(summary['retrain'])}\n\n"
        f"Report: `{summary['report']}`\n"
    )


def skipped_markdown(model_name: str, window: dict[str, Any], reason: str) -> str:
    title = f"Monitoring {model_name}: skipped, {reason}"
    return f"# {title}\n\nWindow: {window_text(window)}.\n\n{reason}\n"


def batch_markdown(report: dict[str, Any], input_path: str) -> str:
    rejects = (
        f", {report['rows_rejected']} rejected into `{report['rejects']}`" if report["rows_rejected"] else ""
    )
    scored = f"{count_of(report['rows_scored'], 'row')} scored"
    title = f"Batch scoring with version {report['model_version']}: {scored}"
    return f"# {title}\n\n`{input_path}` → `{report['output']}`: {scored}{rejects}.\n"
