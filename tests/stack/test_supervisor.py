"""The stack's supervisor on small real processes: restarts, its bounds, port holders, stopping."""

from __future__ import annotations

import io
import signal
import sys
import threading
import time

import pytest
from proctable import alive

from clinrisk.stack import supervisor as sup
from support import free_port

# A parent that starts a child listening on PORT, as `mlflow server` starts uvicorn, and stays
# up when the child dies: only the port holder's death says the service is gone.
LISTENING_CHILD = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", '''
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(600)
''', sys.argv[1]])
child.wait()
time.sleep(600)
"""


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def make(tmp_path, *services: sup.Service, max_restarts: int = 2) -> tuple[sup.Supervisor, io.StringIO]:
    out = io.StringIO()
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    return sup.Supervisor(list(services), {}, tmp_path, run_dir, out, max_restarts, grace_seconds=5), out


def supervise(supervisor: sup.Supervisor, until, timeout: float = 60) -> None:
    """Run the supervisor's loop in a thread until `until()` holds, then stop it."""
    thread = threading.Thread(target=_loop, args=(supervisor,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not until():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.2)
    finally:
        supervisor.stopping.set()
        thread.join(30)


def _loop(supervisor: sup.Supervisor) -> None:
    for service in supervisor.services:
        supervisor.start(service)
    while not supervisor.stopping.wait(sup.POLL_SECONDS):
        for service in supervisor.services:
            supervisor.check(service)
    supervisor.stop_all()


def test_a_service_that_exits_is_restarted_a_bounded_number_of_times(tmp_path):
    """It restarts a failing service with a line saying why, then gives up and says so."""
    failing = sup.Service("flaky", python("print('hello'); raise SystemExit(3)"))
    steady = sup.Service("steady", python("import time; time.sleep(600)"))
    supervisor, out = make(tmp_path, failing, steady, max_restarts=2)
    supervise(supervisor, until=lambda: failing.given_up)
    log = out.getvalue()
    assert "flaky exited with code 3; restarting it in 1 s (try 1 of 2)" in log
    assert "flaky exited with code 3; restarting it in 2 s (try 2 of 2)" in log
    assert "flaky exited with code 3; not restarting it again after 2 tries" in log
    assert log.count("flaky  | hello") == 3
    assert steady.restarts == 0


def test_the_recorded_pid_is_the_process_holding_the_port_and_its_death_restarts_the_service(tmp_path):
    """It records the child listening on the port, not the parent; when that child dies it restarts."""
    port = free_port()
    service = sup.Service("server", python(LISTENING_CHILD, str(port)), port=port)
    supervisor, out = make(tmp_path, service)
    first: dict[str, int] = {}

    def holder_found_then_killed() -> bool:
        if not first and service.holder is not None:
            first["holder"], first["leader"] = service.holder, service.process.pid
            signal_kill(service.holder)
        return bool(first) and service.holder is not None and service.holder != first["holder"]

    supervise(supervisor, until=holder_found_then_killed)
    assert first["holder"] != first["leader"]  # the child, not the parent
    assert (tmp_path / "run" / "server.pid").read_text().strip() == str(service.holder)
    assert f"server the process holding port {port} (pid {first['holder']}) died" in out.getvalue()
    assert not alive(first["leader"])  # the old parent was not left behind


def signal_kill(pid: int) -> None:
    import os

    os.kill(pid, signal.SIGKILL)


def test_stopping_ends_every_process_group(tmp_path):
    """It stops each service and the children they started (Ctrl-C stops everything)."""
    port = free_port()
    server = sup.Service("server", python(LISTENING_CHILD, str(port)), port=port)
    other = sup.Service("other", python("import time; time.sleep(600)"))
    supervisor, _ = make(tmp_path, server, other)
    supervise(supervisor, until=lambda: server.holder is not None)
    for pid in (server.holder, server.process.pid, other.process.pid):
        assert not alive(pid)
    assert server.restarts == other.restarts == 0


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_makes_run_stop_all_and_return_zero(tmp_path, signum):
    """It turns Ctrl-C or SIGTERM into a stop of every service and exit code 0."""
    service = sup.Service("sleeper", python("import time; time.sleep(600)"))
    supervisor, out = make(tmp_path, service)
    threading.Timer(1.5, lambda: supervisor._request_stop(signum, None)).start()
    assert supervisor.run() == 0
    assert not alive(service.process.pid)
    assert f"{signal.Signals(signum).name} received: stopping every process" in out.getvalue()


def test_giving_up_on_a_service_the_stack_needs_to_start_stops_everything(tmp_path):
    """It stops the stack, exit code 1, when initialisation keeps failing before the stack is ready."""
    init = sup.Service("worker", python("raise SystemExit(1)"), required_until=tmp_path / "ready")
    other = sup.Service("other", python("import time; time.sleep(600)"))
    supervisor, out = make(tmp_path, init, other, max_restarts=1)
    assert supervisor.run() == 1
    assert "the stack cannot become ready without worker: stopping it" in out.getvalue()
    assert not alive(other.process.pid)
