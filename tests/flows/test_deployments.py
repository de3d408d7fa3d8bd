"""prefect.yaml as shipped: expanded per model spec, deployed with `clinrisk flows deploy` to a real
server, run by a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml

from clinrisk import registry
from clinrisk.flows import deployments as expansion
from clinrisk.monitoring.index import read_summaries
from monitoring.samples import drifted, trained_store
from support import REPO, VENV_BIN, free_port, prefect_api_call, stop_process, wait_for_http

POOL = "clinrisk-pool"


def deployments() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}


def test_prefect_yaml_declares_the_four_deployments_on_one_process_pool():
    """It deploys retrain weekly, monitor daily and ingest every 15 minutes on the process pool,
    pulling no code from elsewhere."""
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    found = deployments()
    assert set(found) == {"retrain", "monitor", "batch-score", "ingest"}
    assert found["ingest"]["schedules"][0]["interval"] == 900
    assert {d["work_pool"]["name"] for d in found.values()} == {POOL}
    assert found["retrain"]["schedules"][0]["cron"] == "0 3 * * 1"
    assert found["monitor"]["schedules"][0]["cron"] == "0 6 * * *"
    assert "schedules" not in found["batch-score"]
    steps = [next(iter(step)) for step in config["pull"] + config["build"]]
    assert steps == [
        "prefect.deployments.steps.set_working_directory",
        "prefect.deployments.steps.run_shell_script",
    ]
    for deployment in found.values():
        assert (REPO / deployment["entrypoint"].split(":")[0]).is_file()
        parameters = str(deployment.get("parameters"))
        assert "tracking_uri" not in parameters and "://" not in parameters
        assert "model_name" not in parameters  # set per model when expanded


def specs_with_a_fifth(directory: Path, stroke_spec_dir: Path | None = None) -> Path:
    """The shipped specs (stroke's from `stroke_spec_dir` when given) and a made-up fifth, `fifth`."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in (REPO / "models").glob("*.yaml"):
        raw = yaml.safe_load(path.read_text())
        raw["data"]["path"] = str(REPO / raw["data"]["path"])
        (directory / path.name).write_text(yaml.safe_dump(raw, sort_keys=False))
    if stroke_spec_dir is not None:
        (directory / "stroke.yaml").write_text((stroke_spec_dir / "stroke.yaml").read_text())
    fifth = yaml.safe_load((directory / "diabetes.yaml").read_text()) | {"name": "fifth"}
    (directory / "fifth.yaml").write_text(yaml.safe_dump(fifth, sort_keys=False))
    return directory


def test_every_spec_gets_each_flows_deployment_with_its_own_parameters(tmp_path):
    """It gives each spec, a made-up fifth included, its retrain, ingest, monitor and batch-score
    deployment named after the model, with model_name set and monitor pointed at its own retrain."""
    models = expansion.model_names(specs_with_a_fifth(tmp_path / "specs"))
    assert models == ["anemia", "diabetes", "diabetes_progression", "fifth", "stroke"]
    expanded = expansion.expand(expansion.read_templates(REPO), models)
    by_name = {}
    for template in deployments().values():
        for model in models:
            by_name[expansion.full_name(template["name"], model)] = template
    assert expansion.planned(expansion.read_templates(REPO), models) == list(by_name)
    assert len(expanded["deployments"]) == 4 * 5
    for deployment, (name, template) in zip(expanded["deployments"], by_name.items(), strict=True):
        flow, model = name.split("/")
        assert deployment["name"] == model and deployment["entrypoint"] == template["entrypoint"]
        assert deployment["parameters"]["model_name"] == model
        assert deployment["work_pool"]["name"] == POOL
        if flow == "monitor":
            assert deployment["parameters"]["retrain_deployment"] == f"retrain/{model}"
    assert expanded["pull"] == yaml.safe_load((REPO / "prefect.yaml").read_text())["pull"]


@pytest.mark.parametrize("flow", ["retrain", "monitor", "ingest"])
def test_the_models_schedules_are_staggered(flow, tmp_path):
    """No two models' scheduled runs of a flow start at the same time; the first model keeps
    prefect.yaml's schedule."""
    models = expansion.model_names(specs_with_a_fifth(tmp_path / "specs"))
    expanded = expansion.expand(expansion.read_templates(REPO), models)
    schedules = [d["schedules"][0] for d in expanded["deployments"] if d["entrypoint"].endswith(f":{flow}")]
    starts = [s.get("cron") or s["anchor_date"] for s in schedules]
    assert len(set(starts)) == len(models)
    if flow != "ingest":
        assert schedules[0]["cron"] == deployments()[flow]["schedules"][0]["cron"]


@pytest.mark.parametrize(
    ("cron", "minutes", "moved"),
    [
        ("0 3 * * 1", 30, "30 3 * * 1"),
        ("0 3 * * 1", 90, "30 4 * * 1"),
        ("50 23 * * *", 20, "10 0 * * *"),  # wraps at midnight
        ("*/5 * * * *", 30, "*/5 * * * *"),  # no fixed time to move
        ("0 3 * * 1", 0, "0 3 * * 1"),
    ],
)
def test_a_cron_is_moved_by_whole_minutes(cron, minutes, moved):
    """It moves a cron's fixed minute and hour, and leaves other crons alone."""
    assert expansion.shift_cron(cron, minutes) == moved


def test_a_model_named_unlike_a_model_gets_no_deployment(tmp_path):
    """A YAML file whose name could not be a model name (a URL segment) is not deployed."""
    (tmp_path / "Not A Model.yaml").write_text("name: x\n")
    (tmp_path / "ok.yaml").write_text("name: ok\n")
    assert expansion.model_names(tmp_path) == ["ok"]


def server_env(workdir: Path, port: int) -> dict[str, str]:
    """The environment of a Prefect server on SQLite in `workdir`, and of its clients."""
    workdir.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PREFECT_HOME": str(workdir / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{workdir / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


@contextmanager
def background(args: list[str], env: dict, log_path: Path):
    """A `prefect` command running in its own process group, stopped on exit."""
    log = log_path.open("w")
    process = subprocess.Popen(
        [str(VENV_BIN / "prefect"), *args],
        env=env,
        cwd=log_path.parent,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        stop_process(process)
        log.close()


def wait_for_pool(env: dict, timeout: float = 120) -> None:
    """Wait until the worker has created its work pool."""
    deadline = time.monotonic() + timeout
    while requests.get(f"{env['PREFECT_API_URL']}/work_pools/{POOL}", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, f"no work pool {POOL} after {timeout} s"
        time.sleep(1)


def prefect(env: dict, *args: str, cwd: Path = REPO) -> str:
    done = subprocess.run(
        [str(VENV_BIN / "prefect"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def api(env: dict, method: str, path: str, **body) -> dict | list:
    """One call to the Prefect REST API of the server in `env`."""
    return prefect_api_call(method, f"{env['PREFECT_API_URL']}{path}", json=body or None).json()


def run_deployment(env: dict, deployment: str, **parameters) -> str:
    """Create a run of a deployment, as `prefect deployment run` does; returns its id."""
    found = api(env, "GET", f"/deployments/name/{deployment}")
    return api(env, "POST", f"/deployments/{found['id']}/create_flow_run", parameters=parameters)["id"]


def wait_for_final_state(env: dict, flow_runs: dict, timeout: float = 480) -> list[dict]:
    """Poll until the flow runs matching the `flow_runs` filter exist and have all finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = api(env, "POST", "/flow_runs/filter", flow_runs=flow_runs)
        if runs and all(r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") for r in runs):
            return runs
        time.sleep(2)
    raise TimeoutError(f"flow runs {flow_runs} did not finish within {timeout} s")


def clinrisk_flows_deploy(env: dict) -> str:
    """`clinrisk flows deploy` from the project root, as `make flows-deploy` runs it."""
    done = subprocess.run(
        [str(VENV_BIN / "clinrisk"), "flows", "deploy"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def check_every_spec_is_deployed(env: dict, spec_dir: Path) -> None:
    """Each flow has a deployment for each spec, with that model's parameters."""
    models = expansion.model_names(spec_dir)
    for name in expansion.planned(expansion.read_templates(REPO), models):
        found = api(env, "GET", f"/deployments/name/{name}")
        flow, model = name.split("/")
        assert found["parameters"]["model_name"] == model, found
        assert bool(found["schedules"]) == (flow != "batch-score"), found
        if flow == "monitor":
            assert found["parameters"]["retrain_deployment"] == f"retrain/{model}"


@pytest.mark.slow
@pytest.mark.xdist_group("prefect-server")
def test_a_worker_runs_the_retrain_that_monitor_triggered(tmp_path, raw_stroke):
    """`clinrisk flows deploy` registers every spec's deployments (a made-up fifth included, prefect.yaml
    untouched); a worker runs stroke's monitor, then the retrain of stroke it started, though the
    default model (CLINRISK_MODEL_NAME) is another."""
    port = free_port()
    env = server_env(tmp_path / "prefect", port)
    server_args = ["server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with background(server_args, env, tmp_path / "server.log") as server:
        store = trained_store(tmp_path / "store")  # trains while the server migrates its database
        spec_dir = specs_with_a_fifth(tmp_path / "all-specs", store.spec_dir)
        drifted(raw_stroke).to_csv(tmp_path / "drifted.csv", index=False)
        # The drifted patients' outcomes arrive as a lab batch: the triggered retrain learns from them.
        labels = drifted(raw_stroke).assign(id=lambda f: f["id"] + 1_000_000)
        (store.home / "inbox" / "stroke").mkdir(parents=True)
        labels.to_csv(store.home / "inbox" / "stroke" / "drifted-outcomes.csv", index=False)
        store_env = {
            "CLINRISK_HOME": str(store.home),
            "CLINRISK_SPEC_DIR": str(spec_dir),
            "CLINRISK_MODEL_NAME": "fifth",
            "MLFLOW_TRACKING_URI": store.tracking_uri,
        }
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=240, process=server)
        worker_args = ["worker", "start", "--pool", POOL, "--type", "process"]
        with background(worker_args, env | store_env, tmp_path / "worker.log"):
            wait_for_pool(env)  # the worker creates the process pool that prefect.yaml names
            clinrisk_flows_deploy(env | store_env)
            check_every_spec_is_deployed(env, spec_dir)
            monitor_id = run_deployment(env, "monitor/stroke", current_path=str(tmp_path / "drifted.csv"))
            (monitored,) = wait_for_final_state(env, {"id": {"any_": [monitor_id]}})
            retrains = wait_for_final_state(env, {"tags": {"all_": ["auto-retrain"]}})
            retrain_stroke = api(env, "GET", "/deployments/name/retrain/stroke")
    log = (tmp_path / "worker.log").read_text()[-4000:]
    assert monitored["state_type"] == "COMPLETED" and len(retrains) == 1, log
    assert retrains[0]["state_type"] == "COMPLETED", log
    assert retrains[0]["deployment_id"] == retrain_stroke["id"]
    assert retrains[0]["parameters"]["model_name"] == "stroke"
    # Newest first: the first summary of each kind is the latest (training the store wrote one too).
    summaries = {s["kind"]: s for s in reversed(read_summaries(store.reports_dir))}
    assert summaries["monitor"]["retrain"]["flow_run"]["id"] == retrains[0]["id"]
    assert summaries["retrain"]["model_version"] == "2" and summaries["retrain"]["champion_version"] == "1"
    tags = registry.version_tags(store, "stroke", "2")
    assert json.loads(tags["data.by_source"]) == {"seed": 5110, "batch:drifted-outcomes.csv": 1000}
    assert tags["gate.decision"] in ("promoted", "rejected") and tags["gate.compared_with"] == "1"


def test_the_readme_schedule_table_is_what_deploy_registers():
    """The README's table of each model's staggered schedules matches the expanded deployments."""
    models = expansion.model_names(REPO / "models")
    expanded = expansion.expand(expansion.read_templates(REPO), models)
    readme = (REPO / "README.md").read_text()
    for model in models:
        (row,) = [line for line in readme.splitlines() if line.startswith(f"| {model} | ")]
        _, retrain_at, monitor_at, ingest_at = [cell.strip() for cell in row.strip("|").split("|")]
        schedules = {
            d["entrypoint"].rsplit(":", 1)[1]: d["schedules"][0]
            for d in expanded["deployments"]
            if d["name"] == model and "schedules" in d
        }
        for cron, shown in (
            (schedules["retrain"]["cron"], retrain_at),
            (schedules["monitor"]["cron"], monitor_at),
        ):
            minute, hour = cron.split()[:2]
            assert shown == f"{int(hour):02d}:{int(minute):02d}", (model, cron, shown)
        first = datetime.fromisoformat(schedules["ingest"]["anchor_date"]).minute
        assert ingest_at.startswith(f":{first:02d}, :{first + 15:02d}"), (model, ingest_at)
