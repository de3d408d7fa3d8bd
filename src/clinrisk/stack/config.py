"""What the local stack is made of: ports, URLs, the state directory and the shared environment."""

from __future__ import annotations

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
    web_workers: int = 2
    pool: str = POOL

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
    def prefect_api_url(self) -> str:
        return f"{self.prefect_url}/api"

    @property
    def reports_index(self) -> Path:
        return self.home / "reports" / "index.html"

    @property
    def run_dir(self) -> Path:
        """Pid files and the readiness marker of the running stack."""
        return self.home / "run"

    @property
    def ready_file(self) -> Path:
        return self.run_dir / "ready"


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
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        # Browsers may call the API only from the UI's own origin (Prefect's default is any).
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": config.prefect_url,
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def prepare_home(config: StackConfig) -> None:
    """Create the state directories and forget the pid files and readiness of a previous run."""
    for directory in ("prefect", "mlartifacts", "reports", "run"):
        (config.home / directory).mkdir(parents=True, exist_ok=True)
    for stale in config.run_dir.iterdir():
        stale.unlink()


def check_ports_free(config: StackConfig) -> None:
    """Fail before starting anything when a port is taken, naming the option that moves it."""
    ports = {
        "--service-port": config.service_port,
        "--mlflow-port": config.mlflow_port,
        "--prefect-port": config.prefect_port,
    }
    if len(set(ports.values())) < len(ports):
        raise ClinriskError(f"the stack needs three different ports, got {ports}")
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
