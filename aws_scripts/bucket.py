"""Step 1: create or confirm the MLflow artifact bucket (versioned, no public access).

python -m aws_scripts.bucket --env staging [--dry-run]
"""

from __future__ import annotations

import click

from aws_scripts.cli import env_options
from aws_scripts.common import Action, Environment, client, execute


def bucket_exists(s3, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


def create_if_missing(environment: Environment) -> str:
    s3 = client(environment, "s3")
    name = environment.artifact_bucket
    if bucket_exists(s3, name):
        return f"confirmed s3://{name}"
    location = {} if environment.region == "us-east-1" else {"LocationConstraint": environment.region}
    s3.create_bucket(Bucket=name, **({"CreateBucketConfiguration": location} if location else {}))
    return f"created s3://{name}"


def plan(environment: Environment) -> list[Action]:
    """Create the bucket if missing; versioning keeps overwritten artifacts; block public access."""
    name = environment.artifact_bucket
    closed = dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )

    def s3():  # a client only when the plan runs: a dry run needs no credentials
        return client(environment, "s3")

    return [
        Action(
            f"create or confirm bucket s3://{name} in {environment.region}",
            lambda: create_if_missing(environment),
        ),
        Action(
            f"turn on versioning of s3://{name}",
            lambda: s3().put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"}),
        ),
        Action(
            f"block public access to s3://{name}",
            lambda: s3().put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=closed),
        ),
    ]


@click.command()
@env_options
def main(environment: Environment, dry_run: bool) -> None:
    """Create or confirm the artifact bucket of an environment."""
    execute(plan(environment), dry_run)


if __name__ == "__main__":
    main()
