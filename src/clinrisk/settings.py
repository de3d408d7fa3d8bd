"""One settings object, read from the environment (prefix CLINRISK_) and validated at start.

Every path defaults to somewhere inside the state directory `CLINRISK_HOME` (default
`./.clinrisk`), so the whole system runs with no server and no configuration.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinrisk.errors import ClinriskError, SpecError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def _default_spec_dir() -> Path:
    """`./models` when run from a checkout, else the checkout this package was installed from."""
    local = Path("models")
    return local if local.is_dir() else PROJECT_ROOT / "models"


class Settings(BaseSettings):
    """Everything configurable, with defaults that work from a fresh clone."""

    model_config = SettingsConfigDict(env_prefix="CLINRISK_", extra="ignore", populate_by_name=True)

    home: Path = Path(".clinrisk")
    spec_dir: Path = Field(default_factory=_default_spec_dir)
    model_name: str = "stroke"
    tracking_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "CLINRISK_TRACKING_URI")
    )
    registry_uri: str | None = Field(
        default=None, validation_alias=AliasChoices("MLFLOW_REGISTRY_URI", "CLINRISK_REGISTRY_URI")
    )
    artifact_root: str | None = None
    experiment_name: str | None = None
    # Where the MLflow server of `clinrisk up` keeps artifacts, e.g. s3://bucket/prefix (proxied:
    # clients need no bucket credentials). None: a local directory in the state directory.
    artifacts_destination: str | None = None
    s3_endpoint_url: str | None = Field(  # an S3-protocol server other than AWS (MinIO, moto)
        default=None, validation_alias=AliasChoices("MLFLOW_S3_ENDPOINT_URL", "CLINRISK_S3_ENDPOINT_URL")
    )
    # The HMAC key that signs model bundles (default <home>/signing.key, 0600): see clinrisk.signing.
    signing_key_file: Path | None = None

    # Web service.
    auth_enabled: bool = True
    users_file: Path | None = None
    prediction_log_url: str | None = None
    poll_interval_seconds: float = Field(default=30.0, gt=0)
    workers: int = Field(default=2, ge=1)
    max_batch_rows: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=2_000_000, ge=1024)
    fast_path: bool = True
    # Threads for OpenMP/BLAS in training, `predict` and the flows; unset: the cores this process
    # may run on (see clinrisk.threads).
    threads: int | None = Field(default=None, ge=1)
    # Answered predictions not yet in the log, per worker, replayed after a crash (local disk only).
    journal_dir: Path | None = None
    access_log: bool = False  # one line per request; off so the stack's banner stays readable
    # Failed logins allowed per client address and per user name in the window, per worker.
    auth_failure_limit: int = Field(default=10, ge=1)
    auth_failure_window_seconds: float = Field(default=60.0, gt=0)
    # Signs the patient page's session cookie; unset, a random one is kept in CLINRISK_HOME.
    session_secret: str | None = Field(default=None, min_length=32)
    # Reverse proxies in front of the service that set X-Forwarded-For/-Proto (the scaled
    # compose stack's nginx: 1). 0 trusts no such header, so a client cannot pick its address.
    proxy_hops: int = Field(default=0, ge=0, le=5)

    # Monitoring and reports.
    reports_dir: Path | None = None
    evidently_workspace: Path | None = None
    retrain_cooldown_hours: float = Field(default=24.0, ge=0)
    drift_share: float = Field(default=0.2, gt=0, le=1)  # share of drifted features that is "drift"
    recall_floor: float = Field(default=0.5, ge=0, le=1)  # monitored recall below this is a breach
    min_outcome_rows: int = Field(default=50, ge=1)  # labelled rows needed to judge quality

    @field_validator("artifacts_destination")
    @classmethod
    def _bucket_named(cls, value: str | None) -> str | None:
        """An s3:// destination must name a bucket: MLflow would only fail at the first upload."""
        if value is not None and value.startswith("s3://") and not value[len("s3://") :].strip("/"):
            raise ValueError(f"'{value}' names no bucket; use s3://BUCKET or s3://BUCKET/PREFIX")
        return value

    @model_validator(mode="after")
    def _fill_state_paths(self) -> Settings:
        """Place every unset path inside the state directory."""
        home = self.home.resolve()
        object.__setattr__(self, "home", home)
        if self.tracking_uri is None:
            self.tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
        if self.artifact_root is None:
            self.artifact_root = (home / "mlartifacts").as_uri()
        if self.users_file is None:
            self.users_file = home / "users.json"
        if self.prediction_log_url is None:
            self.prediction_log_url = f"sqlite:///{home / 'predictions.db'}"
        if self.journal_dir is None:
            self.journal_dir = home / "journal"
        if self.reports_dir is None:
            self.reports_dir = home / "reports"
        named = self.evidently_workspace is not None
        if self.evidently_workspace is None:
            self.evidently_workspace = home / "evidently-workspace"
        _refuse_glob_characters(
            self.evidently_workspace, "CLINRISK_EVIDENTLY_WORKSPACE" if named else "CLINRISK_HOME"
        )
        return self

    @property
    def spec_path(self) -> Path:
        return self.spec_path_for(self.model_name)

    def spec_path_for(self, model_name: str) -> Path:
        """The spec file of a model named on the CLI or in a URL: one of `spec_dir`'s, never a path."""
        known = sorted(p.stem for p in Path(self.spec_dir).glob("*.yaml"))
        if not MODEL_NAME.fullmatch(model_name or "") or model_name not in known:
            raise SpecError(f"unknown model {model_name!r}: the specs in CLINRISK_SPEC_DIR are {known}")
        return self.spec_dir / f"{model_name}.yaml"

    def ensure_home(self) -> Path:
        """Create the state directory on first use (never at import), readable by its owner only."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(PermissionError):  # not ours (a shared mount): leave it
            self.home.chmod(0o700)  # a directory made by an older release or by hand was 0755
        return self.home


GLOB_CHARACTERS = "*?["


def _refuse_glob_characters(path: Path, variable: str) -> None:
    """Evidently opens its workspace through fsspec, which reads these characters as a pattern:
    such a path fails only after a run, with a traceback, once a version is already registered."""
    found = sorted({c for c in str(path) if c in GLOB_CHARACTERS})
    if found:
        raise invalid_settings(
            [
                f"{variable}: the Evidently workspace {path} contains {' '.join(found)}, "
                "which Evidently reads as a file pattern; choose a path without *, ? or ["
            ]
        )


def invalid_settings(problems: list[str]) -> ClinriskError:
    """The error for settings that cannot be used, one line per problem (each naming its variable)."""
    return ClinriskError("invalid settings:\n  " + "\n  ".join(problems))


def load_settings(**overrides) -> Settings:
    """Build the settings, failing fast with the offending variable named."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            lines.append(f"CLINRISK_{field.upper()}: {error['msg']}")
        raise invalid_settings(lines) from None
