"""What the local stack is made of: ports, URLs, the state directory and the shared environment."""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from clinrisk.errors import ClinriskError

POOL = "clinrisk-pool"
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class StackConfig:
    """One local stack: where it keeps its state and where each server listens."""

    home: Path
    project_dir: Path
    host: str = "127.0.0.1"
    service_port: int = 8000
    mlflow_port: int = 5000
    prefect_port: int = 4200
    evidently_port: int = 8001
    web_workers: int = 2
    pool: str = POOL
    artifacts_destination: str | None = None  # e.g. s3://bucket/prefix; None: <home>/mlartifacts
    s3_endpoint_url: str | None = None
    evidently_workspace: Path | None = None  # None: <home>/evidently-workspace, as the settings default
    reports_dir: Path | None = None  # None: <home>/reports, as the settings default

    @property
    def client_host(self) -> str:
        """The address clients use: a wildcard bind is reached on the loopback."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def service_url(self) -> str:
        return f"http://{self.client_host}:{self.service_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.client_host}:{self.mlflow_port}"

    @property
    def prefect_url(self) -> str:
        return f"http://{self.client_host}:{self.prefect_port}"

    @property
    def evidently_url(self) -> str:
        return f"http://{self.client_host}:{self.evidently_port}"

    @property
    def workspace(self) -> Path:
        """The Evidently workspace the flows write to and the Evidently UI reads."""
        return self.evidently_workspace or self.home / "evidently-workspace"

    @property
    def ports(self) -> dict[str, int]:
        """Each service's port, by the option that moves it."""
        return {
            "--service-port": self.service_port,
            "--mlflow-port": self.mlflow_port,
            "--prefect-port": self.prefect_port,
            "--evidently-port": self.evidently_port,
        }

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def reports_index(self) -> Path:
        return (self.reports_dir or self.home / "reports") / "index.html"

    @property
    def run_dir(self) -> Path:
        """Pid files and the readiness marker of the running stack."""
        return self.home / "run"

    @property
    def ready_file(self) -> Path:
        return self.run_dir / "ready"

    @property
    def urls_file(self) -> Path:
        """Where the running stack's URLs are kept for `clinrisk flows run` in another shell."""
        return self.home / "stack.json"


def environment(config: StackConfig) -> dict[str, str]:
    """The variables every process of the stack shares, so they all see one state directory."""
    prefect_home = config.home / "prefect"
    return {
        "CLINRISK_HOME": str(config.home),
        "MLFLOW_TRACKING_URI": config.mlflow_url,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": config.prefect_api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow 3's usage data, off as Prefect's is
        "DO_NOT_TRACK": "true",  # the cross-tool convention MLflow (and Evidently) also read
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        # Browsers may call the API only from the UI's own origin (Prefect's default is any).
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": config.prefect_url,
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        # MLflow's S3 client reads the endpoint of a non-AWS S3 server from this variable only.
        **({"MLFLOW_S3_ENDPOINT_URL": config.s3_endpoint_url} if config.s3_endpoint_url else {}),
    }


def prepare_home(config: StackConfig) -> None:
    """Create the state directories and forget the pid files and readiness of a previous run."""
    for directory in ("prefect", "mlartifacts", "reports", "run"):
        (config.home / directory).mkdir(parents=True, exist_ok=True)
    config.home.chmod(0o700)  # patient data and secrets: the owner's only, whoever made it first
    config.workspace.mkdir(parents=True, exist_ok=True)
    for stale in config.run_dir.iterdir():
        stale.unlink()
    if not config.reports_index.exists():  # the banner links to it before any flow has run
        from clinrisk.monitoring.index import write_index

        write_index(config.reports_index.parent)
    write_urls(config)


def write_urls(config: StackConfig) -> None:
    """Record where this stack's servers listen, for commands run from another shell."""
    urls = {
        "prefect_api_url": config.prefect_api_url,
        "mlflow_tracking_uri": config.mlflow_url,
        "service_url": config.service_url,
        "evidently_url": config.evidently_url,
    }
    config.urls_file.write_text(json.dumps(urls, indent=2) + "\n")


def forget_stack(config: StackConfig) -> None:
    """Remove the URLs and the readiness marker of a stack that stopped, so that commands in other
    shells say the stack is not running rather than call servers that are gone."""
    config.urls_file.unlink(missing_ok=True)
    config.ready_file.unlink(missing_ok=True)


def read_urls(home: Path) -> dict[str, str]:
    """The URLs a stack started with this state directory recorded; empty when none was started."""
    try:
        return json.loads((home / "stack.json").read_text())
    except (OSError, ValueError):
        return {}


def check_ports_free(config: StackConfig) -> None:
    """Fail before starting anything when a port is taken, naming the option that moves it."""
    ports = config.ports
    if len(set(ports.values())) < len(ports):
        raise ClinriskError(f"the stack needs {len(ports)} different ports, got {ports}")
    for option, port in ports.items():
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                sock.bind((config.host, port))
            except OSError as exc:
                raise ClinriskError(
                    f"port {port} on {config.host} is not free ({exc.strerror}): "
                    f"stop what uses it or choose another with {option}"
                ) from None
