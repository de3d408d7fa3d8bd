"""First-start initialisation, shared by `clinrisk up` and the compose `init` service.

Waits for the Prefect API and MLflow, creates the process work pool, registers the
deployments that do not exist yet, those of prefect.yaml for every model spec (so schedules
changed in the Prefect UI survive a restart), and trains a first champion for each model that
has none (one model failing does not stop the others). Then, optionally,
becomes another command (the local stack's worker):

    python -m clinrisk.stack.bootstrap --pool clinrisk-pool [-- prefect worker start ...]

Servers are found through PREFECT_API_URL and MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import click
import requests

from clinrisk.errors import ClinriskError
from clinrisk.stack.config import POOL
from clinrisk.stack.control_plane import ensure_mlflow_accounts, prefect_api

# Only the initialisation needs these (to create the MLflow accounts); the worker it becomes does not.
ACCOUNT_SECRETS = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_WRITER_PASSWORD", "MLFLOW_READER_PASSWORD")


def say(message: str) -> None:
    click.echo(f"init: {message}")


def wait_for(url: str, what: str, timeout: float) -> None:
    """Poll `url` until it answers 200, or fail naming the server."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise ClinriskError(f"{what} did not answer at {url} within {timeout:.0f} s")


def pool_exists(api_url: str, pool: str) -> bool:
    return prefect_api(api_url).get(f"{api_url}/work_pools/{pool}", timeout=30).status_code == 200


def ensure_pool(api_url: str, pool: str) -> None:
    """Create the process work pool unless it exists (its settings in the UI are kept)."""
    if pool_exists(api_url, pool):
        return
    say(f"creating work pool {pool}")
    try:
        finish(start_prefect_cli(["work-pool", "create", pool, "--type", "process"], cwd=Path.cwd()))
    except ClinriskError:
        if not pool_exists(api_url, pool):  # else a worker starting meanwhile created it: as good
            raise


def deployment_names(project_dir: Path, spec_dir: Path) -> list[str]:
    """Every deployment to register: prefect.yaml's flows times the models in `spec_dir` (`flow/model`)."""
    from clinrisk.flows import deployments

    return deployments.planned(deployments.read_templates(project_dir), deployments.model_names(spec_dir))


def existing_deployments(api_url: str, names: list[str]) -> set[str]:
    """Which of `names` (`flow/deployment`) the Prefect server already has.

    Two filtered queries, however many names: the flows named (a deployment carries only its
    flow's id), then their deployments named (again per page of the server's limit, 200 by
    default, while a name is unaccounted for). Raises ClinriskError naming the server when the
    API fails.
    """
    from prefect.client.orchestration import SyncPrefectClient

    try:
        with SyncPrefectClient(api_url, auth_string=os.environ.get("PREFECT_API_AUTH_STRING")) as client:
            return _registered(client, set(names))
    except Exception as exc:  # httpx errors and Prefect's own: one line naming the server
        raise ClinriskError(f"the Prefect API at {api_url} failed: {exc}") from exc


def _registered(client, names: set[str]) -> set[str]:
    """Which of `names` (`flow/deployment`) `client`'s server has."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterId,
        FlowFilterName,
    )

    pairs = [name.split("/", 1) for name in names]
    flows = client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(any_=sorted({f for f, _ in pairs}))))
    if not flows:
        return set()
    flow_names = {flow.id: flow.name for flow in flows}
    filters = {
        "flow_filter": FlowFilter(id=FlowFilterId(any_=list(flow_names))),
        "deployment_filter": DeploymentFilter(name=DeploymentFilterName(any_=sorted({d for _, d in pairs}))),
    }
    found, seen = set(), 0
    while found != names and (page := client.read_deployments(**filters, offset=seen)):
        seen += len(page)
        found |= {f"{flow_names[d.flow_id]}/{d.name}" for d in page} & names
    return found


def retire_single_model_deployments(api_url: str, templates: dict, models: list[str]) -> list[str]:
    """Delete the deployments an older prefect.yaml registered for one model, `<flow>/<flow>`
    (`retrain/retrain`), so that an upgraded stack does not run them beside `<flow>/<model>`;
    the names deleted. A model named like a flow keeps its deployment."""
    retired = []
    api = prefect_api(api_url)
    for template in templates.get("deployments") or []:
        flow = template["name"]
        response = api.get(f"{api_url}/deployments/name/{flow}/{flow}", timeout=30)
        if flow in models or response.status_code == 404:
            continue
        response.raise_for_status()
        api.delete(f"{api_url}/deployments/{response.json()['id']}", timeout=30).raise_for_status()
        retired.append(f"{flow}/{flow}")
    if retired:
        say(f"deleted the single-model deployments {', '.join(retired)}: each model has its own now")
    return retired


def start_deploy(api_url: str, project_dir: Path, redeploy: bool) -> subprocess.Popen | None:
    """Start registering every model's missing deployments (all with `redeploy`); None when none is
    missing. Their config, expanded from prefect.yaml, is left in CLINRISK_HOME for reading."""
    from clinrisk.flows import deployments
    from clinrisk.settings import load_settings

    settings = load_settings()
    templates, models = deployments.read_templates(project_dir), deployments.model_names(settings.spec_dir)
    retire_single_model_deployments(api_url, templates, models)
    names = deployments.planned(templates, models)
    missing = names if redeploy else [n for n in names if n not in existing_deployments(api_url, names)]
    if not missing:
        say(f"deployments already registered: {', '.join(names)}")
        return None
    say(f"registering deployments: {', '.join(missing)}")
    config = deployments.expand(templates, models, keep=set(missing))
    path = deployments.write_config(config, settings.ensure_home() / "prefect-deployments.yaml")
    return start_prefect_cli(["--no-prompt", "deploy", "--all", "--prefect-file", str(path)], cwd=project_dir)


def start_prefect_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    """Start the Prefect CLI of this environment, its output kept for errors."""
    from clinrisk.stack.processes import executable

    command = [executable("prefect"), *args]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen | None) -> None:
    """Wait for a Prefect CLI call; fail with its output when it failed."""
    if process is None:
        return
    output, _ = process.communicate()
    if process.returncode != 0:
        raise ClinriskError(f"{' '.join(process.args[1:])} failed:\n{output}")


def ensure_champions(train: bool) -> dict[str, str | None]:
    """A first champion for every model with a spec (see `ensure_champion`); model -> its version.

    A model that fails to train is reported and left without a champion: the others still train.
    When every model fails, the cause is not one model's (MLflow, the disk): ClinriskError.
    """
    from clinrisk.flows.deployments import model_names
    from clinrisk.settings import load_settings

    champions, failures = {}, {}
    for name in model_names(load_settings().spec_dir):
        try:
            champions[name] = ensure_champion(name, train)
        except Exception as exc:  # any model's fault: the others' first champions still matter
            say(f"WARNING: {name} has no champion: its first training failed: {exc}")
            champions[name], failures[name] = None, str(exc)
    if failures and len(failures) == len(champions):
        raise ClinriskError(f"no model could be trained: {failures}")
    return champions


def ensure_champion(name: str, train: bool) -> str | None:
    """Train, register and gate model `name`'s first version when the registry has no champion for
    it; the champion's version, or None."""
    from clinrisk import registry
    from clinrisk.settings import load_settings

    settings = load_settings()
    champion = registry.alias_version(settings, name, registry.CHAMPION)
    if champion is not None:
        say(f"{name} has a champion: version {champion}")
        return champion
    if not train:
        say(f"{name} has no champion (--no-train): its routes stay unready")
        return None
    from clinrisk.retraining import retrain

    say(f"training the first {name} model")
    started = time.monotonic()
    summary = retrain(settings, name, reason="first start")
    say(f"{name} trained in {time.monotonic() - started:.0f} s: {json.dumps(summary, default=str)}")
    if summary.get("skipped"):  # a version trained on this store exists but is not champion
        say(f"WARNING: {summary['skipped']}; promote one with `clinrisk promote VERSION --model {name}`")
        return None
    if not summary["promoted"]:
        say(f"WARNING: the gate did not promote {name} version {summary['version']}: {summary['reasons']}")
        return None
    return summary["version"]


def ensure_accounts(tracking_uri: str) -> None:
    """Create the MLflow writer and reader accounts when MLflow runs its basic-auth app."""
    if all(os.environ.get(name) for name in ACCOUNT_SECRETS):
        say("creating the MLflow accounts (writer, reader)")
        ensure_mlflow_accounts(tracking_uri, {name: os.environ[name] for name in ACCOUNT_SECRETS})


def ensure_reports_index() -> None:
    """Write the (empty) reports index if there is none, so links to it work before any flow ran."""
    from clinrisk.monitoring.index import write_index
    from clinrisk.settings import load_settings

    reports_dir = load_settings().reports_dir
    if not (reports_dir / "index.html").exists():
        write_index(reports_dir)


def initialise(
    pool: str, project_dir: Path, train: bool, redeploy: bool, timeout: float
) -> dict[str, str | None]:
    """Every first-start step (deployments register while the first models train); each model's
    champion version (None for a model without one)."""
    ensure_reports_index()
    api_url = os.environ.get("PREFECT_API_URL", "http://127.0.0.1:4200/api").rstrip("/")
    tracking_uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    wait_for(f"{api_url}/health", "the Prefect API", timeout)
    ensure_pool(api_url, pool)
    deploying = start_deploy(api_url, project_dir, redeploy)
    try:
        if tracking_uri.startswith("http"):
            wait_for(f"{tracking_uri.rstrip('/')}/health", "MLflow", timeout)
            ensure_accounts(tracking_uri)
        champions = ensure_champions(train)
    except BaseException:
        if deploying is not None:
            deploying.kill()
        raise
    finish(deploying)
    return champions


def write_ready_file(path: Path, champions: dict[str, str | None]) -> None:
    """Record each model's champion, and the default model's as `champion`; written whole, then
    renamed, so readers never see half of it."""
    from clinrisk.settings import load_settings

    default = champions.get(load_settings().model_name)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps({"champion": default, "champions": champions}))
    partial.replace(path)


@click.command(context_settings={"ignore_unknown_options": True})
@click.option("--pool", default=POOL, show_default=True, help="Process work pool of the deployments.")
@click.option("--project-dir", type=click.Path(path_type=Path, file_okay=False), default=Path("."))
@click.option("--no-train", is_flag=True, help="Do not train a first champion when there is none.")
@click.option("--redeploy", is_flag=True, help="Re-register every deployment (resets UI schedule edits).")
@click.option("--ready-file", type=click.Path(path_type=Path), default=None, help="Written when done.")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds to wait for servers.")
@click.argument("then", nargs=-1, type=click.UNPROCESSED)
def main(pool, project_dir, no_train, redeploy, ready_file, timeout, then) -> None:
    """Initialise Prefect and the registry, then run THEN (after `--`) in this process."""
    try:
        champions = initialise(pool, project_dir.resolve(), not no_train, redeploy, timeout)
    except (ClinriskError, requests.RequestException) as exc:
        raise click.ClickException(str(exc)) from exc
    say("done")
    if ready_file is not None:
        write_ready_file(ready_file, champions)
    if then:
        env = {name: value for name, value in os.environ.items() if name not in ACCOUNT_SECRETS}
        os.execvpe(then[0], list(then), env)


if __name__ == "__main__":
    main()
