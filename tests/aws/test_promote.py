"""promote-environment against a real staging service: gunicorn `clinrisk serve` on a trained
registry, with AWS on moto's server. Production changes only after a passing smoke test."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aws_scripts import deploy, promote
from aws_scripts.common import SERVICES, load_environment
from clinrisk import registry, signing
from clinrisk.web.users import add_user
from support import aws_client, free_port, wait_for_http
from web.web_support import gunicorn_service, service_env

pytestmark = pytest.mark.slow
PASSWORD = "smoke-test password"
STAGING_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/clinrisk-app:tested"


@pytest.fixture(scope="module")
def staging_web(trained_settings, tmp_path_factory) -> dict:
    """The clinrisk service (auth on, user `smoke`) serving the trained champion."""
    home = tmp_path_factory.mktemp("staging-web")
    add_user(home / "users.json", "smoke", PASSWORD)
    # The trainer's signing key: the service verifies the bundle and promotion record with it.
    key = signing.key_path(trained_settings)
    env = service_env(
        home, trained_settings.spec_dir, trained_settings.tracking_uri, signing_key_file=str(key)
    )
    with gunicorn_service(env, workers=1) as service:
        wait_for_http(f"{service.url}/ready", timeout=120, process=service.process)
        version = registry.alias_version(trained_settings, "stroke", registry.CHAMPION)
        yield {"url": service.url, "version": version}


@pytest.fixture
def staging_deployed(config_dir, database_parameters, monkeypatch):
    deploy.deploy(load_environment("staging", config_dir), STAGING_IMAGE, dry_run=False)
    monkeypatch.setenv("CLINRISK_SMOKE_USER", "smoke")
    monkeypatch.setenv("CLINRISK_SMOKE_PASSWORD", PASSWORD)
    return config_dir


def promote_with(config_dir, url: str, version: str):
    arguments = ["--expect-version", version, "--staging-url", url, "--config-dir", str(config_dir)]
    return CliRunner().invoke(promote.main, arguments)


def production_services() -> dict[str, str]:
    """Each production service and the image its task definition runs."""
    ecs = aws_client("ecs")
    if not any(arn.endswith("/clinrisk-production") for arn in ecs.list_clusters()["clusterArns"]):
        return {}
    found = ecs.describe_services(cluster="clinrisk-production", services=list(SERVICES))["services"]
    return {
        s["serviceName"]: ecs.describe_task_definition(taskDefinition=s["taskDefinition"])["taskDefinition"][
            "containerDefinitions"
        ][0]["image"]
        for s in found
        if s["status"] == "ACTIVE"
    }


def test_promotion_deploys_the_image_that_passed_on_staging(staging_deployed, staging_web):
    """Staging answers with the expected version, so production runs staging's exact image."""
    result = promote_with(staging_deployed, staging_web["url"], staging_web["version"])
    assert result.exit_code == 0, result.output
    assert f"answered with model version {staging_web['version']}" in result.output
    assert production_services() == dict.fromkeys(SERVICES, STAGING_IMAGE)
    web = aws_client("ecs").describe_services(cluster="clinrisk-production", services=["web"])["services"][0]
    assert web["desiredCount"] == 3


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong version", "answered with model version"),
        ("no credentials", "answered 401"),
        ("unreachable", "is unreachable"),
    ],
)
def test_a_failed_smoke_test_leaves_production_untouched(
    staging_deployed, staging_web, monkeypatch, case, message
):
    """Wrong version, refused request or no answer: exit 1, say why, create nothing in production."""
    url, version = staging_web["url"], staging_web["version"]
    if case == "wrong version":
        version = f"{version}0"
    elif case == "no credentials":
        monkeypatch.delenv("CLINRISK_SMOKE_USER")
    else:
        url = f"http://127.0.0.1:{free_port()}"
    result = promote_with(staging_deployed, url, version)
    assert result.exit_code == 1
    assert "smoke test" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert production_services() == {}


def test_promotion_needs_a_deployed_staging(config_dir, database_parameters):
    """With no staging web service there is nothing to promote: exit 1 and a hint."""
    result = promote_with(config_dir, "http://127.0.0.1:9", "1")
    assert result.exit_code == 1 and "deploy staging first" in result.output
    assert production_services() == {}


def test_a_dry_run_promotion_smoke_tests_and_prints_production_plan(staging_deployed, staging_web):
    """--dry-run still runs the smoke test, then prints production's plan and changes nothing."""
    arguments = ["--expect-version", staging_web["version"], "--staging-url", staging_web["url"], "--dry-run"]
    result = CliRunner().invoke(promote.main, [*arguments, "--config-dir", str(staging_deployed)])
    assert result.exit_code == 0, result.output
    assert "smoke test passed" in result.output
    assert f"[dry-run] register task definition clinrisk-production-web with {STAGING_IMAGE}" in result.output
    assert "[dry-run] create or update service web: 3 task(s)" in result.output
    assert production_services() == {}
