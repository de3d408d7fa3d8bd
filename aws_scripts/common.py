"""What every step shares: the environment's parameters, boto3 clients, errors and the plan.

A step is a list of `Action`s: with `--dry-run` their descriptions are printed and nothing
is called; otherwise each one runs in order. boto3 reads credentials the usual way
(environment, profile, instance role) and honours `AWS_ENDPOINT_URL`, which the tests point
at moto's server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).parent / "environments"
ENVIRONMENTS = ("staging", "production")
SERVICES = ("web", "prefect-worker", "mlflow", "prefect-server")
REQUIRED = ("name", "region", "prefix", "artifact_bucket", "ecr_repository", "url", "network")


class DeployError(Exception):
    """A deployment step failed; the message names the resource and what to do."""


@dataclass(frozen=True)
class Environment:
    """One environment's parameters, read from `environments/<name>.yaml`."""

    name: str
    region: str
    prefix: str
    artifact_bucket: str
    ecr_repository: str
    url: str
    network: dict[str, Any]
    database_url_parameters: dict[str, str]
    internal_urls: dict[str, str]
    services: dict[str, dict[str, int]]

    @property
    def cluster(self) -> str:
        return self.prefix

    @property
    def log_group(self) -> str:
        return f"/ecs/{self.prefix}"

    def family(self, service: str) -> str:
        return f"{self.prefix}-{service}"


NESTED = {
    "network": ("vpc_id", "subnets", "security_groups"),
    "database_url_parameters": ("mlflow", "prefect", "predictions"),
    "internal_urls": ("mlflow", "prefect_api"),
    "services": SERVICES,
}


def section(raw: dict, *keys: str) -> dict:
    """raw[k1][k2]..., or {} where a level is missing or not a mapping."""
    for key in keys:
        raw = raw.get(key) if isinstance(raw, dict) else None
    return raw if isinstance(raw, dict) else {}


def missing_keys(raw: dict) -> list[str]:
    """Every required key absent from an environment file, as a dotted path."""
    missing = [key for key in REQUIRED if key not in raw]
    missing += [
        f"{name}.{key}" for name, keys in NESTED.items() for key in keys if key not in section(raw, name)
    ]
    sizes = [
        (s, size) for s in SERVICES if section(raw, "services", s) for size in ("count", "cpu", "memory")
    ]
    return missing + [f"services.{s}.{size}" for s, size in sizes if size not in section(raw, "services", s)]


def load_environment(name: str, config_dir: Path = CONFIG_DIR) -> Environment:
    """Read and check one environment file; a missing file or key raises DeployError naming it."""
    path = config_dir / f"{name}.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise DeployError(f"cannot read the parameters of '{name}' from {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise DeployError(f"{path}: expected a mapping of parameters, got {type(raw).__name__}")
    missing = missing_keys(raw)
    if missing:
        raise DeployError(f"{path}: missing {', '.join(missing)}")
    return Environment(**{key: raw[key] for key in Environment.__dataclass_fields__})


def client(environment: Environment, service: str):
    """A boto3 client in the environment's region (endpoint from AWS_ENDPOINT_URL if set)."""
    import boto3

    return boto3.client(service, region_name=environment.region)


def account_id(environment: Environment) -> str:
    with aws_errors("reading the account id (sts get-caller-identity)"):
        return client(environment, "sts").get_caller_identity()["Account"]


@contextlib.contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Turn boto3's errors (no credentials, no endpoint, an API refusal) into DeployError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise DeployError(f"{action} failed: {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise DeployError(f"{action} failed: {exc}") from None


@dataclass(frozen=True)
class Action:
    """One change a step makes (or confirms): printed in a dry run, called otherwise."""

    description: str
    call: Callable[[], Any]


def execute(actions: list[Action], dry_run: bool, echo: Callable[[str], None] = print) -> list[Any]:
    """Print the plan (dry run) or run it, each action with its description as the error context."""
    results = []
    for action in actions:
        if dry_run:
            echo(f"[dry-run] {action.description}")
            continue
        echo(action.description)
        with aws_errors(action.description):
            results.append(action.call())
    return results
