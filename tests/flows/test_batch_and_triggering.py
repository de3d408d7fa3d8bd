"""The batch-score flow, the retry rule and the retrain trigger on a real Prefect API."""

from __future__ import annotations

import pandas as pd
import pytest
from prefect.states import Failed

from clinrisk import registry
from clinrisk.errors import DataValidationError, RegistryError
from clinrisk.flows import tasks, triggering
from clinrisk.flows.batch_score import batch_score
from clinrisk.predict import score_file

pytestmark = pytest.mark.xdist_group("prefect-harness")


def test_batch_score_scores_a_file_as_clinrisk_predict_does(flow_env, undrifted_sample, tmp_path):
    """It scores every row with the champion, with the same probabilities as `clinrisk predict`."""
    undrifted_sample.head(200).to_csv(tmp_path / "batch.csv", index=False)
    result = batch_score(input_path=str(tmp_path / "batch.csv"))
    champion = registry.load_alias(flow_env, "stroke")
    score_file(
        champion, champion.info["version"], tmp_path / "batch.csv", tmp_path / "direct.csv", progress=False
    )
    flowed, direct = pd.read_csv(result["output"]), pd.read_csv(tmp_path / "direct.csv")
    assert result["rows_scored"] == 200 and result["output"].endswith("batch.scored.csv")
    pd.testing.assert_series_equal(flowed["probability"], direct["probability"])
    assert set(flowed["model_version"].astype(str)) == {champion.info["version"]}


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (RegistryError("MLflow is unreachable"), True),
        (OSError("disk"), True),
        (DataValidationError("missing column(s): age"), False),
    ],
)
def test_only_outside_failures_are_retried(error, retried):
    """It retries MLflow, database and file failures, never bad input."""
    assert tasks.retry_outside_failures(None, None, Failed(data=error)) is retried


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("retrain", "is not '<flow>/<deployment>'"),
        ("/retrain", "is not '<flow>/<deployment>'"),
        ("retrain/retrain/x", "is not '<flow>/<deployment>'"),
        ("retrain/not-deployed", "is not a registered deployment"),
    ],
)
def test_a_bad_retrain_deployment_is_a_bad_parameter_never_retried(prefect_harness, name, why):
    """It raises an error naming the parameter and its value, of a kind the tasks never retry."""
    with pytest.raises(triggering.BadDeploymentError) as raised:
        triggering.trigger_with_cooldown(name, "stroke", ["data drift"], 24)
    assert f"retrain_deployment '{name}' {why}" in str(raised.value)
    assert tasks.retry_outside_failures(None, None, Failed(data=raised.value)) is False


@pytest.mark.parametrize("flow_tags", [["auto-retrain"], ["started-by:cli"], []])
def test_the_reason_records_who_started_the_run(prefect_harness, flow_tags):
    """It reads the run's origin from its tags, and keeps an explicit reason as given."""
    from prefect import flow, tags

    from clinrisk.flows import origin

    @flow
    def probe(explicit: str | None = None) -> str:
        return origin.started_by(explicit)

    expected = {"auto-retrain": "monitoring", "started-by:cli": "CLI (clinrisk flows run)"}
    with tags(*flow_tags):
        assert probe() == expected.get(next(iter(flow_tags), ""), "direct call of the flow")
        assert probe("monitor: data drift") == "monitor: data drift"
        assert probe("scheduled") != "scheduled"  # what old deployments passed for every run
