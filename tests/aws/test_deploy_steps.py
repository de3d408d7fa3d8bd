"""Each deployment step against moto's server: the resources exist and are what the step says."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from aws_scripts import bucket, deploy, image, services, taskdefs
from aws_scripts.common import SERVICES, load_environment
from support import REPO, aws_client

pytestmark = pytest.mark.slow  # every test talks to moto's server


class RecordingDocker:
    """The docker CLI edge: records each command line (and stdin) instead of running it."""

    def __init__(self):
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, arguments: list[str], stdin: str | None = None) -> None:
        self.calls.append((arguments, stdin))


def run(command, *arguments: str):
    return CliRunner().invoke(command.main, list(arguments), catch_exceptions=False)


def test_a_dry_run_prints_the_plan_and_creates_nothing(config_dir, aws):
    """`deploy --dry-run` lists every step and leaves the account empty, even without credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_SECRET")}
    env["AWS_SCRIPTS_CONFIG_DIR"] = str(config_dir)
    done = subprocess.run(
        [sys.executable, "-m", "aws_scripts.deploy", "--env", "staging", "--dry-run", "--tag", "t1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(line.startswith("[dry-run] ") for line in lines)
    text = done.stdout
    assert "s3://clinrisk-staging-artifacts" in text and "docker push" in text
    assert all(f"register task definition clinrisk-staging-{s} " in text for s in SERVICES)
    assert "service web: 1 task(s)" in text
    assert aws_client("s3").list_buckets()["Buckets"] == []
    assert aws_client("ecr").describe_repositories()["repositories"] == []
    assert aws_client("ecs").list_clusters()["clusterArns"] == []


def test_the_bucket_step_creates_then_confirms(config_dir):
    """The bucket is created versioned and closed to the public; a second run only confirms it."""
    environment = load_environment("staging", config_dir)
    first = run(bucket, "--env", "staging", "--config-dir", str(config_dir))
    second = run(bucket, "--env", "staging", "--config-dir", str(config_dir))
    assert first.exit_code == second.exit_code == 0
    assert bucket.create_if_missing(environment) == "confirmed s3://clinrisk-staging-artifacts"
    s3 = aws_client("s3")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["clinrisk-staging-artifacts"]
    assert s3.get_bucket_versioning(Bucket="clinrisk-staging-artifacts")["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket="clinrisk-staging-artifacts")["PublicAccessBlockConfiguration"]
    assert all(block.values())


def test_the_image_step_creates_the_repository_and_pushes_with_its_token(config_dir):
    """ECR gets the repository; docker builds, logs in with ECR's own token on stdin, and pushes."""
    environment = load_environment("staging", config_dir)
    docker = RecordingDocker()
    uri = image.push(environment, "t1", docker=docker)
    repository = aws_client("ecr").describe_repositories(repositoryNames=["clinrisk-app"])["repositories"][0]
    assert uri == f"{repository['repositoryUri']}:t1"
    assert repository["imageTagMutability"] == "IMMUTABLE"
    token = aws_client("ecr").get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().split(":", 1)[1]
    (build, _), (login, login_stdin), (push, _) = docker.calls
    assert build[:3] == ["build", "--file", image.DOCKERFILE] and uri in build
    assert login[-1] == uri.split("/")[0] and "--password-stdin" in login and login_stdin == password
    assert push == ["push", uri]


def test_an_image_already_in_ecr_is_not_rebuilt(config_dir):
    """A tag already pushed is kept (tags are immutable): no docker command runs."""
    environment = load_environment("staging", config_dir)
    image.push(environment, "t1", docker=RecordingDocker())
    media = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media, "config": {}, "layers": []})
    aws_client("ecr").put_image(repositoryName="clinrisk-app", imageManifest=manifest, imageTag="t1")
    docker = RecordingDocker()
    assert image.push(environment, "t1", docker=docker).endswith(":t1")
    assert docker.calls == []


def test_task_definitions_read_the_database_urls_from_parameters(config_dir, database_parameters):
    """Four Fargate task definitions; each RDS URL is an SSM reference, never a plain value."""
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/clinrisk-app:t1"
    result = run(taskdefs, "--env", "staging", "--config-dir", str(config_dir), "--image", uri)
    assert result.exit_code == 0, result.output
    ecs = aws_client("ecs")
    definitions = {
        s: ecs.describe_task_definition(taskDefinition=f"clinrisk-staging-{s}")["taskDefinition"]
        for s in SERVICES
    }
    expected = {
        "web": "CLINRISK_PREDICTION_LOG_URL",
        "prefect-worker": "CLINRISK_PREDICTION_LOG_URL",
        "mlflow": "MLFLOW_BACKEND_STORE_URI",
        "prefect-server": "PREFECT_API_DATABASE_CONNECTION_URL",
    }
    for service, definition in definitions.items():
        (container,) = definition["containerDefinitions"]
        assert container["image"] == uri and definition["requiresCompatibilities"] == ["FARGATE"]
        assert container["command"] == ["bash", f"dockerized_service_definitions/{service}/run.sh"]
        (secret,) = container["secrets"]
        assert secret["name"] == expected[service]
        assert (
            secret["valueFrom"].startswith("arn:aws:ssm:eu-west-1:")
            and "/clinrisk/staging/" in secret["valueFrom"]
        )
        assert not any(value in json.dumps(definition) for value in database_parameters.values())
        assert container["logConfiguration"]["options"]["awslogs-group"] == "/ecs/clinrisk-staging"
    mlflow_env = {
        e["name"]: e["value"] for e in definitions["mlflow"]["containerDefinitions"][0]["environment"]
    }
    assert mlflow_env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://clinrisk-staging-artifacts/mlflow"
    groups = aws_client("logs").describe_log_groups(logGroupNamePrefix="/ecs/clinrisk-staging")["logGroups"]
    assert [g["logGroupName"] for g in groups] == ["/ecs/clinrisk-staging"]
    iam = aws_client("iam")
    assert (
        definitions["web"]["executionRoleArn"]
        == iam.get_role(RoleName="clinrisk-staging-execution")["Role"]["Arn"]
    )
    task_policy = iam.get_role_policy(
        RoleName="clinrisk-staging-task", PolicyName="clinrisk-staging-task-policy"
    )
    assert "arn:aws:s3:::clinrisk-staging-artifacts/*" in json.dumps(task_policy["PolicyDocument"])


@pytest.mark.parametrize(
    "missing", ["/clinrisk/staging/mlflow-database-url", "/clinrisk/staging/prefect-database-url"]
)
def test_a_missing_database_parameter_stops_before_registering(config_dir, database_parameters, missing):
    """Without an RDS URL parameter the step exits 1 naming it, and registers nothing."""
    aws_client("ssm").delete_parameter(Name=missing)
    result = CliRunner().invoke(
        taskdefs.main, ["--env", "staging", "--config-dir", str(config_dir), "--image", "repo:t1"]
    )
    assert result.exit_code == 1
    assert missing in result.output and "Traceback" not in result.output
    assert aws_client("ecs").list_task_definitions()["taskDefinitionArns"] == []


def services_of(cluster: str) -> dict[str, dict]:
    ecs = aws_client("ecs")
    found = ecs.describe_services(cluster=cluster, services=list(SERVICES))["services"]
    return {s["serviceName"]: s for s in found if s["status"] == "ACTIVE"}


def test_services_run_n_web_tasks_behind_the_target_group_and_m_workers(config_dir, database_parameters):
    """web gets N tasks behind a /ready-checked target group on a listening load balancer; workers M."""
    environment = load_environment("staging", config_dir)
    deploy.execute(taskdefs.plan(environment, "repo:t1"), dry_run=False)
    options = ["--env", "staging", "--config-dir", str(config_dir)]
    assert run(services, *options, "--web-tasks", "3", "--worker-tasks", "2").exit_code == 0

    found = services_of("clinrisk-staging")
    assert {name: s["desiredCount"] for name, s in found.items()} == {
        "web": 3,
        "prefect-worker": 2,
        "mlflow": 1,
        "prefect-server": 1,
    }
    elb = aws_client("elbv2")
    (group,) = elb.describe_target_groups(Names=["clinrisk-staging-web"])["TargetGroups"]
    assert (group["HealthCheckPath"], group["Port"], group["TargetType"]) == ("/ready", 8000, "ip")
    assert found["web"]["loadBalancers"][0]["targetGroupArn"] == group["TargetGroupArn"]
    (balancer,) = elb.describe_load_balancers(Names=["clinrisk-staging"])["LoadBalancers"]
    (listener,) = elb.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    assert listener["DefaultActions"][0]["TargetGroupArn"] == group["TargetGroupArn"]


def test_a_second_deployment_updates_the_services_in_place(config_dir, database_parameters):
    """A new image and new counts update the same services to the new task definition revisions."""
    environment = load_environment("staging", config_dir)
    deploy.deploy(environment, "repo:t1", dry_run=False)
    deploy.deploy(environment, "repo:t2", dry_run=False, counts={"web": 2})
    found = services_of("clinrisk-staging")
    assert set(found) == set(SERVICES) and found["web"]["desiredCount"] == 2
    ecs = aws_client("ecs")
    for service in found.values():
        definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        assert definition["containerDefinitions"][0]["image"] == "repo:t2" and definition["revision"] == 2
    assert len(aws_client("elbv2").describe_target_groups()["TargetGroups"]) == 1


def test_staging_and_production_are_separate(config_dir, database_parameters):
    """Each environment has its own bucket, cluster, task families and load balancer."""
    for name in ("staging", "production"):
        deploy.deploy(load_environment(name, config_dir), "repo:t1", dry_run=False)
    assert {b["Name"] for b in aws_client("s3").list_buckets()["Buckets"]} == {
        "clinrisk-staging-artifacts",
        "clinrisk-production-artifacts",
    }
    assert services_of("clinrisk-production")["web"]["desiredCount"] == 3
    assert services_of("clinrisk-staging")["web"]["desiredCount"] == 1
    production = aws_client("ecs").describe_task_definition(taskDefinition="clinrisk-production-mlflow")[
        "taskDefinition"
    ]
    assert (
        "/clinrisk/production/mlflow-database-url"
        in production["containerDefinitions"][0]["secrets"][0]["valueFrom"]
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.pop("region"), "missing region"),
        (lambda raw: raw["services"].pop("web"), "missing services.web"),
        (lambda raw: raw["network"].pop("subnets"), "missing network.subnets"),
        (
            lambda raw: raw["database_url_parameters"].pop("prefect"),
            "missing database_url_parameters.prefect",
        ),
        (lambda raw: raw["services"]["web"].pop("memory"), "missing services.web.memory"),
        (
            lambda raw: raw.update(internal_urls="none"),
            "missing internal_urls.mlflow, internal_urls.prefect_api",
        ),
    ],
)
def test_a_broken_environment_file_is_named(config_dir, edit, message):
    """A missing key exits 1 with the file and the key, before any AWS call."""
    import yaml

    path = config_dir / "staging.yaml"
    raw = yaml.safe_load(path.read_text())
    edit(raw)
    path.write_text(yaml.safe_dump(raw))
    path.with_name("production.yaml").write_text("- not a mapping\n")
    result = CliRunner().invoke(bucket.main, ["--env", "staging", "--config-dir", str(config_dir)])
    assert result.exit_code == 1 and message in result.output and str(path) in result.output
    production = CliRunner().invoke(bucket.main, ["--env", "production", "--config-dir", str(config_dir)])
    assert production.exit_code == 1 and "expected a mapping" in production.output
    assert aws_client("s3").list_buckets()["Buckets"] == []


@pytest.mark.parametrize(
    ("step", "options", "expected"),
    [
        (bucket, [], "[dry-run] block public access to s3://clinrisk-production-artifacts"),
        (
            image,
            ["--tag", "t9"],
            "[dry-run] docker push <account>.dkr.ecr.eu-west-1.amazonaws.com/clinrisk-app:t9",
        ),
        (
            taskdefs,
            ["--image", "repo:t9"],
            "[dry-run] register task definition clinrisk-production-web with repo:t9",
        ),
        (services, ["--web-tasks", "5"], "[dry-run] create or update service web: 5 task(s)"),
    ],
)
def test_each_step_has_a_dry_run_that_changes_nothing(config_dir, step, options, expected):
    """Every step prints its plan under --dry-run and leaves the account as it was."""
    result = run(step, "--env", "production", "--config-dir", str(config_dir), "--dry-run", *options)
    assert result.exit_code == 0 and expected in result.output
    assert aws_client("s3").list_buckets()["Buckets"] == []
    assert aws_client("ecr").describe_repositories()["repositories"] == []
    assert aws_client("ecs").list_task_definitions()["taskDefinitionArns"] == []
    assert aws_client("ecs").list_clusters()["clusterArns"] == []


def test_docker_missing_is_a_clear_error(monkeypatch):
    """Without the docker CLI on PATH the image step names what to install, with no traceback."""
    from aws_scripts.common import DeployError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DeployError, match="install the Docker CLI"):
        image.run_docker(["version"])


def test_the_default_tag_is_the_checkout_commit():
    """The image tag defaults to the short git commit of the checkout."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    assert commit.startswith(image.current_tag())
