"""Step 2: build the application image and push it to ECR (the repository is created if missing).

    python -m aws_scripts.image --env staging [--tag TAG] [--dry-run]

ECR calls go through boto3; building, logging in and pushing go through the `docker` CLI,
the same Dockerfile as docker-compose.yaml. The registry password is passed on stdin.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

import click

from aws_scripts.cli import env_options
from aws_scripts.common import DeployError, Environment, aws_errors, client

DOCKERFILE = "dockerized_service_definitions/app/Dockerfile"
Docker = Callable[[list[str], str | None], None]


@dataclass(frozen=True)
class Registry:
    """Where to push: `<account>.dkr.ecr.<region>.amazonaws.com/<repository>` and how to log in."""

    repository_uri: str
    username: str
    password: str

    @property
    def host(self) -> str:
        return self.repository_uri.split("/", 1)[0]


def run_docker(arguments: list[str], stdin: str | None = None) -> None:
    """Run one `docker` command; a failure raises DeployError with the command named."""
    try:
        done = subprocess.run(["docker", *arguments], input=stdin, text=True, check=False)
    except OSError as exc:
        raise DeployError(f"cannot run docker ({exc}); install the Docker CLI") from None
    if done.returncode != 0:
        raise DeployError(f"`docker {' '.join(arguments[:2])} ...` exited with {done.returncode}")


def current_tag() -> str:
    """The short git commit of the checkout, the default image tag."""
    done = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise DeployError("no git commit to tag the image with; pass --tag")
    return done.stdout.strip()


def ensure_repository(environment: Environment) -> Registry:
    """Create the ECR repository if missing (scan on push) and fetch a login token."""
    ecr = client(environment, "ecr")
    name = environment.ecr_repository
    try:
        repository = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        repository = ecr.create_repository(
            repositoryName=name,
            imageScanningConfiguration={"scanOnPush": True},
            imageTagMutability="IMMUTABLE",
        )["repository"]
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    username, password = base64.b64decode(token).decode().split(":", 1)
    return Registry(repository["repositoryUri"], username, password)


def docker_commands(image: str, registry_host: str) -> list[tuple[list[str], str]]:
    """The docker command lines, each with what it does, in order (the login reads stdin)."""
    return [
        (["build", "--file", DOCKERFILE, "--tag", image, "."], f"build {image} from {DOCKERFILE}"),
        (["login", "--username", "AWS", "--password-stdin", registry_host], f"log in to {registry_host}"),
        (["push", image], f"push {image}"),
    ]


def already_pushed(environment: Environment, tag: str) -> bool:
    """Tags are immutable: an image already pushed under this tag is kept, not rebuilt."""
    ecr = client(environment, "ecr")
    try:
        ecr.describe_images(repositoryName=environment.ecr_repository, imageIds=[{"imageTag": tag}])
    except ecr.exceptions.ImageNotFoundException:
        return False
    return True


def push(environment: Environment, tag: str, docker: Docker = run_docker) -> str:
    """Create or confirm the repository, then build, log in and push; return the image URI."""
    with aws_errors(f"preparing ECR repository {environment.ecr_repository}"):
        registry = ensure_repository(environment)
        image = f"{registry.repository_uri}:{tag}"
        if already_pushed(environment, tag):
            print(f"{image} is already in ECR: not rebuilt")
            return image
    for arguments, description in docker_commands(image, registry.host):
        print(f"docker: {description}")
        docker(arguments, registry.password if arguments[0] == "login" else None)
    return image


def plan(environment: Environment, tag: str) -> list[str]:
    """What `push` does, with the account left as a placeholder (a dry run makes no call)."""
    host = f"<account>.dkr.ecr.{environment.region}.amazonaws.com"
    image = f"{host}/{environment.ecr_repository}:{tag}"
    lines = [f"create or confirm ECR repository {environment.ecr_repository} (immutable tags, scan on push)"]
    lines.append(f"skip the build if {image} exists")
    return lines + [f"docker {' '.join(arguments)}" for arguments, _ in docker_commands(image, host)]


@click.command()
@env_options
@click.option("--tag", default=None, help="Image tag (default: the short git commit).")
def main(environment: Environment, dry_run: bool, tag: str | None) -> None:
    """Build the application image and push it to the environment's ECR repository."""
    tag = tag or current_tag()
    if dry_run:
        for line in plan(environment, tag):
            print(f"[dry-run] {line}")
        return
    print(push(environment, tag))


if __name__ == "__main__":
    main()
