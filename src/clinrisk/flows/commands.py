"""`clinrisk flows run NAME [--model M] [--param key=value]`: run a model's deployment on the stack's
Prefect server; `clinrisk flows deploy`: register every model's deployments there.

The server is PREFECT_API_URL when set, else the one `clinrisk up` recorded in
`<CLINRISK_HOME>/stack.json`, so the command works in a new shell in the project root. It never
starts Prefect's temporary server (which is what `prefect deployment run` does without the URL).
"""

from __future__ import annotations

import os

import click
import yaml

from clinrisk.errors import ClinriskError
from clinrisk.settings import load_settings

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def prefect_api_url() -> str:
    """The Prefect API to talk to: the environment's, else the running stack's."""
    from clinrisk.stack.config import read_urls

    if url := os.environ.get("PREFECT_API_URL"):
        return url
    home = load_settings().home
    if url := read_urls(home).get("prefect_api_url"):
        return url
    raise ClinriskError(
        f"no Prefect server: start the stack (make up) with CLINRISK_HOME={home}, or set PREFECT_API_URL"
    )


def parse_params(pairs: tuple[str, ...]) -> dict[str, object]:
    """`key=value` pairs; values read as YAML scalars (numbers, true/false), else as text."""
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{pair}' is not key=value", param_hint="--param")
        try:
            params[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            params[key] = value
    return params


def deployment_name(name: str, model: str | None, model_parameter: object = None) -> str:
    """`retrain` means a model's deployment `retrain/<model>`: `model` (--model), else the
    `model_name` parameter, else the default model's. `flow/deployment` is taken as given."""
    if "/" in name:
        if model is not None:
            raise click.BadParameter(f"'{name}' names its deployment already", param_hint="--model")
        return name
    from clinrisk.flows.deployments import full_name

    if model is None and isinstance(model_parameter, str) and model_parameter:
        model = model_parameter
    return full_name(name, model or load_settings().model_name)


def create_run(api_url: str, deployment: str, params: dict[str, object]):
    """Create a flow run of `deployment`, tagged as started from the CLI; the run."""
    os.environ["PREFECT_API_URL"] = api_url  # before Prefect reads its settings
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from clinrisk.flows.origin import CLI_TAG

    try:
        with get_client(sync_client=True) as client:
            found = client.read_deployment_by_name(deployment)
            return client.create_flow_run_from_deployment(found.id, parameters=params, tags=[CLI_TAG])
    except ObjectNotFound:
        raise ClinriskError(f"deployment '{deployment}' is not registered on {api_url}") from None
    except Exception as exc:  # httpx errors and Prefect's own: one line naming the server
        raise ClinriskError(f"the Prefect API at {api_url} failed: {exc}") from exc


def wait_for(run_id, poll_seconds: float = 2.0):
    """Poll a flow run until it ends; its final state."""
    import time

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            if run.state is not None and run.state.type.value in TERMINAL:
                return run.state
            time.sleep(poll_seconds)


def outcome_lines(run_id) -> list[str]:
    """The one-line outcome of each summary the run published (its artifacts' titles), e.g.
    "monitor of stroke skipped: 3 rows in the window": a run that skipped still ends COMPLETED."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return [str(a.data).splitlines()[0].removeprefix("# ") for a in found if a.type == "markdown" and a.data]


@click.group()
def flows() -> None:
    """Run the stack's flows (retrain, monitor, ingest, batch-score) on its Prefect server."""


@flows.command("run")
@click.argument("name")
@click.option("--model", "model_name", default=None, help="The model (default: CLINRISK_MODEL_NAME).")
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="A flow parameter.")
@click.option("--wait/--no-wait", default=False, help="Wait for the end; exit non-zero unless it completed.")
def run(name: str, model_name: str | None, params: tuple[str, ...], wait: bool) -> None:
    """Start a run of flow NAME's deployment for a model (retrain, monitor, ingest, batch-score), or of
    deployment flow/deployment."""
    api_url = prefect_api_url()
    parameters = parse_params(params)
    deployment = deployment_name(name, model_name, parameters.get("model_name"))
    flow_run = create_run(api_url, deployment, parameters)
    ui = api_url.removesuffix("/api").rstrip("/")
    click.echo(f"started {deployment}: flow run {flow_run.name} ({ui}/runs/flow-run/{flow_run.id})")
    if wait:
        state = wait_for(flow_run.id)
        click.echo(f"{flow_run.name} ended {state.type.value}: {state.message or ''}".rstrip(": "))
        for line in outcome_lines(flow_run.id):
            click.echo(f"  {line}")
        if state.type.value != "COMPLETED":
            raise ClinriskError(f"flow run {flow_run.name} of {deployment} ended {state.type.value}")


@flows.command("deploy")
@click.option("--missing-only", is_flag=True, help="Keep the deployments that exist (and their UI edits).")
def deploy(missing_only: bool) -> None:
    """Register prefect.yaml's deployments once per model spec (`retrain/<model>`, ...) on the stack's
    Prefect server, creating the work pool if it is missing."""
    from clinrisk.stack import bootstrap
    from clinrisk.stack.command import project_dir
    from clinrisk.stack.config import POOL

    api_url = prefect_api_url().rstrip("/")
    os.environ["PREFECT_API_URL"] = api_url  # the Prefect CLI calls below inherit it
    bootstrap.wait_for(f"{api_url}/health", "the Prefect API", timeout=30)
    bootstrap.ensure_pool(api_url, POOL)
    bootstrap.finish(bootstrap.start_deploy(api_url, project_dir(), redeploy=not missing_only))
