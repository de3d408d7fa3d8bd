"""promote-environment: deploy to production the image that passed a smoke test on staging.

    python -m aws_scripts.promote --expect-version 3 [--staging-url URL] [--dry-run]

The smoke test POSTs one patient (smoke_patient.json) to staging's /predict and requires a
200 answer from model version `--expect-version`. Only then does production get staging's
image (read from staging's running web task definition, so it is exactly the tested image);
otherwise production is left untouched and the command exits 1. Credentials for the
service: CLINRISK_SMOKE_USER and CLINRISK_SMOKE_PASSWORD (HTTP basic auth), if it needs them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import requests

from aws_scripts import deploy
from aws_scripts.cli import reported_errors
from aws_scripts.common import CONFIG_DIR, DeployError, Environment, aws_errors, client, load_environment

PATIENT = Path(__file__).parent / "smoke_patient.json"


def staging_image(staging: Environment) -> str:
    """The image of the task definition staging's web service runs now."""
    ecs = client(staging, "ecs")
    missing = DeployError(f"staging has no web service in cluster {staging.cluster}: deploy staging first")
    with aws_errors(f"reading service web of cluster {staging.cluster}"):
        try:
            found = ecs.describe_services(cluster=staging.cluster, services=["web"])["services"]
        except ecs.exceptions.ClusterNotFoundException:
            raise missing from None
        active = [s for s in found if s["status"] == "ACTIVE"]
        if not active:
            raise missing
        task = ecs.describe_task_definition(taskDefinition=active[0]["taskDefinition"])["taskDefinition"]
    return task["containerDefinitions"][0]["image"]


def smoke_test(url: str, expected_version: str, timeout: float = 30.0) -> str:
    """POST the smoke patient to `url`/predict; return a line of evidence or raise DeployError."""
    user, password = os.environ.get("CLINRISK_SMOKE_USER"), os.environ.get("CLINRISK_SMOKE_PASSWORD", "")
    auth = (user, password) if user else None
    endpoint = f"{url.rstrip('/')}/predict"
    try:
        response = requests.post(endpoint, json=json.loads(PATIENT.read_text()), auth=auth, timeout=timeout)
    except requests.RequestException as exc:
        raise DeployError(f"smoke test: {endpoint} is unreachable ({exc})") from None
    if response.status_code != 200:
        raise DeployError(f"smoke test: {endpoint} answered {response.status_code}: {response.text[:200]}")
    try:
        version = str(response.json()["model"]["version"])
    except (ValueError, KeyError, TypeError):
        raise DeployError(
            f"smoke test: {endpoint} answered without a model version: {response.text[:200]}"
        ) from None
    if version != str(expected_version):
        raise DeployError(
            f"smoke test: {endpoint} answered with model version {version}, expected {expected_version}"
        )
    return f"smoke test passed: {endpoint} answered with model version {version}"


def promote(
    staging: Environment, production: Environment, expected_version: str, url: str, dry_run: bool
) -> str:
    """Smoke-test staging, then deploy its image to production; return the image promoted."""
    image_uri = staging_image(staging)
    print(smoke_test(url, expected_version))
    print(f"promoting {image_uri} to {production.name}")
    deploy.deploy(production, image_uri, dry_run)
    return image_uri


@click.command()
@click.option("--expect-version", required=True, help="The model version staging must answer with.")
@click.option("--staging-url", default=None, help="Staging's base URL (default: url in staging.yaml).")
@click.option(
    "--dry-run", is_flag=True, help="Smoke-test staging and print production's plan; change nothing."
)
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=CONFIG_DIR,
    envvar="AWS_SCRIPTS_CONFIG_DIR",
)
def main(expect_version: str, staging_url: str | None, dry_run: bool, config_dir: Path) -> None:
    """Deploy to production the image that answers the smoke test on staging."""
    with reported_errors():
        staging = load_environment("staging", config_dir)
        production = load_environment("production", config_dir)
        promote(staging, production, expect_version, staging_url or staging.url, dry_run)


if __name__ == "__main__":
    main()
