"""Everything that talks to MLflow: tracking runs, the model registry and its aliases.

MLflow changes its API often (stages became aliases, `artifact_path` became `name`); this is
the only module that imports it, so an upgrade touches one file. MLflow and network errors
are translated into `RegistryError` here.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clinrisk.errors import NoChampionError, RegistryError
from clinrisk.model import RiskModel
from clinrisk.settings import PROJECT_ROOT, Settings
from clinrisk.spec import ModelSpec, file_sha256

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT = "model"
REFERENCE_ARTIFACT = "reference/reference.parquet"


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str


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


def _pyfunc_class():
    import mlflow.pyfunc

    class RiskModelPyfunc(mlflow.pyfunc.PythonModel):
        """MLflow's view of a RiskModel: validates the input and returns probability and decision."""

        def load_context(self, context):
            import joblib

            self.risk_model: RiskModel = joblib.load(context.artifacts["risk_model"])

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            from clinrisk.data import validate_frame

            frame = validate_frame(pd.DataFrame(model_input), self.risk_model.spec, require_target=False)
            return self.risk_model.predict(frame)

    return RiskModelPyfunc


def _log_figures(result, spec: ModelSpec, workdir: Path) -> None:
    import mlflow

    from clinrisk.evaluate import save_confusion_matrix, save_pr_curve, save_predicted_vs_actual

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


def _log_run_facts(result, spec: ModelSpec, data_path: Path | None) -> None:
    import mlflow

    if spec.is_regression:
        _log_regression_facts(result, spec, data_path)
        return
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


def log_and_register(settings: Settings, result, data_path: Path | None = None) -> RegisteredVersion:
    """Log a training run, register its model and point the `challenger` alias at it."""
    import joblib
    import mlflow

    spec = result.model.spec
    with translated_errors("logging the training run"), tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        experiment_id = _experiment_id(settings, spec.name)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{spec.name}") as run:
            _log_run_facts(result, spec, data_path)
            _log_figures(result, spec, workdir)
            result.reference_sample.to_parquet(workdir / "reference.parquet")
            mlflow.log_artifact(str(workdir / "reference.parquet"), artifact_path="reference")
            result.model.info["run_id"] = run.info.run_id
            joblib.dump(result.model, workdir / "risk_model.joblib")
            info = mlflow.pyfunc.log_model(
                python_model=_pyfunc_class()(),
                name=MODEL_ARTIFACT,
                artifacts={"risk_model": str(workdir / "risk_model.joblib")},
                signature=model_signature(spec),
                input_example=result.holdout[spec.feature_names].head(3),
                pip_requirements=pip_requirements(),
                registered_model_name=spec.name,
            )
        version = str(info.registered_model_version)
        client(settings).set_registered_model_alias(spec.name, CHALLENGER, version)
    return RegisteredVersion(name=spec.name, version=version, run_id=run.info.run_id)


def alias_version(settings: Settings, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when the alias (or the model) does not exist."""
    from mlflow.exceptions import MlflowException

    with translated_errors(f"reading alias '{alias}' of '{name}'"):
        try:
            return str(client(settings).get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
                return None
            raise


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


def load_alias(settings: Settings, name: str, alias: str = CHAMPION) -> RiskModel:
    version = alias_version(settings, name, alias)
    if version is None:
        raise NoChampionError(f"no version of '{name}' has the alias '{alias}'; run `clinrisk train` first")
    return load_version(settings, name, version)


def load_reference(settings: Settings, name: str, version: str) -> pd.DataFrame:
    """The training-data sample recorded with a version, used as the drift reference."""
    import mlflow

    with (
        translated_errors(f"loading the reference sample of {name} version {version}"),
        tempfile.TemporaryDirectory() as tmp,
    ):
        run_id = client(settings).get_model_version(name, version).run_id
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=REFERENCE_ARTIFACT, dst_path=tmp
        )
        return pd.read_parquet(path)


def set_alias(settings: Settings, name: str, alias: str, version: str) -> None:
    with translated_errors(f"setting alias '{alias}' of '{name}' to version {version}"):
        client(settings).set_registered_model_alias(name, alias, str(version))


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


def version_run_id(settings: Settings, name: str, version: str) -> str:
    with translated_errors(f"reading {name} version {version}"):
        return client(settings).get_model_version(name, str(version)).run_id


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
                    "gate": mv.tags.get("gate.decision", ""),
                    **{
                        k: metrics.get(f"holdout_{k}")
                        for k in ("recall", "precision", "roc_auc", "pr_auc", "r2")
                    },
                }
            )
        return rows
