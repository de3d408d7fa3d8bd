"""Markdown for the flows' Prefect artifacts: metrics, decisions and their causes at a glance."""

from __future__ import annotations

from typing import Any

from clinrisk.monitoring.index import window_text


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def retrain_markdown(summary: dict[str, Any], reason: str, report: str) -> str:
    """Challenger metrics, the gate's decision with its reasons, and where the comparison is."""
    verdict = "**promoted to champion**" if summary["promoted"] else "**not promoted**"
    metrics = _table(["metric", "holdout"], [[k, f"{v:.4f}"] for k, v in summary["metrics"].items()])
    reasons = "\n".join(f"- {r}" for r in summary["reasons"])
    threshold = (
        "no threshold (regression)"
        if summary["threshold"] is None
        else f"threshold {summary['threshold']:.4f}"
    )
    return (
        f"# Retrain of `{summary['model']}`: version {summary['version']} {verdict}\n\n"
        f"Triggered by: {reason}\n\n"
        f"Candidate `{summary['candidate']}`, {threshold}, compared with champion "
        f"version {summary['compared_with'] or 'none'}.\n\n{metrics}\n\n## Gate\n{reasons}\n\n"
        f"Evidently comparison on the holdout: `{report}`\n"
    )


def _decision(retrain: dict[str, Any]) -> str:
    if not retrain["recommended"]:
        return "No retrain needed."
    causes = "\n".join(f"- {c}" for c in retrain["causes"])
    if retrain.get("triggered"):
        run = retrain["flow_run"]
        return f"**Retrain triggered**: flow run `{run['name']}` of `{run['deployment']}`, because:\n{causes}"
    blocked = retrain.get("blocked_by") or "triggering off"
    return f"**Retrain recommended but not started** ({blocked}), because:\n{causes}"


def monitor_markdown(summary: dict[str, Any]) -> str:
    """Drift verdict with per-column scores, quality, failed tests and the retrain decision."""
    drift = "**drift detected**" if summary["drift_detected"] else "no drift"
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
        quality += f" on {summary['labelled_rows']} rows"
    failed = ", ".join(summary["failed_tests"]) or "none"
    return (
        f"# Monitoring `{summary['model']}` version {summary['model_version']}: {drift}\n\n"
        f"Window: {window_text(summary['window'])}; {summary['rows']} rows.\n\n"
        f"Reference: {summary['reference']}.\n\n"
        f"Drifted share {summary['drift_share']:.0%} "
        f"(limit {summary['floors']['drift_share']:.0%}).\n\n{table}\n\n"
        f"Quality: {quality}\n\nFailed tests: {failed}\n\n## Decision\n{_decision(summary['retrain'])}\n\n"
        f"Report: `{summary['report']}`\n"
    )


def skipped_markdown(model_name: str, window: dict[str, Any], reason: str) -> str:
    return f"# Monitoring `{model_name}`: skipped\n\nWindow: {window_text(window)}.\n\n{reason}\n"


def batch_markdown(report: dict[str, Any], input_path: str) -> str:
    rejects = (
        f", {report['rows_rejected']} rejected into `{report['rejects']}`" if report["rows_rejected"] else ""
    )
    return (
        f"# Batch scoring with version {report['model_version']}\n\n"
        f"`{input_path}` → `{report['output']}`: {report['rows_scored']} rows scored{rejects}.\n"
    )
