"""What the libraries may print on a command's stderr: the one place that quiets them.

By default a `clinrisk` command prints its own summary and errors, and the libraries only their
warnings that ask something of the user. `clinrisk -v` restores everything
(`MLFLOW_LOGGING_LEVEL=INFO` restores MLflow's lines alone). The chatter silenced here, each
line seen on a real `clinrisk train`:

- MLflow's INFO log ("Creating initial MLflow database tables", "Validating input example
  against model signature"): `MLFLOW_LOGGING_LEVEL`, which MLflow reads when it is imported;
- MLflow's registration prints ("Successfully registered model", "Created version"), which go
  to stderr rather than to a logger, so they are dropped by message when that logger is quiet
  (`without_mlflow_prints`, around the registration);
- MLflow's hint about integer columns in a schema it infers from the input example: the
  model's signature is declared from our spec instead (`registry.model_signature`: binary
  features as `long`, nullable ones optional), so the advice does not apply (`HARMLESS_WARNINGS`);
- onnxruntime's graph clean-up warnings ("Removing initializer ... not used by any node"):
  the session's log severity follows the `onnxruntime` logger (`onnxruntime_severity`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator

# (category, start of the message, module that warns) of warnings that never ask anything of us.
HARMLESS_WARNINGS = [
    (UserWarning, r"Hint: Inferred schema contains integer column", r"mlflow\.types"),
]

# MLflow's registration prints (mlflow.tracking._model_registry.fluent).
MLFLOW_PRINTS = re.compile(
    r"(Successfully registered model '|Registered model '.*' already exists|Created version ')"
)

# onnxruntime's severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal.
ORT_WARNING = 2
ORT_ERROR = 3


def configure(verbose: bool) -> None:
    """Log our own progress (INFO when verbose) and quiet the libraries unless verbose."""
    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(message)s")
    if verbose:
        return
    # Read by MLflow when it is imported, which every command does lazily, after this runs;
    # processes `clinrisk up` starts inherit it (an explicit setting wins).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("onnxruntime").setLevel(logging.ERROR)
    for category, message, module in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


@contextlib.contextmanager
def without_mlflow_prints() -> Iterator[None]:
    """Run the block without MLflow's registration prints when its logger does not show INFO.

    MLflow prints them (`eprint`) to stderr rather than logging them, and its own switch for
    them (`disable_logging`) is turned back on inside `log_model`, so they are dropped here by
    message; every other line the block writes to stderr (MLflow's warnings among them) is
    written on when it ends.
    """
    if logging.getLogger("mlflow").isEnabledFor(logging.INFO):
        yield
        return
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        lines = captured.getvalue().splitlines(keepends=True)
        sys.stderr.write("".join(line for line in lines if not MLFLOW_PRINTS.match(line)))


def onnxruntime_severity() -> int:
    """The log severity for an onnxruntime session: warnings unless the `onnxruntime` logger is quiet."""
    return ORT_WARNING if logging.getLogger("onnxruntime").isEnabledFor(logging.WARNING) else ORT_ERROR
