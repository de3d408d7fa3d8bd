"""Run the stack's processes together, restart one that exits unexpectedly, stop all on Ctrl-C.

Each service runs in its own session (process group), so that stopping it reaches its children
(MLflow's uvicorn, gunicorn's workers). Its output is copied line by line with its name in front.
A service that exits, or whose port-holding process dies, while the stack is running is restarted
after a growing pause, at most `max_restarts` times; then it is left stopped with a line saying so
and the others keep running (the prediction service keeps answering from its loaded model),
unless the stack cannot become ready without it; then everything stops and `run` returns 1.
Ctrl-C or SIGTERM stops every group: SIGTERM, then SIGKILL after `grace_seconds`.

Pid files in the run directory: `<name>.pid` holds the pid of the process listening on the
service's port (the one to signal), `<name>.pgid` its process group (what `kill_leftovers` kills).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

import psutil

POLL_SECONDS = 0.5


@dataclass
class Service:
    """One supervised command and what is known about its current process."""

    name: str
    command: list[str]
    port: int | None = None
    process: subprocess.Popen | None = None
    holder: int | None = None  # pid listening on `port`, once it listens
    restarts: int = 0
    given_up: bool = False
    # While this file is missing (the stack is not ready yet), giving up on the service stops the
    # stack: nothing can come up without it (the worker's initialisation).
    required_until: Path | None = None
    started_at: float = field(default=0.0)
    env: dict[str, str] = field(default_factory=dict)  # this service's own variables (its secrets)


class Supervisor:
    """Start services, watch them, restart the ones that fail, stop them all on request."""

    def __init__(
        self,
        services: list[Service],
        env: dict[str, str],
        cwd: Path,
        run_dir: Path,
        out: TextIO = sys.stdout,
        max_restarts: int = 3,
        grace_seconds: float = 10.0,
    ) -> None:
        self.services, self.env, self.cwd, self.run_dir = services, env, cwd, run_dir
        self.out, self.max_restarts, self.grace_seconds = out, max_restarts, grace_seconds
        self.width = max(len(s.name) for s in services)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.failed = False

    def say(self, name: str, line: str) -> None:
        """Print one line with the time and the name of the process it is about."""
        with self.lock:
            self.out.write(f"{datetime.now():%H:%M:%S} {name:<{self.width}} | {line.rstrip()}\n")
            self.out.flush()

    def echo(self, text: str) -> None:
        """Print text as is (the banner), never in the middle of a process's line."""
        with self.lock:
            self.out.write(text)
            self.out.flush()

    def start(self, service: Service) -> None:
        process = subprocess.Popen(
            service.command,
            env={**self.env, **service.env},
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            text=True,
            errors="replace",
        )
        service.process, service.holder, service.started_at = process, None, time.monotonic()
        self._write_pid(service.name, "pgid", process.pid)
        self._write_pid(service.name, "pid", process.pid)  # until the port-holding process is known
        threading.Thread(target=self._copy_output, args=(service.name, process), daemon=True).start()

    def _copy_output(self, name: str, process: subprocess.Popen) -> None:
        for line in process.stdout:
            self.say(name, line)

    def _write_pid(self, name: str, kind: str, pid: int) -> None:
        (self.run_dir / f"{name}.{kind}").write_text(f"{pid}\n")

    def run(self) -> int:
        """Start everything and supervise until Ctrl-C or SIGTERM; 0 after a requested stop."""
        previous = {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for service in self.services:
                self.start(service)
            while not self.stopping.wait(POLL_SECONDS):
                for service in self.services:
                    self.check(service)
        finally:
            self.stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failed else 0

    def _request_stop(self, signum: int, _frame) -> None:
        if not self.stopping.is_set():
            self.say("stack", f"{signal.Signals(signum).name} received: stopping every process")
        self.stopping.set()

    def check(self, service: Service) -> None:
        """Notice an unexpected exit (of the service or of its port holder) and restart it."""
        if service.given_up or service.process is None:
            return
        code = service.process.poll()
        if code is None and service.port is not None:
            if service.holder is None:
                self._find_holder(service)
                return
            if is_alive(service.holder):
                return
            why = f"the process holding port {service.port} (pid {service.holder}) died"
            kill_group(service.process.pid, signal.SIGKILL)
            service.process.wait()
        elif code is None:
            return
        else:
            why = f"exited with code {code}"
        self.restart(service, why)

    def _find_holder(self, service: Service) -> None:
        holder = port_holder(service.port, service.process.pid)
        if holder is not None:
            service.holder = holder
            self._write_pid(service.name, "pid", holder)

    def restart(self, service: Service, why: str) -> None:
        """Start the service again after a pause that grows with each try, or give up on it."""
        if self.stopping.is_set():
            return
        if service.restarts >= self.max_restarts:
            service.given_up = True
            self.say("stack", f"{service.name} {why}; not restarting it again after {service.restarts} tries")
            if service.required_until is not None and not service.required_until.exists():
                self.say("stack", f"the stack cannot become ready without {service.name}: stopping it")
                self.failed = True
                self.stopping.set()
            return
        service.restarts += 1
        pause = min(2 ** (service.restarts - 1), 30)
        tries = f"try {service.restarts} of {self.max_restarts}"
        self.say("stack", f"{service.name} {why}; restarting it in {pause} s ({tries})")
        left = group_members(service.process.pid)
        kill_group(service.process.pid, signal.SIGKILL)  # whatever it left behind, port holder included
        wait_gone(left, timeout=5)
        if not self.stopping.wait(pause):
            self.start(service)

    def stop_all(self) -> None:
        """SIGTERM every group, SIGKILL what is left after the grace period; return once all are gone."""
        running = [s.process for s in self.services if s.process is not None]
        members = [pid for process in running for pid in group_members(process.pid)]
        for process in running:
            kill_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(deadline - time.monotonic(), 0.1))
        for process in running:
            kill_group(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        wait_gone(members, timeout=5)  # SIGKILL is delivered asynchronously: the ports free after


def group_members(pgid: int) -> list[int]:
    """The processes of a process group (a service and everything it started)."""
    members = []
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid:
                members.append(pid)
    return members


def wait_gone(pids: list[int], timeout: float) -> None:
    """Wait until none of `pids` is alive (zombies count as gone), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while any(is_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def is_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def port_holder(port: int, root: int) -> int | None:
    """The process of `root`'s tree listening on `port`: the topmost one when several share it."""
    try:
        tree = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    for process in tree:  # parents come before their children
        with contextlib.suppress(psutil.Error):
            listening = [c for c in process.net_connections() if c.status == psutil.CONN_LISTEN]
            if any(c.laddr.port == port for c in listening):
                return process.pid
    return None
