"""Integration: the stack's MLflow server proxies artifacts to an S3 bucket (moto's S3 server).

The MLflow server is the real `mlflow server` command line that `clinrisk up` runs, with
`--artifacts-destination s3://...`; the model is trained and registered by clinrisk's own
code and loaded back by the web service's champion holder.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import boto3
import pytest

from clinrisk import credentials, promotion, registry
from clinrisk.errors import ClinriskError
from clinrisk.retraining import load_and_validate
from clinrisk.serving.champion import FROM_CACHE, FROM_REGISTRY, READY, ChampionHolder, RegistrySource
from clinrisk.settings import load_settings
from clinrisk.stack import control_plane, processes
from clinrisk.stack.config import StackConfig, environment
from clinrisk.train import train_model
from support import AWS_TEST_ENV, REPO, free_port, moto_server, stop_process, wait_for_http, write_fast_spec

BUCKET = "clinrisk-artifacts-test"
PREFIX = "mlflow"


@pytest.fixture(scope="module")
def s3_url():
    with moto_server() as url:
        boto3.client("s3", endpoint_url=url, **boto_credentials()).create_bucket(
            Bucket=BUCKET,
            CreateBucketConfiguration={"LocationConstraint": AWS_TEST_ENV["AWS_DEFAULT_REGION"]},
        )
        yield url


def boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_TEST_ENV["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="module")
def s3_mlflow(s3_url, tmp_path_factory):
    """The stack's own MLflow command, artifacts in s3://BUCKET/PREFIX; only it has the credentials."""
    home = tmp_path_factory.mktemp("s3-stack")
    config = StackConfig(
        home=home,
        project_dir=REPO,
        mlflow_port=free_port(),
        artifacts_destination=f"s3://{BUCKET}/{PREFIX}",
        s3_endpoint_url=s3_url,
    )
    credentials.generate(home)
    secrets = credentials.load(home)
    env = {**os.environ, **environment(config), **AWS_TEST_ENV}
    env |= control_plane.service_environments(config, secrets)["mlflow"]
    log = (home / "mlflow.log").open("w")
    process = subprocess.Popen(
        processes.mlflow_command(config),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_http(f"{config.mlflow_url}/health", timeout=120, process=process)
        control_plane.ensure_mlflow_accounts(config.mlflow_url, secrets)
        yield config.mlflow_url, secrets
    finally:
        stop_process(process)
        log.close()


def bucket_keys(s3_url: str) -> list[str]:
    pages = boto3.client("s3", endpoint_url=s3_url, **boto_credentials()).get_paginator("list_objects_v2")
    return [item["Key"] for page in pages.paginate(Bucket=BUCKET) for item in page.get("Contents", [])]


def register(settings) -> str:
    spec, frame, sha = load_and_validate(settings, "stroke", None)
    return registry.log_and_register(settings, train_model(spec, frame, data_sha256=sha)).version


@pytest.fixture
def client_settings(tmp_path, s3_mlflow, monkeypatch):
    """A client of the tracking server with no S3 credentials or endpoint of its own: the writer."""
    s3_mlflow, secrets = s3_mlflow
    for name in (*AWS_TEST_ENV, "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in credentials.client_environment(secrets, "writer").items():
        monkeypatch.setenv(name, value)
    return load_settings(
        home=tmp_path / "home",
        spec_dir=write_fast_spec(tmp_path / "specs"),
        tracking_uri=s3_mlflow,
        experiment_name=f"s3-{tmp_path.name}",
    )


@pytest.mark.slow
def test_a_registered_model_lands_in_the_bucket_and_serves(client_settings, s3_url):
    """Registered through the proxy, a version's files are in the bucket and the service loads it."""
    version = register(client_settings)
    promotion.promote(client_settings, "stroke", version, reason="test")
    run_id = registry.version_run_id(client_settings, "stroke", version)
    source = registry.client(client_settings).get_model_version("stroke", version).source
    model_id = source.removeprefix("models:/")  # MLflow 3 keeps a logged model beside its run

    keys = bucket_keys(s3_url)
    assert keys and all(key.startswith(f"{PREFIX}/") for key in keys)
    # The signed scorer bundle the service loads; patient rows (the drift reference) never go here.
    assert any(f"/{run_id}/artifacts/scorer/model.onnx" in key for key in keys), keys
    assert not any("reference.parquet" in key for key in keys), keys
    model_keys = [key for key in keys if f"/models/{model_id}/artifacts/" in key]
    assert any(key.endswith("/risk_model.joblib") for key in model_keys), (source, keys)
    assert any(key.endswith("/MLmodel") for key in model_keys), keys

    holder = ChampionHolder(client_settings, RegistrySource(client_settings, "stroke"))
    state = holder.refresh()
    assert (state.status, state.loaded.version, state.loaded.origin) == (READY, version, FROM_REGISTRY)
    assert state.loaded.model.info["run_id"] == run_id


@pytest.mark.slow
def test_hot_swap_and_cache_work_unchanged_on_s3(client_settings, s3_mlflow, tmp_path):
    """A promotion swaps the served version; with the registry gone, the cached one still serves."""
    first = register(client_settings)
    promotion.promote(client_settings, "stroke", first, reason="test")
    holder = ChampionHolder(client_settings, RegistrySource(client_settings, "stroke"))
    assert holder.refresh().loaded.version == first

    second = register(client_settings)
    promotion.promote(client_settings, "stroke", second, reason="test")
    swapped = holder.refresh()
    assert (swapped.status, swapped.loaded.version) == (READY, second)

    offline = load_settings(
        home=client_settings.home,
        spec_dir=client_settings.spec_dir,
        tracking_uri=f"http://127.0.0.1:{free_port()}",
    )
    restarted = ChampionHolder(offline, RegistrySource(offline, "stroke")).refresh()
    assert (restarted.loaded.version, restarted.loaded.origin) == (second, FROM_CACHE)


@pytest.mark.parametrize("destination", ["s3://", "s3:///", "s3:////"])
def test_a_destination_without_a_bucket_is_refused(destination, tmp_path):
    """CLINRISK_ARTIFACTS_DESTINATION=s3:// with no bucket fails at start-up, naming the variable."""
    with pytest.raises(ClinriskError, match=r"CLINRISK_ARTIFACTS_DESTINATION.*names no bucket"):
        load_settings(home=tmp_path, artifacts_destination=destination)


def test_the_stack_passes_the_destination_and_endpoint_to_mlflow(tmp_path: Path):
    """`clinrisk up` serves artifacts from the destination and exports the S3 endpoint."""
    config = StackConfig(
        home=tmp_path, project_dir=REPO, artifacts_destination="s3://b/p", s3_endpoint_url="http://s3:9000"
    )
    command = processes.mlflow_command(config)
    assert command[command.index("--artifacts-destination") + 1] == "s3://b/p"
    assert "--serve-artifacts" in command and "--no-serve-artifacts" not in command
    assert environment(config)["MLFLOW_S3_ENDPOINT_URL"] == "http://s3:9000"
    local = processes.mlflow_command(StackConfig(home=tmp_path, project_dir=REPO))
    assert "--no-serve-artifacts" in local and "MLFLOW_S3_ENDPOINT_URL" not in environment(
        StackConfig(home=tmp_path, project_dir=REPO)
    )
