"""First-start initialisation, shared by `clinrisk up` and the compose `init` service.

Waits for the Prefect API and MLflow, creates the process work pool, registers the
deployments of `prefect.yaml` that do not exist yet (so schedules changed in the Prefect UI
survive a restart) and trains the first champion when there is none. Then, optionally,
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
import yaml

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


def ensure_pool(api_url: str, pool: str) -> None:
    """Create the process work pool unless it exists (its settings in the UI are kept)."""
    if prefect_api(api_url).get(f"{api_url}/work_pools/{pool}", timeout=30).status_code == 200:
        return
    say(f"creating work pool {pool}")
    finish(start_prefect_cli(["work-pool", "create", pool, "--type", "process"], cwd=Path.cwd()))


def deployment_names(project_dir: Path) -> list[str]:
    """The deployment names declared in the project's prefect.yaml."""
    path = project_dir / "prefect.yaml"
    if not path.is_file():
        raise ClinriskError(f"no prefect.yaml in {project_dir}: run from the project's checkout")
    declared = yaml.safe_load(path.read_text()) or {}
    return [d["name"] for d in declared.get("deployments") or []]


def existing_deployments(api_url: str, names: list[str]) -> set[str]:
    """Which of `names` the Prefect server already has."""
    body = {"deployments": {"name": {"any_": names}}}
    response = prefect_api(api_url).post(f"{api_url}/deployments/filter", json=body, timeout=30)
    response.raise_for_status()
    return {d["name"] for d in response.json()}


def start_deploy(api_url: str, project_dir: Path, redeploy: bool) -> subprocess.Popen | None:
    """Start registering the missing deployments (all with `redeploy`); None when none is missing."""
    names = deployment_names(project_dir)
    missing = names if redeploy else [n for n in names if n not in existing_deployments(api_url, names)]
    if not missing:
        say(f"deployments already registered: {', '.join(names)}")
        return None
    say(f"registering deployments: {', '.join(missing)}")
    selection = [arg for name in missing for arg in ("--name", name)]
    return start_prefect_cli(["--no-prompt", "deploy", *selection], cwd=project_dir)


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


def ensure_champion(train: bool) -> str | None:
    """Train, register and gate the first model when the registry has no champion; its version."""
    from clinrisk import registry
    from clinrisk.settings import load_settings

    settings = load_settings()
    champion = registry.alias_version(settings, settings.model_name, registry.CHAMPION)
    if champion is not None:
        say(f"{settings.model_name} has a champion: version {champion}")
        return champion
    if not train:
        say(f"{settings.model_name} has no champion (--no-train): the service stays unready")
        return None
    from clinrisk.retraining import retrain

    say(f"training the first {settings.model_name} model")
    summary = retrain(settings, settings.model_name, reason="first start")
    say(json.dumps(summary, default=str))
    if summary.get("skipped"):  # a version trained on this store exists but is not champion
        say(f"WARNING: {summary['skipped']}; promote one with `clinrisk promote VERSION`")
        return None
    if not summary["promoted"]:
        say(f"WARNING: the gate did not promote version {summary['version']}: {summary['reasons']}")
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


def initialise(pool: str, project_dir: Path, train: bool, redeploy: bool, timeout: float) -> str | None:
    """Every first-start step (deployments register while the first model trains); the champion."""
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
        champion = ensure_champion(train)
    except BaseException:
        if deploying is not None:
            deploying.kill()
        raise
    finish(deploying)
    return champion


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
        champion = initialise(pool, project_dir.resolve(), not no_train, redeploy, timeout)
    except (ClinriskError, requests.RequestException) as exc:
        raise click.ClickException(str(exc)) from exc
    say("done")
    if ready_file is not None:  # written whole, then renamed: readers never see half of it
        partial = ready_file.with_name(f".{ready_file.name}.partial")
        partial.write_text(json.dumps({"champion": champion}))
        partial.replace(ready_file)
    if then:
        env = {name: value for name, value in os.environ.items() if name not in ACCOUNT_SECRETS}
        os.execvpe(then[0], list(then), env)


if __name__ == "__main__":
    main()
