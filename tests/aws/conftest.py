"""Fixtures of the aws_scripts tests: moto's server (real HTTP, every AWS API the scripts use),
a VPC with two subnets in it, the RDS URL parameters, and environment files pointing at them."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
import yaml

from aws_scripts.common import CONFIG_DIR, ENVIRONMENTS
from support import AWS_TEST_ENV, aws_client, moto_server


@pytest.fixture(scope="session")
def moto_url():
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url, monkeypatch):
    """boto3 in this process and its children talks to a freshly reset moto server only."""
    requests.post(f"{moto_url}/moto-api/reset", timeout=30).raise_for_status()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**AWS_TEST_ENV, "AWS_ENDPOINT_URL": moto_url}.items():
        monkeypatch.setenv(name, value)
    return moto_url


@pytest.fixture
def network(aws) -> dict:
    """What a real account provides before the first deployment: a VPC, subnets, a security group."""
    ec2 = aws_client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"eu-west-1{zone}")[
            "Subnet"
        ]["SubnetId"]
        for i, zone in enumerate("ab")
    ]
    group = ec2.create_security_group(GroupName="clinrisk", Description="clinrisk", VpcId=vpc)["GroupId"]
    return {"vpc_id": vpc, "subnets": subnets, "security_groups": [group]}


@pytest.fixture
def config_dir(tmp_path, network) -> Path:
    """The shipped environment files with the test VPC in place of the REPLACE-ME values."""
    directory = tmp_path / "environments"
    directory.mkdir()
    for name in ENVIRONMENTS:
        raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
        raw["network"] = network
        (directory / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    return directory


@pytest.fixture
def database_parameters(config_dir) -> dict[str, str]:
    """The RDS URLs stored as SecureString parameters, as the operator does once per environment."""
    ssm = aws_client("ssm")
    stored = {}
    for name in ENVIRONMENTS:
        raw = yaml.safe_load((config_dir / f"{name}.yaml").read_text())
        for key, parameter in raw["database_url_parameters"].items():
            value = f"postgresql+psycopg2://{key}:secret-{name}@rds.{name}.internal:5432/{key}"
            ssm.put_parameter(Name=parameter, Value=value, Type="SecureString")
            stored[parameter] = value
    return stored
