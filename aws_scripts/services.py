"""Step 4: create or update the ECS services: web (N tasks behind an ELBv2 target group),
prefect-worker (M tasks), mlflow and prefect-server (one each).

    python -m aws_scripts.services --env staging [--dry-run]

Each service runs the newest revision of its task definition (`aws_scripts.taskdefs`). The
load balancer routes only to web tasks whose `/ready` answers 200, i.e. that serve a champion.
"""

from __future__ import annotations

import click

from aws_scripts.cli import env_options
from aws_scripts.common import SERVICES, Action, DeployError, Environment, client, execute
from aws_scripts.taskdefs import PORTS


def target_group_name(environment: Environment) -> str:
    return f"{environment.prefix}-web"[:32]


def ensure_cluster(environment: Environment) -> str:
    return client(environment, "ecs").create_cluster(clusterName=environment.cluster)["cluster"]["clusterArn"]


def ensure_target_group(environment: Environment) -> str:
    """An IP target group on the web port, healthy when /ready answers 200."""
    elb = client(environment, "elbv2")
    name = target_group_name(environment)
    try:
        return elb.describe_target_groups(Names=[name])["TargetGroups"][0]["TargetGroupArn"]
    except elb.exceptions.TargetGroupNotFoundException:
        pass
    return elb.create_target_group(
        Name=name,
        Protocol="HTTP",
        Port=PORTS["web"],
        VpcId=environment.network["vpc_id"],
        TargetType="ip",
        HealthCheckPath="/ready",
        Matcher={"HttpCode": "200"},
    )["TargetGroups"][0]["TargetGroupArn"]


def ensure_load_balancer(environment: Environment, target_group_arn: str) -> str:
    """An internet-facing application load balancer whose port 80 forwards to the web tasks."""
    elb = client(environment, "elbv2")
    try:
        balancer = elb.describe_load_balancers(Names=[environment.prefix])["LoadBalancers"][0]
    except elb.exceptions.LoadBalancerNotFoundException:
        balancer = elb.create_load_balancer(
            Name=environment.prefix,
            Subnets=environment.network["subnets"],
            SecurityGroups=environment.network["security_groups"],
            Scheme="internet-facing",
            Type="application",
        )["LoadBalancers"][0]
    arn = balancer["LoadBalancerArn"]
    if not elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]:
        forward = [{"Type": "forward", "TargetGroupArn": target_group_arn}]
        elb.create_listener(LoadBalancerArn=arn, Protocol="HTTP", Port=80, DefaultActions=forward)
    return balancer["DNSName"]


def desired_count(environment: Environment, service: str, counts: dict[str, int]) -> int:
    return counts.get(service, environment.services[service]["count"])


def latest_task_definition(environment: Environment, service: str) -> str:
    """The highest active revision of the service's family (family:N, compared as numbers)."""
    ecs = client(environment, "ecs")
    family = environment.family(service)
    pages = ecs.get_paginator("list_task_definitions").paginate(familyPrefix=family, status="ACTIVE")
    revisions = {}
    for arn in (arn for page in pages for arn in page["taskDefinitionArns"]):
        name, revision = arn.rsplit("/", 1)[-1].rsplit(":", 1)
        if name == family:  # the prefix also matches longer family names
            revisions[int(revision)] = arn
    if not revisions:
        raise DeployError(f"no task definition {family}: run aws_scripts.taskdefs first")
    return revisions[max(revisions)]


def create_or_update(environment: Environment, service: str, count: int) -> str:
    """Point the service at the newest task definition with `count` tasks, creating it if needed."""
    ecs = client(environment, "ecs")
    task_definition = latest_task_definition(environment, service)
    found = ecs.describe_services(cluster=environment.cluster, services=[service])["services"]
    if any(s["status"] == "ACTIVE" for s in found):
        ecs.update_service(
            cluster=environment.cluster, service=service, taskDefinition=task_definition, desiredCount=count
        )
        return f"updated {service}: {count} task(s) of {task_definition}"
    ecs.create_service(
        cluster=environment.cluster,
        serviceName=service,
        taskDefinition=task_definition,
        desiredCount=count,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": environment.network["subnets"],
                "securityGroups": environment.network["security_groups"],
                "assignPublicIp": "DISABLED",
            }
        },
        # A rolling update starts new tasks before it stops old ones: no gap in capacity.
        deploymentConfiguration={"minimumHealthyPercent": 100, "maximumPercent": 200},
        **(load_balancing(environment) if service == "web" else {}),
    )
    return f"created {service}: {count} task(s) of {task_definition}"


def load_balancing(environment: Environment) -> dict:
    """The web service's target group, and time for the first champion load before health counts."""
    target = {"targetGroupArn": ensure_target_group(environment), "containerName": "web"}
    return {
        "loadBalancers": [{**target, "containerPort": PORTS["web"]}],
        "healthCheckGracePeriodSeconds": 180,
    }


def plan(environment: Environment, counts: dict[str, int] | None = None) -> list[Action]:
    counts = counts or {}
    actions = [
        Action(f"create or confirm ECS cluster {environment.cluster}", lambda: ensure_cluster(environment)),
        Action(
            f"create or confirm target group {target_group_name(environment)} (port {PORTS['web']},"
            f" health /ready) and load balancer {environment.prefix} (HTTP 80 -> target group)",
            lambda: ensure_load_balancer(environment, ensure_target_group(environment)),
        ),
    ]
    for service in SERVICES:
        count = desired_count(environment, service, counts)
        behind = f" behind {target_group_name(environment)}" if service == "web" else ""
        family = environment.family(service)
        actions.append(
            Action(
                f"create or update service {service}: {count} task(s) of {family}{behind}",
                lambda service=service, count=count: create_or_update(environment, service, count),
            )
        )
    return actions


@click.command()
@env_options
@click.option(
    "--web-tasks", type=click.IntRange(min=1), default=None, help="N web tasks (default: env file)."
)
@click.option(
    "--worker-tasks", type=click.IntRange(min=0), default=None, help="M workers (default: env file)."
)
def main(environment: Environment, dry_run: bool, web_tasks: int | None, worker_tasks: int | None) -> None:
    """Create or update the ECS services of an environment."""
    counts = {k: v for k, v in (("web", web_tasks), ("prefect-worker", worker_tasks)) if v is not None}
    execute(plan(environment, counts), dry_run)


if __name__ == "__main__":
    main()
