"""Gunicorn configuration that profiles a real worker: `clinrisk serve`'s own, plus cProfile.

Each worker runs cProfile over its whole life (requests, the log writer's thread is not seen)
and, when it exits, writes its statistics to $PROFILE_DIR/worker-<pid>.prof. Used by
`worker_profile.py`; never by the service.
"""

from __future__ import annotations

import cProfile
import os

from clinrisk.web.gunicorn_conf import *  # noqa: F403  (the service's own settings and hooks)
from clinrisk.web.gunicorn_conf import post_worker_init as _post_worker_init
from clinrisk.web.gunicorn_conf import worker_exit as _worker_exit

_profiler = cProfile.Profile()


def post_worker_init(worker) -> None:
    _post_worker_init(worker)
    _profiler.enable()


def worker_exit(server, worker) -> None:
    _profiler.disable()
    _profiler.dump_stats(os.path.join(os.environ["PROFILE_DIR"], f"worker-{os.getpid()}.prof"))
    _worker_exit(server, worker)
