"""Step 3: register the ECS (Fargate) task definitions of web, prefect-worker, mlflow, prefect-server.

    python -m aws_scripts.taskdefs --env staging --image URI [--dry-run]

Every container runs the one application image with its own
`dockerized_service_definitions/<service>/run.sh`, as under docker compose. The PostgreSQL
(RDS) URLs are never written into a task definition: ECS reads them at start from the SSM
parameters named in the environment file. The step also creates the log group and the two
IAM roles the tasks need (execution: pull, logs, parameters; task: the artifact bucket).
"""

from __future__ import annotations

import json

import click

from aws_scripts.cli import env_options
from aws_scripts.common import SERVICES, Action, DeployError, Environment, account_id, client, execute

PORTS = {"web": 8000, "mlflow": 5000, "prefect-server": 4200, "prefect-worker": 8080}
# Which SSM parameter (by its key in database_url_parameters) fills which variable.
DATABASE_VARIABLES = {
    "web": {"CLINRISK_PREDICTION_LOG_URL": "predictions"},
    "prefect-worker": {"CLINRISK_PREDICTION_LOG_URL": "predictions"},
    "mlflow": {"MLFLOW_BACKEND_STORE_URI": "mlflow"},
    "prefect-server": {"PREFECT_API_DATABASE_CONNECTION_URL": "prefect"},
}
ECS_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}
# What ECS itself needs to start a task (AmazonECSTaskExecutionRolePolicy's actions), written
# inline so that the role says everything it may do in one place.
PULL_AND_LOG = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
]


def role_names(environment: Environment) -> tuple[str, str]:
    return f"{environment.prefix}-execution", f"{environment.prefix}-task"


def parameter_arn(environment: Environment, account: str, name: str) -> str:
    return f"arn:aws:ssm:{environment.region}:{account}:parameter/{name.lstrip('/')}"


def check_parameters(environment: Environment) -> None:
    """Every database URL parameter must exist before a task refers to it."""
    names = [environment.database_url_parameters[key] for key in ("mlflow", "prefect", "predictions")]
    found = client(environment, "ssm").get_parameters(Names=names, WithDecryption=False)
    missing = sorted(set(names) - {p["Name"] for p in found["Parameters"]})
    if missing:
        raise DeployError(
            f"missing SSM parameter(s) {', '.join(missing)}: store each RDS URL first, e.g. "
            f"aws ssm put-parameter --type SecureString --name {missing[0]} --value postgresql+...://..."
        )


def ensure_role(environment: Environment, name: str, policy: dict) -> str:
    """Create the role if missing and (re)write its inline policy; return its ARN."""
    iam = client(environment, "iam")
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(ECS_TRUST))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    return arn


def execution_policy(environment: Environment, account: str) -> dict:
    arns = [parameter_arn(environment, account, n) for n in environment.database_url_parameters.values()]
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ssm:GetParameters", "Resource": arns}],
    }


def task_policy(environment: Environment) -> dict:
    bucket = f"arn:aws:s3:::{environment.artifact_bucket}"
    actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"]
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": [bucket, f"{bucket}/*"]}],
    }


def ensure_log_group(environment: Environment) -> None:
    logs = client(environment, "logs")
    existing = logs.describe_log_groups(logGroupNamePrefix=environment.log_group)["logGroups"]
    if not any(group["logGroupName"] == environment.log_group for group in existing):
        logs.create_log_group(logGroupName=environment.log_group)
        logs.put_retention_policy(logGroupName=environment.log_group, retentionInDays=90)


def environment_variables(environment: Environment, service: str) -> dict[str, str]:
    """The plain (non-secret) variables of one container."""
    clients = {
        "MLFLOW_TRACKING_URI": environment.internal_urls["mlflow"],
        "PREFECT_API_URL": environment.internal_urls["prefect_api"],
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    }
    return {
        "web": {**clients, "CLINRISK_USERS_FILE": "/data/users/users.json"},
        "prefect-worker": clients,
        "mlflow": {"MLFLOW_ARTIFACTS_DESTINATION": f"s3://{environment.artifact_bucket}/mlflow"},
        "prefect-server": {"PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false"},
    }[service]


def container(environment: Environment, service: str, image: str, account: str) -> dict:
    """One container definition: the shared image, the service's run.sh, logs to CloudWatch."""
    variables = environment_variables(environment, service)
    secrets = [
        {
            "name": variable,
            "valueFrom": parameter_arn(environment, account, environment.database_url_parameters[key]),
        }
        for variable, key in DATABASE_VARIABLES[service].items()
    ]
    return {
        "name": service,
        "image": image,
        "essential": True,
        "command": ["bash", f"dockerized_service_definitions/{service}/run.sh"],
        "portMappings": [{"containerPort": PORTS[service], "protocol": "tcp"}],
        "environment": [{"name": k, "value": v} for k, v in sorted(variables.items())],
        "secrets": secrets,
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": environment.log_group,
                "awslogs-region": environment.region,
                "awslogs-stream-prefix": service,
            },
        },
    }


def register(environment: Environment, service: str, image: str) -> str:
    """Register a new revision of one service's task definition; return its ARN."""
    account = account_id(environment)
    execution, task = role_names(environment)
    iam = client(environment, "iam")
    size = environment.services[service]
    answer = client(environment, "ecs").register_task_definition(
        family=environment.family(service),
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu=str(size["cpu"]),
        memory=str(size["memory"]),
        executionRoleArn=iam.get_role(RoleName=execution)["Role"]["Arn"],
        taskRoleArn=iam.get_role(RoleName=task)["Role"]["Arn"],
        containerDefinitions=[container(environment, service, image, account)],
    )
    return answer["taskDefinition"]["taskDefinitionArn"]


def plan(environment: Environment, image: str) -> list[Action]:
    execution, task = role_names(environment)
    actions = [
        Action(
            f"check SSM parameters {', '.join(environment.database_url_parameters.values())}",
            lambda: check_parameters(environment),
        ),
        Action(f"create or confirm log group {environment.log_group}", lambda: ensure_log_group(environment)),
        Action(
            f"create or confirm IAM role {execution} (pull, logs, read the database parameters)",
            lambda: ensure_role(
                environment,
                execution,
                execution_policy(environment, account_id(environment)),
            ),
        ),
        Action(
            f"create or confirm IAM role {task} (read and write s3://{environment.artifact_bucket})",
            lambda: ensure_role(environment, task, task_policy(environment)),
        ),
    ]
    for service in SERVICES:
        actions.append(
            Action(
                f"register task definition {environment.family(service)} with {image}",
                lambda service=service: register(environment, service, image),
            )
        )
    return actions


@click.command()
@env_options
@click.option("--image", required=True, help="The image URI to run (from aws_scripts.image).")
def main(environment: Environment, dry_run: bool, image: str) -> None:
    """Register the task definitions of every service of an environment."""
    execute(plan(environment, image), dry_run)


if __name__ == "__main__":
    main()
