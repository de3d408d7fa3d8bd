"""Every step in order: bucket, image, task definitions, services.

    python -m aws_scripts.deploy --env staging [--tag TAG | --image URI] [--dry-run]

`--image` skips the build and deploys an image already in ECR (what promote does).
"""

from __future__ import annotations

import click

from aws_scripts import bucket, image, services, taskdefs
from aws_scripts.cli import env_options
from aws_scripts.common import Environment, execute


def deploy(
    environment: Environment, image_uri: str, dry_run: bool, counts: dict[str, int] | None = None
) -> None:
    """Bucket, task definitions and services of one environment for an image already pushed."""
    execute(bucket.plan(environment), dry_run)
    execute(taskdefs.plan(environment, image_uri), dry_run)
    execute(services.plan(environment, counts), dry_run)


@click.command()
@env_options
@click.option("--tag", default=None, help="Build and push this tag (default: the short git commit).")
@click.option("--image", "image_uri", default=None, help="Deploy this image URI; build nothing.")
def main(environment: Environment, dry_run: bool, tag: str | None, image_uri: str | None) -> None:
    """Deploy one environment: artifact bucket, image, task definitions, services."""
    if image_uri is None:
        tag = tag or image.current_tag()
        if dry_run:
            for line in image.plan(environment, tag):
                print(f"[dry-run] {line}")
            image_uri = (
                f"<account>.dkr.ecr.{environment.region}.amazonaws.com/{environment.ecr_repository}:{tag}"
            )
        else:
            image_uri = image.push(environment, tag)
    deploy(environment, image_uri, dry_run)


if __name__ == "__main__":
    main()
