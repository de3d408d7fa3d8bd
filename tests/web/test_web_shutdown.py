"""A stopping worker (SIGTERM, e.g. `docker stop`): it turns new connections away at once and
does not wait on the registry.

Behind nginx, a replica that keeps its listening socket open while it shuts down collects
connections nobody will accept; they are reset when the process exits, too late for nginx to
retry them elsewhere (the compose scale test lost 4 POSTs that way on a busy machine).
"""

from __future__ import annotations

import socket
import threading
from types import SimpleNamespace

from web_fakes import FakeRegistry, make_app, web_settings
from web_support import reload_gunicorn_conf, rows_in

from clinrisk import predlog
from support import PATIENT


def connection_refused(address: tuple[str, int]) -> bool:
    try:
        socket.create_connection(address, timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


class RecordingRuntime:
    """Stands in for the worker's runtime: what a new client met while the log was being flushed."""

    def __init__(self, address: tuple[str, int]):
        self.address = address
        self.refused_during_flush: bool | None = None

    def close(self) -> None:
        self.refused_during_flush = connection_refused(self.address)


def test_a_stopping_worker_refuses_new_connections_before_it_flushes_its_log(tmp_path, monkeypatch):
    """It closes the worker's listening sockets first, so a connection made during the flush is refused."""
    conf = reload_gunicorn_conf(monkeypatch, tmp_path / "home")
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    runtime = RecordingRuntime(address)
    worker = SimpleNamespace(sockets=[listener], wsgi=SimpleNamespace(extensions={"clinrisk": runtime}))
    assert not connection_refused(address)  # listening: the kernel queues it for an accept()
    conf.worker_exit(None, worker)
    assert runtime.refused_during_flush is True
    assert listener.fileno() == -1


class StalledRegistry(FakeRegistry):
    """A registry whose answer to a poll, after the first, takes as long as the test decides."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.polls = 0
        self.stalled = threading.Event()
        self.release = threading.Event()

    def champion_version(self) -> str | None:
        self.polls += 1
        if self.polls > 1:
            self.stalled.set()
            self.release.wait(60)
        return super().champion_version()


def test_closing_does_not_wait_for_a_registry_poll_in_flight(tmp_path, logistic_model):
    """It stops polling without waiting for the poll in flight, and still flushes its log."""
    source = StalledRegistry({"1": logistic_model}, "1")
    settings = web_settings(tmp_path / "home", auth_enabled=False, poll_interval_seconds=0.05)
    app = make_app(settings, source)
    runtime = app.extensions["clinrisk"]
    runtime.ensure_started()
    assert source.stalled.wait(30), "the watcher never polled a second time"
    answered = app.test_client().post("/predict", json=PATIENT)
    assert answered.status_code == 200
    # The registry answers the stalled poll 5 s from now; by then close() must have returned.
    closed = threading.Event()
    closed_when_answered: list[bool] = []

    def answer_the_poll() -> None:
        closed_when_answered.append(closed.is_set())
        source.release.set()

    timer = threading.Timer(5.0, answer_the_poll)
    timer.start()
    try:
        runtime.close()
        closed.set()
    finally:
        timer.join()
    assert closed_when_answered == [True], "close() waited for the stalled registry poll"
    assert rows_in(predlog.connect(settings.prediction_log_url), predlog.predictions) == 1
