"""The docker compose stack of the repository, built and started once for the compose tests.

These tests need a Docker engine: `make test-compose` starts one and selects them with
`-m compose`. Any other run (e.g. `make test`) deselects them.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from clinrisk.credentials import SECRETS
from support import REPO, free_port

SERVICES = ("postgres", "mlflow", "prefect-server", "init", "prefect-worker", "web", "proxy", "evidently-ui")


def pytest_collection_modifyitems(config, items):
    """Leave the compose tests to `make test-compose` unless `-m` asks for them; the scaled ones last."""
    if "compose" in (config.option.markexpr or ""):
        # test_compose_scale.py scales out the session's stack: every other test must have run.
        items.sort(key=lambda item: item.module.__name__.endswith("test_compose_scale"))
        return
    skipped = [item for item in items if item.get_closest_marker("compose")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("compose")]


def compose_command() -> list[str]:
    """`docker compose` (v2) when available, else `docker-compose` (v1); CLINRISK_COMPOSE forces one."""
    if os.environ.get("CLINRISK_COMPOSE"):
        return shlex.split(os.environ["CLINRISK_COMPOSE"])
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


@dataclass
class ComposeStack:
    """A running compose project: how to reach it and how to drive it."""

    project: str
    env: dict[str, str]
    ports: dict[str, int]
    password: str
    timings: dict[str, float] = field(default_factory=dict)
    files: tuple[str, ...] = ("docker-compose.yaml",)  # then any overlay, e.g. docker-compose.s3.yaml

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        files = [arg for name in self.files for arg in ("--file", name)]
        command = [*compose_command(), "--project-name", self.project, *files, *args]
        result = subprocess.run(
            command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                                 f"{result.stderr[-4000:]}")  # fmt: skip
        return result

    def container(self, service: str) -> str:
        return self.run("ps", "-a", "-q", service).stdout.strip()

    def containers(self, service: str) -> list[str]:
        """The ids of every replica of `service`, running or not."""
        return self.run("ps", "-a", "-q", service).stdout.split()

    def inspect(self, service: str) -> dict:
        container = self.container(service)
        assert container, f"no container for {service}"
        return inspect_container(container)

    def exec(self, service: str, *command: str) -> str:
        return self.run("exec", "-T", service, *command).stdout

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "150", check=False).stdout


def inspect_container(container: str) -> dict:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def wait_until_healthy(stack: ComposeStack, timeout: float = 600, services=SERVICES) -> None:
    """Wait until init has succeeded and every replica of every long-running service reports healthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        init = stack.inspect("init")["State"] if stack.container("init") else None
        if init and init["Status"] == "exited" and init["ExitCode"] != 0:
            raise AssertionError(f"init failed with exit code {init['ExitCode']}:\n{stack.logs()}")
        health = {
            f"{s} {c[:12]}": inspect_container(c)["State"].get("Health", {}).get("Status") if c else "missing"
            for s in services
            if s != "init"
            for c in stack.containers(s) or [""]
        }
        if init and init["Status"] == "exited" and all(status == "healthy" for status in health.values()):
            return
        time.sleep(3)
    raise AssertionError(f"the stack was not healthy within {timeout} s: {health}\n{stack.logs()}")


@pytest.fixture(scope="session")
def compose_stack(request):
    """Build the images, start the stack on free loopback ports, yield it, then `down -v`."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run the compose tests with `make test-compose`")
    ports = {
        "web": free_port(),
        "mlflow": free_port(),
        "prefect-server": free_port(),
        "evidently-ui": free_port(),
    }
    password = secrets.token_urlsafe(12)
    env = {**os.environ, "CLINRISK_ADMIN_PASSWORD": password, "CLINRISK_BIND_ADDRESS": "127.0.0.1"}
    # The control plane's secrets as `clinrisk credentials` writes them (compose reads them from .env).
    env |= {name: secrets.token_urlsafe(24) for name in SECRETS if name != "CLINRISK_ADMIN_PASSWORD"}
    env |= {"CLINRISK_WEB_PORT": str(ports["web"]), "CLINRISK_MLFLOW_PORT": str(ports["mlflow"])}
    env |= {
        "CLINRISK_PREFECT_PORT": str(ports["prefect-server"]),
        "CLINRISK_EVIDENTLY_PORT": str(ports["evidently-ui"]),
    }
    stack = ComposeStack(f"clinrisk-e2e-{os.getpid()}", env, ports, password)
    started = False
    try:
        timed(stack, "build", lambda: stack.run("build", timeout=3600))
        timed(stack, "up", lambda: stack.run("up", "--detach", timeout=900))
        timed(stack, "healthy", lambda: wait_until_healthy(stack))
        started = True
        yield stack
    finally:
        if not started or request.session.testsfailed:
            print(f"\n===== compose logs (last lines per service) =====\n{stack.logs()}")
        timed(
            stack,
            "down",
            lambda: stack.run("down", "--volumes", "--remove-orphans", timeout=300, check=False),
        )
        print(f"\ncompose timings (s): {json.dumps(stack.timings)}")


def timed(stack: ComposeStack, step: str, action) -> None:
    started = time.monotonic()
    print(f"compose: {step} ...", flush=True)
    try:
        action()
    finally:
        stack.timings[step] = round(time.monotonic() - started, 1)
        print(f"compose: {step} took {stack.timings[step]} s", flush=True)


@pytest.fixture(scope="session")
def auth(compose_stack) -> tuple[str, str]:
    return "admin", compose_stack.password


@pytest.fixture(scope="session")
def prefect_api(compose_stack) -> str:
    return f"{compose_stack.url('prefect-server')}/api"


@pytest.fixture(scope="session")
def prefect_auth(compose_stack) -> str:
    """PREFECT_API_AUTH_STRING of the stack's worker and init."""
    return compose_stack.env["PREFECT_SERVER_API_AUTH_STRING"]


@pytest.fixture(scope="session")
def mlflow_writer(compose_stack) -> tuple[str, str]:
    """The MLflow account that trains and promotes."""
    return "clinrisk-writer", compose_stack.env["MLFLOW_WRITER_PASSWORD"]
