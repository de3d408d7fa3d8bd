"""The retrain sequence: one list of steps that the CLI, `make up`'s bootstrap and the flow all run.

`retrain` composes the steps for the CLI and the bootstrap; `clinrisk.flows.retrain` composes the
very same functions, each wrapped as a Prefect task. In order:

1. `ingest` the model's inbox folder into the labelled store (not with `--data`);
2. `load_data`: a snapshot of the labelled store, or one validated file with `--data`;
3. `load_champion`: the champion's version and snapshot tags (and the newest version's);
4. `skip_reason`: nothing to learn when the snapshot is the one the champion was trained on;
   otherwise `download_champion` fetches its model, once, for the gate and the report;
5. `plan`: which rows train the challenger and which rows both models are scored on;
6. `train.train_model`, then `served_model` (refit on every row, threshold kept);
7. `register` (run, dataset inputs, version, snapshot tags), `apply_gate_for` (the statistical
   gate of `clinrisk.promotion` for a classification, `clinrisk.gate_regression`'s R² gate otherwise);
8. the comparison report (`monitoring.comparison`), and `summary` for the JSON line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clinrisk import inbox, registry, snapshots
from clinrisk.data import load_training_data
from clinrisk.features import build_pipeline
from clinrisk.model import RiskModel
from clinrisk.promotion import GateDecision, apply_gate
from clinrisk.settings import Settings
from clinrisk.snapshots import EvaluationPlan, Snapshot
from clinrisk.spec import ModelSpec, file_sha256, load_spec
from clinrisk.train import TrainingResult, train_model


@dataclass
class TrainingData:
    """What one retraining learns from: a store snapshot, or one file given with `--data`."""

    spec: ModelSpec
    frame: pd.DataFrame
    sha256: str
    source: str
    snapshot: Snapshot | None = None


@dataclass
class Champion:
    """The current champion, loaded once, and the snapshot it was trained on (if recorded).

    `latest_*` describe the newest registered version (the last one the gate judged), which is
    the champion unless the gate refused it.
    """

    model: RiskModel | None = None
    version: str | None = None
    snapshot_digest: str | None = None
    members: set[int] | None = None
    latest_version: str | None = None
    latest_snapshot_digest: str | None = None


def data_path_for(spec: ModelSpec, data_path: Path | None) -> Path:
    """The file to train on: the one given, else the spec's own file (from cwd or the checkout)."""
    return Path(data_path) if data_path else snapshots.seed_path(spec)


def load_and_validate(
    settings: Settings, model_name: str, data_path: Path | None
) -> tuple[ModelSpec, pd.DataFrame, str]:
    """Read the spec and one file; raise DataValidationError before anything is logged."""
    spec = load_spec(settings.spec_path_for(model_name))
    path = data_path_for(spec, data_path)
    # The spec's own raw file is immutable: its checksum is checked; a file given is recorded.
    frame = load_training_data(spec, path, expected_sha256=None if data_path else spec.data.sha256)
    return spec, frame, file_sha256(path)


def ingest(settings: Settings, model_name: str, data_path: Path | None = None) -> list[inbox.Ingested]:
    """Step 1: add the files waiting in the model's inbox (nothing when training on one file)."""
    return [] if data_path else inbox.ingest(settings, model_name)


def load_data(settings: Settings, model_name: str, data_path: Path | None = None) -> TrainingData:
    """Step 2: the labelled store's snapshot, or the one file given (validated either way)."""
    if data_path:
        spec, frame, sha = load_and_validate(settings, model_name, data_path)
        return TrainingData(spec, frame, sha, str(data_path))
    spec = load_spec(settings.spec_path_for(model_name))
    snapshot = snapshots.take(settings, spec)
    source = f"labelled store {spec.name}, snapshot {snapshot.digest[:12]}"
    return TrainingData(spec, snapshot.frame, snapshot.digest, source, snapshot)


def load_champion(settings: Settings, model_name: str) -> Champion:
    """Step 3: the champion's version and snapshot tags, and the newest version's (no download yet)."""
    latest = registry.latest_version(settings, model_name)
    latest_tags = registry.version_tags(settings, model_name, latest) if latest else {}
    last = {"latest_version": latest, "latest_snapshot_digest": latest_tags.get(snapshots.DIGEST_TAG)}
    version = registry.alias_version(settings, model_name, registry.CHAMPION)
    if version is None:
        return Champion(**last)
    tags = latest_tags if version == latest else registry.version_tags(settings, model_name, version)
    members = tags.get(snapshots.MEMBERS_TAG)
    return Champion(
        version=version,
        snapshot_digest=tags.get(snapshots.DIGEST_TAG),
        members=snapshots.decode_members(members) if members is not None else None,
        **last,
    )


def download_champion(settings: Settings, model_name: str, champion: Champion) -> Champion:
    """Step 4b: the champion's model, downloaded once for the gate and the report (when training)."""
    if champion.version is None:
        return champion
    return dataclasses.replace(champion, model=registry.load_version(settings, model_name, champion.version))


def skip_reason(data: TrainingData, champion: Champion) -> str | None:
    """Step 4: why there is nothing to train, or None. A file given always trains.

    Nothing is new when the champion was trained on this very snapshot, or when the newest
    version was (the gate already judged these rows: training again would repeat that version).
    """
    if data.snapshot is None:
        return None
    if champion.snapshot_digest == data.snapshot.digest:
        return f"no new labelled data since version {champion.version}"
    if champion.latest_snapshot_digest == data.snapshot.digest:
        return f"no new labelled data since version {champion.latest_version} (not promoted by the gate)"
    return None


def plan(data: TrainingData, champion: Champion) -> EvaluationPlan:
    """Step 5: training rows and evaluation rows (see `snapshots.plan_evaluation`)."""
    if data.snapshot is None:
        split = "random" if data.spec.is_regression else "stratified"
        return EvaluationPlan(data.frame, None, f"{split} holdout of the file")
    return snapshots.plan_evaluation(data.snapshot, data.spec, champion.members)


def served_model(data: TrainingData, result: TrainingResult, seed: int | None = None) -> TrainingResult:
    """Step 6b: the result to register: the same candidate and threshold refit on every row.

    The gate still judges `result.model`, fitted without the evaluation rows; the threshold and the
    calibration map stay the ones chosen out of fold. Only for store snapshots with `training.refit_on_all`.
    """
    spec = data.spec
    if data.snapshot is None or not spec.training.refit_on_all:
        return result
    seed = spec.training.seed if seed is None else seed
    candidate = next(c for c in spec.candidates if c.name == result.best.name)
    pipeline = build_pipeline(spec, candidate, seed)
    pipeline.fit(data.frame[spec.feature_names], data.frame[spec.target.column])
    # The calibration map and threshold were both chosen out of fold; they travel together.
    model = RiskModel(
        pipeline=pipeline,
        threshold=result.model.threshold,
        spec_yaml=spec.to_yaml(),
        calibration=result.model.calibration,
    )
    model.info = {**result.model.info, "refit_rows": len(data.frame)}
    return dataclasses.replace(result, model=model, rows={**result.rows, "refit": len(data.frame)})


def dataset_inputs(data: TrainingData, result: TrainingResult) -> list[registry.DatasetInput]:
    """The snapshot's training and evaluation rows as MLflow dataset inputs, with their counts."""
    if data.snapshot is None:
        return []
    spec, target = data.spec, data.spec.target.column
    columns = [*spec.feature_names, target, snapshots.SOURCE]
    evaluation = result.holdout[columns]
    training = data.frame[~data.frame[snapshots.ROW_ID].isin(result.holdout[snapshots.ROW_ID])][columns]

    def counts(frame: pd.DataFrame) -> dict[str, str]:
        by_source = frame[snapshots.SOURCE].value_counts().sort_index()
        outcome = (
            {"outcome_mean": f"{frame[target].mean():.6g}"}
            if spec.is_regression
            else {"positives": str(int(frame[target].sum()))}
        )
        return {"rows": str(len(frame)), **outcome, "by_source": pd.Series(by_source).to_json()}

    name = f"{spec.name}-labelled"
    source = f"clinrisk-store:{spec.name}"
    return [
        registry.DatasetInput(
            name, "training", training, target, data.snapshot.digest, source, counts(training)
        ),
        registry.DatasetInput(
            f"{name}-evaluation",
            "evaluation",
            evaluation,
            target,
            data.snapshot.digest,
            source,
            counts(evaluation),
        ),
    ]


def register(
    settings: Settings,
    data: TrainingData,
    result: TrainingResult,
    served: TrainingResult,
    evaluation_rule: str = "",
) -> registry.RegisteredVersion:
    """Step 7a: log the run with its dataset inputs, register `served`, tag its snapshot."""
    version = registry.log_and_register(
        settings, served, data.source, dataset_inputs(data, result), verification=data.frame
    )
    if data.snapshot is not None:
        tags = {
            "data.evaluation_rule": evaluation_rule,
            snapshots.DIGEST_TAG: data.snapshot.digest,
            snapshots.MEMBERS_TAG: snapshots.encode_members(data.snapshot.row_ids),
            "data.rows": str(data.snapshot.rows),
            "data.by_source": data.snapshot.by_source,
        }
        registry.set_version_tags(settings, data.spec.name, version.version, tags)
    return version


def apply_gate_for(
    settings: Settings,
    version: str,
    challenger: RiskModel,
    evaluation: pd.DataFrame,
    champion: RiskModel | None,
) -> GateDecision:
    """Step 7b: the gate of the model's kind, with the champion loaded once by `download_champion`.

    A regression is judged by R² on the evaluation rows (`clinrisk.gate_regression`); a
    classification by the statistical gate (`clinrisk.promotion.apply_gate`).
    """
    if challenger.is_regression:
        from clinrisk.gate_regression import apply_regression_gate

        return apply_regression_gate(settings, version, challenger, evaluation, champion)
    return apply_gate(settings, version, challenger, evaluation, champion)


def _headline(result: TrainingResult) -> tuple[float | None, dict[str, float]]:
    """The threshold and holdout metrics the JSON line shows (a regression: none, and R², RMSE, MAE)."""
    if result.model.is_regression:
        return None, {k: round(v, 4) for k, v in result.holdout_metrics.items()}
    keys = ("recall", "precision", "roc_auc", "pr_auc", "f1", "flagged_share")
    return round(result.model.threshold, 6), {k: round(result.holdout_metrics[k], 4) for k in keys}


def summary(
    result: TrainingResult,
    version: registry.RegisteredVersion,
    decision: GateDecision,
    data: TrainingData | None = None,
    evaluation_rule: str | None = None,
) -> dict[str, Any]:
    """The JSON line `clinrisk train` prints last."""
    threshold, metrics = _headline(result)
    outcome = {
        "run_id": version.run_id,
        "model": version.name,
        "version": version.version,
        "candidate": result.best.name,
        "threshold": threshold,
        "metrics": metrics,
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "compared_with": decision.champion_version,
        "data_warnings": result.data_warnings,
    }
    if data is not None and data.snapshot is not None:
        outcome["data"] = data.snapshot.summary()
    if evaluation_rule is not None:
        outcome["evaluation"] = {"rule": evaluation_rule, "rows": len(result.holdout)}
    return outcome


def skipped_summary(data: TrainingData, champion: Champion, reason: str) -> dict[str, Any]:
    """The JSON line when nothing was trained: the champion stays, nothing is registered."""
    return {
        "model": data.spec.name,
        "version": None,
        "promoted": False,
        "skipped": reason,
        "reasons": [reason],
        "compared_with": champion.version,
        "data": data.snapshot.summary() if data.snapshot else None,
    }


def write_report(
    settings: Settings,
    result: TrainingResult,
    version: registry.RegisteredVersion,
    decision: GateDecision,
    reason: str,
    data: TrainingData,
) -> Path:
    """Step 8: the Evidently comparison of challenger and champion on the evaluation rows."""
    from clinrisk.monitoring import comparison  # Evidently loads slowly: only when a report is made

    return comparison.compare_on_holdout(
        settings,
        result.model,
        version.version,
        result.holdout,
        decision,
        decision.champion_version,
        reason,
        data.source,
    )


def retrain(
    settings: Settings,
    model_name: str,
    data_path: Path | None = None,
    seed: int | None = None,
    reason: str = "manual",
) -> dict:
    """Ingest, snapshot, train, register, gate and report: the whole retraining in one call."""
    ingest(settings, model_name, data_path)
    data = load_data(settings, model_name, data_path)
    champion = load_champion(settings, model_name)
    skipped = skip_reason(data, champion)
    if skipped:
        return skipped_summary(data, champion, skipped)
    champion = download_champion(settings, model_name, champion)
    split = plan(data, champion)
    result = train_model(data.spec, split.train, seed, data.sha256, split.evaluation)
    version = register(settings, data, result, served_model(data, result, seed), split.rule)
    decision = apply_gate_for(settings, version.version, result.model, result.holdout, champion.model)
    registry.refresh_card(settings, version.name, version.version)
    report = write_report(settings, result, version, decision, reason, data)
    return {**summary(result, version, decision, data, split.rule), "report": str(report)}
