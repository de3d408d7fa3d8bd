"""Everything that talks to MLflow: tracking runs, the model registry and its aliases.

MLflow changes its API often (stages became aliases, `artifact_path` became `name`); this is
the only module that imports it, so an upgrade touches one file. MLflow and network errors
are translated into `RegistryError` here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clinrisk import bundle, library_logs, signing
from clinrisk.errors import NoChampionError, RegistryError
from clinrisk.settings import PROJECT_ROOT, Settings
from clinrisk.spec import ModelSpec, file_sha256

if TYPE_CHECKING:  # scikit-learn stays out of the service's start-up
    from clinrisk.model import RiskModel

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
REFERENCE_ARTIFACT = "reference/reference.parquet"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str


@dataclass(frozen=True)
class DatasetInput:
    """A table a run used, recorded with MLflow's dataset tracking (`mlflow.log_input`).

    `context` is `training` or `evaluation`; `digest` names the exact rows (our snapshot digest);
    `tags` carry counts such as rows by source and positives.
    """

    name: str
    context: str
    frame: pd.DataFrame
    target: str
    digest: str
    source: str
    tags: dict[str, str]


@contextlib.contextmanager
def translated_errors(action: str) -> Iterator[None]:
    """Turn MLflow and connection failures into one project error naming the action."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        raise RegistryError(f"{action} failed: {exc.message}") from exc
    except (requests.RequestException, OSError) as exc:
        raise RegistryError(f"{action} failed: MLflow is unreachable ({exc})") from exc


def client(settings: Settings):
    """An MLflow client bound to the configured tracking and registry URIs."""
    import mlflow
    from mlflow import MlflowClient

    # MLflow's per-download progress bars would interleave with our own output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # set_tracking_uri also exports MLFLOW_TRACKING_URI for subprocesses; Settings reads that
    # variable, so a later load_settings() would silently inherit this store. Keep env as it was.
    exported = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(settings.tracking_uri)
    # The registry URI is process-wide too: always re-point it, or it keeps a previous store.
    mlflow.set_registry_uri(settings.registry_uri or settings.tracking_uri)
    for key, value in exported.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if settings.tracking_uri.startswith("sqlite:"):
        settings.ensure_home()
    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def _experiment_id(settings: Settings, model_name: str) -> str:
    """The experiment of a model, created on first use next to the local artifact store."""
    mlflow_client = client(settings)
    name = settings.experiment_name or f"clinrisk-{model_name}"
    existing = mlflow_client.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    local_store = settings.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in settings.tracking_uri
    location = f"{settings.artifact_root}/{name}" if local_store else None
    return mlflow_client.create_experiment(name, artifact_location=location)


def model_signature(spec: ModelSpec):
    """The MLflow signature, derived from the declared spec."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    kinds = {"numeric": "double", "binary": "long", "categorical": "string"}
    inputs = Schema(
        [ColSpec(kinds[f.type], name, required=not f.nullable) for name, f in spec.features.items()]
    )
    if spec.is_regression:
        outputs = Schema([ColSpec("double", "prediction")])  # the outcome, in the target's units
    else:
        outputs = Schema([ColSpec("double", "probability"), ColSpec("long", "prediction")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    """Explicit requirements: inferring them costs about ten seconds a model."""
    from importlib.metadata import version

    packages = ["mlflow", "scikit-learn", "pandas", "numpy", "pydantic", "pyyaml", "cloudpickle", "clinrisk"]
    return [f"{p}=={version(p)}" for p in packages]


def provenance() -> dict[str, str]:
    """Git commit and lock-file hash of the code that trained the model."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=5
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    lock = PROJECT_ROOT / "Pipfile.lock"
    return {
        "git_commit": commit or "unknown",
        "pipfile_lock_sha256": file_sha256(lock) if lock.exists() else "unknown",
    }


# The pyfunc wrapper is logged as a code file (MLflow "models from code"), not pickled.
PYFUNC_CODE = Path(__file__).resolve().parent / "mlflow_code" / "risk_model_pyfunc.py"


def _log_figures(result, spec: ModelSpec, workdir: Path) -> None:
    import mlflow

    from clinrisk.evaluate import (
        save_calibration_curve,
        save_confusion_matrix,
        save_pr_curve,
        save_predicted_vs_actual,
    )

    y = result.holdout[spec.target.column]
    if spec.is_regression:
        figure = workdir / "predicted_vs_actual.png"
        mlflow.log_artifact(
            str(save_predicted_vs_actual(y, result.holdout_proba, result.holdout_metrics, figure))
        )
        return
    floor = spec.objective.precision_floor
    mlflow.log_artifact(
        str(save_pr_curve(y, result.holdout_proba, result.model.threshold, floor, workdir / "pr_curve.png"))
    )
    mlflow.log_artifact(str(save_confusion_matrix(result.holdout_metrics, workdir / "confusion_matrix.png")))
    calibration = result.model.info.get("calibration")
    if calibration:
        mlflow.log_artifact(str(save_calibration_curve(calibration, workdir / "calibration_curve.png")))
        mlflow.log_dict(calibration, "calibration.json")
        mlflow.log_metric("holdout_brier_uncalibrated", calibration["brier_uncalibrated"])


def _log_run_facts(result, spec: ModelSpec, data_path: Path | None) -> None:
    import mlflow

    if spec.is_regression:
        _log_regression_facts(result, spec, data_path)
    else:
        _log_classification_facts(result, spec, data_path)
    if getattr(result, "data_warnings", None):
        mlflow.set_tag("data_warnings", "; ".join(result.data_warnings))


def _log_classification_facts(result, spec: ModelSpec, data_path: Path | None) -> None:
    import mlflow

    mlflow.log_params(
        {
            "model": spec.name,
            "candidate": result.best.name,
            "threshold": round(result.model.threshold, 6),
            "seed": result.model.info["seed"],
            "precision_floor": spec.objective.precision_floor,
            "safety_margin": spec.objective.safety_margin,
            "data_path": str(data_path or spec.data.path),
            **{f"rows_{k}": v for k, v in result.rows.items()},
        }
    )
    for score in result.candidates:
        mlflow.log_metrics(
            {f"cv_{score.name}_roc_auc": score.roc_auc, f"cv_{score.name}_pr_auc": score.pr_auc}
        )
        if score.choice:
            mlflow.log_metric(f"cv_{score.name}_recall_at_floor", score.choice.recall)
    mlflow.log_metrics({f"holdout_{k}": v for k, v in result.holdout_metrics.items()})
    mlflow.set_tags({"data_sha256": result.model.info["data_sha256"], **provenance()})


def _log_datasets(inputs: list[DatasetInput]) -> None:
    """One dataset input per table; MLflow keeps at most 36 characters of a digest."""
    import mlflow
    from mlflow.data.code_dataset_source import CodeDatasetSource

    for item in inputs:
        # A database table has no MLflow source resolver: the source is described by tags instead.
        source = CodeDatasetSource(tags={"clinrisk.source": item.source})
        dataset = mlflow.data.from_pandas(
            item.frame, source=source, targets=item.target, name=item.name, digest=item.digest[:32]
        )
        mlflow.log_input(dataset, context=item.context, tags={"snapshot": item.digest, **item.tags})


def synthetic_example(spec: ModelSpec) -> pd.DataFrame:
    """One made-up record for MLflow's input example: never a patient's row."""
    row: dict[str, Any] = {}
    for name, feature in spec.features.items():
        if feature.type == "categorical":
            row[name] = (feature.categories or [""])[0]
        elif feature.type == "binary":
            row[name] = 0
        else:
            low, high = (
                feature.min or 0.0,
                feature.max if feature.max is not None else (feature.min or 0.0) + 1,
            )
            row[name] = float(low + high) / 2
    return pd.DataFrame([row], columns=spec.feature_names)


def _log_bundle(settings: Settings, result, run_id: str, verification: pd.DataFrame | None) -> dict:
    """Convert, verify and sign the lean scorer once; log it under `scorer/` of the run."""
    import mlflow

    spec = result.model.spec
    if verification is None:
        verification = pd.concat([result.holdout, result.reference_sample])
    rows = verification[spec.feature_names]
    files = bundle.build_bundle(result.model, rows, run_id, signing.ensure_key(settings))
    for path, part in bundle.artifact_parts(files).items():
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifacts(str(bundle.write_files(Path(tmp), part)), artifact_path=path)
    return json.loads(files[bundle.META_FILE])


def _log_regression_facts(result, spec: ModelSpec, data_path: Path | None) -> None:
    """Params and metrics of a regression run: the R² floor, out-of-fold and holdout R²."""
    import mlflow

    mlflow.log_params(
        {
            "model": spec.name,
            "kind": "regression",
            "candidate": result.best.name,
            "seed": result.model.info["seed"],
            "r2_floor": spec.objective.floor,
            "data_path": str(data_path or spec.data.path),
            **{f"rows_{k}": v for k, v in result.rows.items()},
        }
    )
    for score in result.candidates:
        if score.failure is None:
            mlflow.log_metrics({f"cv_{score.name}_r2": score.r2, f"cv_{score.name}_rmse": score.rmse})
    mlflow.log_metrics({f"holdout_{k}": v for k, v in result.holdout_metrics.items()})
    mlflow.set_tags({"data_sha256": result.model.info["data_sha256"], **provenance()})


def log_and_register(
    settings: Settings,
    result,
    data_path: Path | str | None = None,
    datasets: list[DatasetInput] | None = None,
    verification: pd.DataFrame | None = None,
) -> RegisteredVersion:
    """Log a training run (with its dataset inputs), register its model and make it `challenger`.

    The signed scorer bundle is logged before the version is registered, verified on
    `verification` (the training snapshot; default: holdout plus the reference sample).
    """
    import joblib
    import mlflow

    spec = result.model.spec
    with translated_errors("logging the training run"), tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        experiment_id = _experiment_id(settings, spec.name)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{spec.name}") as run:
            _log_run_facts(result, spec, data_path)
            _log_datasets(datasets or [])
            _log_figures(result, spec, workdir)
            save_reference(settings, spec.name, run.info.run_id, result.reference_sample)
            result.model.info["run_id"] = run.info.run_id
            result.model.info["card"] = _card_facts(result, data_path)
            _log_bundle(settings, result, run.info.run_id, verification)
            joblib.dump(result.model, workdir / "risk_model.joblib")
            with library_logs.without_mlflow_prints():
                info = mlflow.pyfunc.log_model(
                    python_model=str(PYFUNC_CODE),
                    name=MODEL_ARTIFACT,
                    artifacts={"risk_model": str(workdir / "risk_model.joblib")},
                    signature=model_signature(spec),
                    input_example=synthetic_example(spec),
                    pip_requirements=pip_requirements(),
                    registered_model_name=spec.name,
                )
        version = str(info.registered_model_version)
        client(settings).set_registered_model_alias(spec.name, CHALLENGER, version)
        _log_card(settings, run.info.run_id, result.model.info["card"], version, None, workdir)
    return RegisteredVersion(name=spec.name, version=version, run_id=run.info.run_id)


def _card_facts(result, data_path: Path | None) -> dict[str, Any]:
    from clinrisk.card import card_facts

    return card_facts(result, data_path)


def _log_card(
    settings: Settings, run_id: str, facts: dict, version: str, tags: dict | None, workdir: Path
) -> None:
    """Write the card as JSON (the facts), Markdown and HTML under the run's `card/` artifacts."""
    from clinrisk.card import CARD_DIR, FACTS_FILE, gate_from_tags, render

    folder = workdir / CARD_DIR
    folder.mkdir(exist_ok=True)
    (folder / FACTS_FILE).write_text(json.dumps(facts, indent=1, default=str))
    for kind, text in render(facts, version, gate_from_tags(tags or {})).items():
        (folder / f"card.{kind}").write_text(text)
    client(settings).log_artifacts(run_id, str(folder), artifact_path=CARD_DIR)


def load_card(
    settings: Settings, name: str, version: str
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The card facts of a version, its tags (gate decision) and its aliases.

    Raises RegistryError when the version or its card does not exist (versions registered
    before cards had none).
    """
    import mlflow

    from clinrisk.card import CARD_DIR, FACTS_FILE

    with (
        translated_errors(f"reading the model card of {name} version {version}"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        found = client(settings).get_model_version(name, str(version))
        path = mlflow.artifacts.download_artifacts(
            run_id=found.run_id, artifact_path=f"{CARD_DIR}/{FACTS_FILE}", dst_path=tmp
        )
        return json.loads(Path(path).read_text()), dict(found.tags), sorted(found.aliases)


def refresh_card(settings: Settings, name: str, version: str) -> None:
    """Re-write a version's card artifacts with the gate's decision, once it has been tagged."""
    facts, tags, _ = load_card(settings, name, version)
    with (
        translated_errors(f"writing the model card of {name} version {version}"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        run_id = client(settings).get_model_version(name, str(version)).run_id
        _log_card(settings, run_id, facts, str(version), tags, Path(tmp))


def alias_version(settings: Settings, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    with translated_errors(f"reading alias '{alias}' of '{name}'"):
        try:
            return str(client(settings).get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            if exc.error_code == "PERMISSION_DENIED" and not _model_exists(settings, name):
                return None  # MLflow's basic-auth app answers 403, not 404, for a missing model's alias
            raise


def alias_target(settings: Settings, name: str, alias: str) -> tuple[str, str] | None:
    """(version, run id) that an alias names, read without importing MLflow (about 2 s), or None.

    A SQLite store is read with one read-only query of MLflow's own tables; an HTTP(S) server is
    asked with one REST call (`GET /api/2.0/mlflow/registered-models/alias`). None means "not
    answered cheaply" (another store, MLflow workspaces or auth plugins, a missing alias, any
    error): the caller then asks through MLflow (`alias_version`), which reports a missing
    alias or an unreachable registry in the usual words. Never an answer from a cache.
    """
    uri = settings.registry_uri or settings.tracking_uri or ""
    workspaces = os.environ.get("MLFLOW_ENABLE_WORKSPACES", "").lower() in ("1", "true")
    if workspaces or os.environ.get("MLFLOW_WORKSPACE"):
        return None
    if uri.startswith("sqlite:///") and "?" not in uri:
        return _sqlite_alias_target(Path(uri.removeprefix("sqlite:///")), name, alias)
    if uri.startswith(("http://", "https://")) and not os.environ.get("MLFLOW_TRACKING_AUTH"):
        return _rest_alias_target(uri, name, alias)
    return None


# MLflow's registry tables (3.x): an alias row names a version; a deleted version is kept as
# 'Deleted_Internal' (MLflow's own lookup skips it). Any schema change makes the query fail -> None.
_ALIAS_QUERY = """
SELECT a.version, v.run_id FROM registered_model_aliases a
JOIN model_versions v ON v.workspace = a.workspace AND v.name = a.name AND v.version = a.version
WHERE a.workspace = 'default' AND a.name = ? AND a.alias = ? AND v.current_stage != 'Deleted_Internal'
"""


def _sqlite_alias_target(path: Path, name: str, alias: str) -> tuple[str, str] | None:
    import sqlite3
    from urllib.parse import quote

    if not path.is_file():
        return None
    read_only = f"file:{quote(str(path))}?mode=ro"  # never creates the database
    try:
        with contextlib.closing(sqlite3.connect(read_only, uri=True, timeout=10)) as db:
            row = db.execute(_ALIAS_QUERY, (name, alias)).fetchone()
    except sqlite3.Error:
        return None
    return (str(row[0]), str(row[1])) if row and row[1] else None


def _rest_alias_target(uri: str, name: str, alias: str) -> tuple[str, str] | None:
    """One GET with the credentials and TLS settings MLflow's own client reads from the environment."""
    import requests

    env = os.environ.get
    token, user, password = (env(f"MLFLOW_TRACKING_{k}") for k in ("TOKEN", "USERNAME", "PASSWORD"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    insecure = env("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"
    verify = env("MLFLOW_TRACKING_SERVER_CERT_PATH") or not insecure
    try:
        answer = requests.get(
            f"{uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias",
            params={"name": name, "alias": alias},
            headers=headers,
            auth=(user, password) if user and password else None,
            verify=verify,
            cert=env("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None,
            timeout=10,
        )
        found = answer.json().get("model_version", {}) if answer.status_code == 200 else {}
    except (requests.RequestException, ValueError, AttributeError):
        return None
    version, run_id = found.get("version"), found.get("run_id")
    return (str(version), str(run_id)) if version and run_id else None


def _model_exists(settings: Settings, name: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        client(settings).get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise
    return True


def load_version(settings: Settings, name: str, version: str) -> RiskModel:
    """Download one registered version and return its RiskModel (threshold and spec inside)."""
    import joblib
    import mlflow

    with translated_errors(f"loading {name} version {version}"), tempfile.TemporaryDirectory() as tmp:
        client(settings)
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp)
        model: RiskModel = joblib.load(next(Path(local).rglob("risk_model.joblib")))
    model.info["version"] = str(version)
    return model


def bundle_files(settings: Settings, run_id: str) -> dict[str, bytes]:
    """The raw files of a run's scorer bundle (empty when it has none)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=bundle.ARTIFACT_PATH, dst_path=tmp
            )
        except (MlflowException, FileNotFoundError):
            return {}
        return bundle.read_files(Path(local))


def pipeline_bytes(settings: Settings, run_id: str) -> bytes | None:
    """The run's `explainer/pipeline.skops` (read only when an explanation is asked for), or None."""
    import mlflow
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{bundle.EXPLAINER_PATH}/{bundle.PIPELINE_FILE}", dst_path=tmp
            )
        except (MlflowException, FileNotFoundError, OSError):
            return None
        return Path(local).read_bytes()


def load_served(settings: Settings, name: str, version: str, *, promoted: bool = True) -> bundle.ServedModel:
    """One version as a verified ServedModel (ONNX + signed JSON; nothing unpickled).

    With `promoted`, the version must carry a signed promotion record. Raises RegistryError
    when MLflow fails, BundleError or SigningError when the version must not be served.
    """
    key = signing.load_key(settings)
    try:
        with translated_errors(f"loading {name} version {version}"):
            found = client(settings).get_model_version(name, str(version))
            promotion = {}
            if promoted:
                bundle.verify_promotion(found.tags, key, name=name, version=str(version), run_id=found.run_id)
                promotion = {k: found.tags[k] for k in (bundle.PROMOTION_TAG, bundle.PROMOTION_SIGNATURE_TAG)}
            files = bundle_files(settings, found.run_id)
        served = bundle.read_bundle(files, key, name=name, version=str(version), run_id=found.run_id)
    except bundle.BundleError as exc:
        raise bundle.BundleError(f"{name} version {version} is refused: {exc}") from None
    served.promotion = promotion
    served.pipeline_loader = functools.partial(pipeline_bytes, settings, found.run_id)
    return served


def load_served_alias(settings: Settings, name: str, alias: str = CHAMPION) -> bundle.ServedModel:
    """The verified bundle of the version an alias names (the champion must be signed as promoted)."""
    version = alias_version(settings, name, alias)
    if version is None:
        raise NoChampionError(f"no version of '{name}' has the alias '{alias}'; run `clinrisk train` first")
    return load_served(settings, name, version, promoted=alias == CHAMPION)


def log_bundle(settings: Settings, run_id: str, files: dict[str, bytes]) -> None:
    """Attach a scorer bundle to an existing run (used by `clinrisk models upgrade`)."""
    with (
        translated_errors(f"logging the scorer bundle to run {run_id}"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        for path, part in bundle.artifact_parts(files).items():
            folder = bundle.write_files(Path(tmp) / path, part)
            client(settings).log_artifacts(run_id, str(folder), path)


def load_alias(settings: Settings, name: str, alias: str = CHAMPION) -> RiskModel:
    version = alias_version(settings, name, alias)
    if version is None:
        raise NoChampionError(f"no version of '{name}' has the alias '{alias}'; run `clinrisk train` first")
    return load_version(settings, name, version)


def reference_path(settings: Settings, name: str, run_id: str) -> Path:
    """Where a run's drift reference lives: the private state directory, never MLflow."""
    return settings.home / "references" / name / f"{run_id}.parquet"


def save_reference(settings: Settings, name: str, run_id: str, sample: pd.DataFrame) -> Path:
    """Keep the training sample (patient rows) beside the other protected data, owner-only."""
    path = reference_path(settings, name, run_id)
    settings.ensure_home()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(handle, "wb") as out:
        sample.to_parquet(out)
    return path


def load_reference(settings: Settings, name: str, version: str) -> pd.DataFrame:
    """The training-data sample recorded with a version, used as the drift reference.

    Read from the private state directory; versions logged before it moved there keep
    theirs as an MLflow artifact.
    """
    import mlflow

    with (
        translated_errors(f"loading the reference sample of {name} version {version}"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        run_id = client(settings).get_model_version(name, version).run_id
        local = reference_path(settings, name, run_id)
        if local.is_file():
            return pd.read_parquet(local)
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp
        )
        return pd.read_parquet(path)


def set_alias(settings: Settings, name: str, alias: str, version: str) -> None:
    with translated_errors(f"setting alias '{alias}' of '{name}' to version {version}"):
        client(settings).set_registered_model_alias(name, alias, str(version))


def delete_alias(settings: Settings, name: str, alias: str) -> None:
    with translated_errors(f"removing alias '{alias}' of '{name}'"):
        client(settings).delete_registered_model_alias(name, alias)


def version_status(tags: dict[str, str]) -> str:
    """The gate's decision, or "rolled back" when a rollback came after its last promotion."""
    rolled_back = tags.get("champion.rolled_back_at", "")
    if rolled_back and rolled_back >= tags.get("champion.promoted_at", ""):
        return "rolled back"
    return tags.get("gate.decision", "")


def set_version_tags(settings: Settings, name: str, version: str, tags: dict[str, Any]) -> None:
    with translated_errors(f"tagging {name} version {version}"):
        mlflow_client = client(settings)
        for key, value in tags.items():
            text = value if isinstance(value, str) else json.dumps(value)
            mlflow_client.set_model_version_tag(name, str(version), key, text)


def version_tags(settings: Settings, name: str, version: str) -> dict[str, str]:
    with translated_errors(f"reading {name} version {version}"):
        return dict(client(settings).get_model_version(name, str(version)).tags)


def log_run_artifacts(settings: Settings, run_id: str, directory: Path, artifact_path: str) -> None:
    """Attach files (e.g. a monitoring report) to an existing run."""
    with translated_errors(f"logging artifacts to run {run_id}"):
        client(settings).log_artifacts(run_id, str(directory), artifact_path=artifact_path)


def run_inputs(settings: Settings, run_id: str) -> list[dict[str, Any]]:
    """The dataset inputs of a run: name, digest, context and tags of each."""
    with translated_errors(f"reading the inputs of run {run_id}"):
        inputs = client(settings).get_run(run_id).inputs.dataset_inputs
    return [
        {
            "name": i.dataset.name,
            "digest": i.dataset.digest,
            "tags": {t.key: t.value for t in i.tags},
        }
        for i in inputs
    ]


def latest_version(settings: Settings, name: str) -> str | None:
    """The newest registered version of a model, or None when it has none."""
    from mlflow.exceptions import MlflowException

    with translated_errors(f"listing versions of '{name}'"):
        try:
            found = client(settings).search_model_versions(f"name='{name}'")
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None
            raise
    return str(max(int(v.version) for v in found)) if found else None


def version_run_id(settings: Settings, name: str, version: str) -> str:
    with translated_errors(f"reading {name} version {version}"):
        return client(settings).get_model_version(name, str(version)).run_id


def gate_reasons(tags: dict[str, str]) -> list[str]:
    """The gate's reasons as tagged on a version (none before the gate ran)."""
    from clinrisk.card import gate_from_tags

    return (gate_from_tags(tags) or {}).get("reasons") or []


def list_versions(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Every version with its aliases, gate decision and key holdout metrics."""
    with translated_errors(f"listing versions of '{name}'"):
        mlflow_client = client(settings)
        versions = mlflow_client.search_model_versions(f"name='{name}'")
        rows = []
        for found in sorted(versions, key=lambda v: int(v.version)):
            # search results carry no aliases; a direct read does.
            mv = mlflow_client.get_model_version(name, found.version)
            metrics = mlflow_client.get_run(mv.run_id).data.metrics
            rows.append(
                {
                    "version": str(mv.version),
                    "aliases": sorted(mv.aliases),
                    "created": pd.Timestamp(mv.creation_timestamp, unit="ms").isoformat(timespec="seconds"),
                    "gate": version_status(mv.tags),
                    # The gate's Wilson estimates and McNemar p-value, as it tagged them.
                    "gate_precision": mv.tags.get("gate.challenger.precision"),
                    "gate_recall": mv.tags.get("gate.challenger.recall"),
                    "gate_p_value": mv.tags.get("gate.p_value"),
                    "gate_compared_with": mv.tags.get("gate.compared_with"),
                    "gate_reasons": gate_reasons(mv.tags),
                    **{
                        k: metrics.get(f"holdout_{k}")
                        for k in ("recall", "precision", "roc_auc", "pr_auc", "r2")
                    },
                }
            )
        return rows
