"""`clinrisk flows run`: a deployment run on the stack's Prefect server, from any shell."""

from __future__ import annotations

import uuid

import click
import pytest
import requests
from click.testing import CliRunner

from clinrisk.cli import main
from clinrisk.flows import deployments
from clinrisk.flows.commands import parse_params
from clinrisk.flows.origin import CLI_TAG
from clinrisk.stack import bootstrap
from flows.prefect_api import deployment_runs
from support import REPO

pytestmark = pytest.mark.xdist_group("prefect-harness")


def flows_run(*args: str):
    return CliRunner().invoke(main, ["flows", "run", *args])


def test_without_a_stack_it_says_how_to_start_one(tmp_path, monkeypatch):
    """It exits 1 naming `make up` and PREFECT_API_URL, and starts no temporary server."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("CLINRISK_HOME", str(tmp_path / "no-stack"))
    result = flows_run("retrain")
    assert result.exit_code == 1
    assert "no Prefect server" in result.stderr and "make up" in result.stderr
    assert "PREFECT_API_URL" in result.stderr and "Traceback" not in result.output


def test_parameters_are_read_as_yaml_scalars():
    """It turns numbers and booleans into values and keeps the rest as text."""
    parsed = parse_params(("window_hours=24", "trigger_retrain=false", "current_path=a b.csv", "x="))
    assert parsed == {"window_hours": 24, "trigger_retrain": False, "current_path": "a b.csv", "x": ""}
    for bad in ("no-equals", "=value"):
        with pytest.raises(click.BadParameter, match=bad):
            parse_params((bad,))


@pytest.fixture
def harness_api(prefect_harness, monkeypatch) -> str:
    """The test harness's API URL in the environment, as the stack's would be."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    monkeypatch.setenv("PREFECT_API_URL", url)
    return url


def test_an_unregistered_deployment_is_named(harness_api):
    """It exits 1 naming the deployment and the server."""
    result = flows_run("nope")
    assert result.exit_code == 1
    assert f"deployment 'nope/stroke' is not registered on {harness_api}" in result.stderr


def test_a_run_is_created_with_its_parameters_and_tagged_as_started_from_the_cli(
    harness_api, retrain_deployment
):
    """It creates a flow run of the deployment with the given parameters, tagged as started from the CLI."""
    result = flows_run(retrain_deployment, "--param", "seed=7", "-p", "model_name=stroke")
    assert result.exit_code == 0, result.output
    (run,) = deployment_runs(retrain_deployment)
    assert run.parameters == {"seed": 7, "model_name": "stroke"}
    assert CLI_TAG in run.tags
    assert f"started {retrain_deployment}: flow run {run.name}" in result.stdout


@pytest.fixture
def model_retrain(prefect_harness) -> str:
    """A model name of its own, with a retrain deployment `retrain/<model>` (its runs never execute)."""
    from clinrisk.flows.retrain import retrain

    model = f"m{uuid.uuid4().hex[:8]}"
    retrain.to_deployment(name=model).apply()
    return model


@pytest.mark.parametrize(
    ("args", "parameters"),
    [
        (["--model", "{model}"], {}),
        (["-p", "model_name={model}"], {"model_name": "{model}"}),
    ],
    ids=["--model", "model_name parameter"],
)
def test_a_flow_name_runs_the_models_own_deployment(harness_api, model_retrain, args, parameters):
    """`flows run retrain --model M` (or `-p model_name=M`) runs deployment `retrain/M`."""
    result = flows_run("retrain", *(a.format(model=model_retrain) for a in args))
    assert result.exit_code == 0, result.output
    (run,) = deployment_runs(f"retrain/{model_retrain}")
    assert run.parameters == {k: v.format(model=model_retrain) for k, v in parameters.items()}
    assert f"started retrain/{model_retrain}: flow run {run.name}" in result.stdout


def test_a_full_deployment_name_and_a_model_together_are_refused(harness_api):
    """It exits 2 naming --model when the deployment is named in full as well."""
    result = flows_run("retrain/stroke", "--model", "diabetes")
    assert result.exit_code == 2 and "--model" in result.output and "Traceback" not in result.output


def test_an_upgrade_deletes_the_single_model_deployments(harness_api):
    """It deletes `retrain/retrain` that an older prefect.yaml registered, keeps `monitor/monitor` when a
    model is named `monitor`, and does nothing the second time."""
    from clinrisk.flows.monitor import monitor
    from clinrisk.flows.retrain import retrain

    retrain.to_deployment(name="retrain").apply()
    monitor.to_deployment(name="monitor").apply()
    templates, api = deployments.read_templates(REPO), harness_api.rstrip("/")
    assert bootstrap.retire_single_model_deployments(api, templates, ["monitor", "stroke"]) == [
        "retrain/retrain"
    ]
    assert requests.get(f"{api}/deployments/name/retrain/retrain", timeout=30).status_code == 404
    assert requests.get(f"{api}/deployments/name/monitor/monitor", timeout=30).status_code == 200
    assert bootstrap.retire_single_model_deployments(api, templates, ["monitor", "stroke"]) == []


def test_existing_deployments_pairs_each_flow_with_its_own_deployments(harness_api):
    """It names the `flow/model` deployments the server has, not a flow and a name each found elsewhere."""
    from clinrisk.flows.monitor import monitor
    from clinrisk.flows.retrain import retrain

    first, second = (f"m{uuid.uuid4().hex[:8]}" for _ in range(2))
    retrain.to_deployment(name=first).apply()
    monitor.to_deployment(name=second).apply()
    asked = [f"{flow}/{model}" for flow in ("retrain", "monitor", "ingest") for model in (first, second)]
    found = bootstrap.existing_deployments(harness_api.rstrip("/"), asked)
    assert found == {f"retrain/{first}", f"monitor/{second}"}
    assert bootstrap.existing_deployments(harness_api.rstrip("/"), []) == set()


def test_existing_deployments_asks_once_however_many_names(harness_api, monkeypatch):
    """When every name is registered, one deployments query answers for all of them (not one each)."""
    from prefect.client.orchestration import SyncPrefectClient

    from clinrisk.flows.retrain import retrain

    models = [f"m{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for model in models:
        retrain.to_deployment(name=model).apply()
    queries = []
    read = SyncPrefectClient.read_deployments
    monkeypatch.setattr(
        SyncPrefectClient, "read_deployments", lambda self, **kw: queries.append(kw) or read(self, **kw)
    )
    names = [f"retrain/{model}" for model in models]
    assert bootstrap.existing_deployments(harness_api.rstrip("/"), names) == set(names)
    assert len(queries) == 1


def test_existing_deployments_names_an_unreachable_server():
    """It fails with a ClinriskError naming the server, not an httpx traceback."""
    from clinrisk.errors import ClinriskError

    with pytest.raises(ClinriskError, match=r"the Prefect API at http://127\.0\.0\.1:9/api failed"):
        bootstrap.existing_deployments("http://127.0.0.1:9/api", ["retrain/stroke"])


def test_a_waited_runs_outcome_lines_are_its_summaries_titles(harness_api):
    """It reads back the one-line outcome a run published, e.g. that a monitor skipped."""
    from prefect import flow

    from clinrisk.flows import summaries, tasks
    from clinrisk.flows.commands import outcome_lines

    @flow(name="publishes-a-summary")
    def publishes(reason: str) -> None:
        tasks.publish_artifact("monitor", "stroke", summaries.skipped_markdown("stroke", {}, reason))

    first = publishes("3 rows in the window", return_state=True).state_details.flow_run_id
    second = publishes("no rows in the window", return_state=True).state_details.flow_run_id
    assert outcome_lines(first) == ["Monitoring stroke: skipped, 3 rows in the window"]
    assert outcome_lines(second) == ["Monitoring stroke: skipped, no rows in the window"]
